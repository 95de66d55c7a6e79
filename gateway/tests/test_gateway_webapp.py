"""The web app's files as the gateway serves them, checked without a browser (the browser tests
in tests/test_web_app.py drive it in chromium): the page, every module it imports, nothing
loaded from elsewhere, and the /v1 API unchanged beside it."""

import re
from pathlib import Path

import httpx

from parley.gateway.webapp import STATIC

IMPORT = re.compile(r"""^import .* from "\./([\w-]+\.js)";$""", re.MULTILINE)
URL = re.compile(r"""https?://[^\s"'`)]+""")
# The one absolute URL the app's code may hold: SVG's namespace, a name and never fetched.
NAMESPACES = {"http://www.w3.org/2000/svg"}


async def test_the_page_is_served_at_the_root_with_a_self_only_policy(gateway: httpx.AsyncClient) -> None:
    page = await gateway.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert '<script type="module" src="/app/js/main.js"></script>' in page.text
    assert '<link rel="stylesheet" href="/app/app.css">' in page.text


async def test_every_module_the_app_imports_is_served(gateway: httpx.AsyncClient) -> None:
    seen: set[str] = set()
    waiting = ["main.js"]
    while waiting:
        name = waiting.pop()
        served = await gateway.get(f"/app/js/{name}")
        assert served.status_code == 200, name
        assert "javascript" in served.headers["content-type"]
        seen.add(name)
        waiting += [found for found in IMPORT.findall(served.text) if found not in seen]
    # Every file in js/ is reached from main.js: no dead module ships.
    assert seen == {path.name for path in (STATIC / "js").glob("*.js")}
    assert (await gateway.get("/app/app.css")).status_code == 200


def test_nothing_in_the_app_points_outside_the_gateway() -> None:
    for path in Path(STATIC).rglob("*"):
        if path.is_file():
            outside = set(URL.findall(path.read_text())) - NAMESPACES
            assert not outside, f"{path.name} refers to {outside}: vendor it, nothing is fetched at run time"


async def test_the_app_changes_nothing_of_the_api(gateway: httpx.AsyncClient) -> None:
    assert (await gateway.get("/v1/collections")).status_code == 401
    assert (await gateway.get("/app/../config.py")).status_code == 404
    assert (await gateway.get("/app/js/nothing.js")).status_code == 404
    assert "/" not in (await gateway.get("/openapi.json")).json()["paths"]
