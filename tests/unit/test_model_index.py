"""The API's model index (what serves by default) against a real redis-server."""

import asyncio
import uuid

from shared.redisdb.keys import Keys
from shared.registry.index import ModelIndex
from shared.registry.store import ModelRegistry
from shared.schemas.models import Serving

SERVING_ALIAS = "production"


def default_serving(redis_url: str, keys: Keys) -> Serving:
    """What a request without a model gets, as the API's ModelIndex reads it (not
    subscribed: from Redis)."""

    async def read() -> Serving:
        index = ModelIndex.from_url(redis_url, keys, SERVING_ALIAS)
        try:
            return await index.serving()
        finally:
            await index.aclose()

    return asyncio.run(read())


def test_nothing_serves_when_empty(registry: ModelRegistry, redis_url: str, keys: Keys) -> None:
    assert default_serving(redis_url, keys) == Serving(model_id=None, alias=None, fallback=False)
    assert registry.get_model(uuid.uuid4()) is None
