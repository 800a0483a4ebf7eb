"""Request-body size limit, enforced before the body is parsed (ASGI middleware)."""

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import count_rejected


class BodySizeLimit:
    """413 for a body above ``max_bytes``: at once from ``Content-Length``, or as soon as
    a streamed body crosses the limit, so the API never buffers more than that."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _detail(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            count_rejected("body")
            body = json.dumps({"detail": self._detail()}).encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
            await send({"type": "http.response.start", "status": 413, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:  # FastAPI passes HTTPExceptions from the body through
                count_rejected("body")
                raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counting_receive, send)
