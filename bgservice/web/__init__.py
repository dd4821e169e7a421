"""The web page served at ``/``: static HTML/CSS/JS shipped in the package (no CDN, no external fonts).

The page talks to the service only through its public HTTP API, with the API key taken from the URL
fragment (``/#key=…``, which never reaches a server) or pasted by the user (kept in ``localStorage``).

:func:`mount` adds it to the FastAPI app: ``GET /`` is the page, ``/web/…`` its assets.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

STATIC_DIR = Path(__file__).parent / "static"
INDEX = STATIC_DIR / "index.html"


def page_url(base_url: str, api_key: str | None) -> str:
    """The address ``bgservice serve`` prints: the page with the key in the fragment."""
    base = base_url.rstrip("/") + "/"
    return f"{base}#key={api_key}" if api_key else base


def mount(app: FastAPI) -> None:
    """Serve the page at ``/`` and its assets under ``/web/`` (kept out of the OpenAPI schema)."""
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles

    async def index() -> FileResponse:
        # no-cache: a new release's page is picked up at once (the assets are small)
        return FileResponse(INDEX, media_type="text/html", headers={"Cache-Control": "no-cache"})

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    app.mount("/web", StaticFiles(directory=STATIC_DIR), name="web")
