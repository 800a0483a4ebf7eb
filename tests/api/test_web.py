"""The page and its static files are served by the API (the browser tests drive them)."""

import re

from fastapi.testclient import TestClient

from api.web import STATIC

IMPORT = re.compile(r'\bfrom "\./([\w-]+\.js)"')


def test_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in (
        '<script type="module" src="/static/main.js">',
        'href="/static/style.css"',
        'id="pad"',
    ):
        assert asset in page.text
    # main.js and every module it imports, and theirs: served as JavaScript, and asked
    # about again before each use (an old module cached beside a new one breaks the page)
    wanted, served = ["main.js"], set()
    while wanted:
        name = wanted.pop()
        script = client.get(f"/static/{name}")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"], name
        assert script.headers["cache-control"] == "no-cache", name
        served.add(name)
        wanted += [module for module in IMPORT.findall(script.text) if module not in served]
    assert served == {path.name for path in STATIC.glob("*.js")}  # no module left unused
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/../main.py").status_code == 404
    assert "/" not in client.get("/openapi.json").json()["paths"]
    metrics = client.get("/metrics").text
    assert 'route="/static/{path}"' in metrics and 'route="/"' in metrics


def test_favicon_and_presets(client: TestClient) -> None:
    """/favicon.ico is a real icon (no 404 in every visit's log); /presets.json holds every
    parameter of each preset, exactly what POST /jobs?preset= starts from."""
    import io

    from PIL import Image

    from shared.schemas.params import PRESETS, Preset, TrainParams

    icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert Image.open(io.BytesIO(icon.content)).format == "ICO"
    svg = client.get("/static/favicon.svg")
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")

    presets = client.get("/presets.json").json()
    assert set(presets) == {p.value for p in Preset}
    assert presets["book"] == TrainParams().model_dump(mode="json")
    assert presets["fast"]["epochs"] == PRESETS[Preset.fast]["epochs"] == 30
    assert set(presets["fast"]) == set(TrainParams.model_fields)
    assert "/presets.json" not in client.get("/openapi.json").json()["paths"]
