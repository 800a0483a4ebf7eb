"""The page and its static files are served by the API (the browser tests drive them)."""

from fastapi.testclient import TestClient


def test_page_and_static_files(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for asset in ('src="/static/app.js"', 'href="/static/style.css"', 'id="pad"'):
        assert asset in page.text
    script = client.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/../main.py").status_code == 404
    assert "/" not in client.get("/openapi.json").json()["paths"]
    metrics = client.get("/metrics").text
    assert 'route="/static/{path}"' in metrics and 'route="/"' in metrics
