"""The pages for people: the OpenAPI docs (Swagger UI at ``/docs``, ReDoc at ``/redoc``) with their
assets served from the ``fastapi-offline`` package, never a CDN (the gateway may run where nothing
outside is reachable), and the playground (``/playground``: pick a pipeline, type Chinese text, see
the answer rendered). None of them is in the OpenAPI document, and none needs the API key (the
playground's own requests do: it has a field for it)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

PLAYGROUND = Path(__file__).parent / "playground"


def docs_assets() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI, title: str) -> None:
    app.mount("/static/docs", StaticFiles(directory=docs_assets()), name="docs-assets")
    app.mount("/static/playground", StaticFiles(directory=PLAYGROUND), name="playground-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui():
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
        return get_redoc_html(openapi_url=openapi_url, title=f"{title} — ReDoc",
                              redoc_js_url="/static/docs/redoc.standalone.js",
                              redoc_favicon_url="/static/docs/favicon.png", with_google_fonts=False)

    @app.get("/playground", include_in_schema=False)
    async def playground():
        return FileResponse(PLAYGROUND / "index.html", media_type="text/html")
