"""The pages for people: the OpenAPI docs (Swagger UI at ``/docs``, ReDoc at ``/redoc``) with their
assets served from the ``fastapi-offline`` package, never a CDN (the gateway may run where nothing
outside is reachable), and the playground (``/playground``: pick a pipeline, type Chinese text, see
the answer rendered). None of them is in the OpenAPI document, and none needs the API key (the
playground's own requests do: it has a field for it)."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import FileResponse, PlainTextResponse
from starlette.staticfiles import StaticFiles

log = logging.getLogger(__name__)
PLAYGROUND = Path(__file__).parent / "playground"
NO_ASSETS = ("the API docs' assets (Swagger UI, ReDoc) come from the fastapi-offline package, which is not "
             "installed here: pip install 'fastapi-offline==1.7.7' (the gateway extra has it). The OpenAPI "
             "document itself is at /openapi.json")


def docs_assets() -> Path | None:
    """Swagger UI 5's and ReDoc's files, as ``fastapi-offline`` ships them; None without it."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    return Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI, title: str) -> None:
    assets = docs_assets()
    if assets is None:  # every API route still works; the docs pages say what is missing
        log.warning(NO_ASSETS)
    else:
        app.mount("/static/docs", StaticFiles(directory=assets), name="docs-assets")
    app.mount("/static/playground", StaticFiles(directory=PLAYGROUND), name="playground-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui():
        if assets is None:
            return PlainTextResponse(NO_ASSETS, status_code=503)
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{title} — docs",
                                   swagger_js_url="/static/docs/swagger-ui-bundle.js",
                                   swagger_css_url="/static/docs/swagger-ui.css",
                                   swagger_favicon_url="/static/docs/favicon.png",
                                   oauth2_redirect_url="/docs/oauth2-redirect")

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect():
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc():
        if assets is None:
            return PlainTextResponse(NO_ASSETS, status_code=503)
        return get_redoc_html(openapi_url=openapi_url, title=f"{title} — ReDoc",
                              redoc_js_url="/static/docs/redoc.standalone.js",
                              redoc_favicon_url="/static/docs/favicon.png", with_google_fonts=False)

    @app.get("/playground", include_in_schema=False)
    async def playground():
        return FileResponse(PLAYGROUND / "index.html", media_type="text/html")
