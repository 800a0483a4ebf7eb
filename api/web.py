"""The web page at ``/``: plain HTML, CSS and JavaScript from ``api/static`` (no build step)."""

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from shared.schemas import Preset, with_preset

STATIC = Path(__file__).resolve().parent / "static"

router = APIRouter()


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
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
