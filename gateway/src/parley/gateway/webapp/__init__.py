"""The web app: static HTML, CSS and plain JavaScript modules, served by the gateway at `/`.

No build step and nothing fetched from elsewhere: the files in `static/` are what the browser
runs, and every page talks to the same public `/v1` API as curl and the CLI, with the key the
person signed in with (kept in the tab's sessionStorage, never in a cookie, so the gateway has no
session to steal and no CSRF to guard against)."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

# The page may load only what the gateway itself serves: a CDN script or font slipped into the
# markup fails loudly in the browser instead of quietly phoning out.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"}


def install(app: FastAPI) -> None:
    """Serve the app: `/` is its one HTML page (routes after `#` are the app's own), `/app/…` its
    scripts and styles. Additive: no `/v1` route changes."""

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        # Revalidated on every load so a new release is picked up; the files are small.
        return FileResponse(STATIC / "index.html", headers={**_HEADERS, "Cache-Control": "no-cache"})

    app.mount("/app", StaticFiles(directory=STATIC), name="app")
