"""The web page at ``/``: plain HTML, CSS and JavaScript modules from ``api/static``
(no build step; ``main.js`` says which module follows which resource)."""

import os
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from shared.schemas.params import Preset, with_preset

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter()


class RevalidatedFiles(StaticFiles):
    """Static files a browser asks about again before each use (a 304 while unchanged):
    the page is modules that import each other, and an old module kept by a cache's
    guess beside a new one would break it after an upgrade."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "no-cache"
        return response


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The page: draw a digit, upload a picture, train and watch, pick a model."""
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """Browsers ask for it whatever the page links; without it every visit logs a 404."""
    return FileResponse(STATIC / "favicon.ico", media_type="image/x-icon")


@router.get("/presets.json", include_in_schema=False)
def presets() -> dict[str, dict[str, object]]:
    """Every parameter of each ``POST /jobs?preset=``, so the page's form can show the
    values a preset gives (the server's table, not a copy kept in JavaScript)."""
    return {p.value: with_preset(p, None).model_dump(mode="json") for p in Preset}


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", RevalidatedFiles(directory=STATIC), name="static")
