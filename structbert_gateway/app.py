"""The ASGI application: routes for the pipelines the repository serves, the error handlers, the
guard, CORS and metrics middleware, and the backend's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from fastapi import FastAPI, Request
from starlette.responses import Response

from structbert_client import __version__, api

from . import routes_cohere, routes_docs, routes_models, routes_openai, routes_own, routes_tei
from .backend import TritonBackend
from .errors import ApiError, install_handlers
from .middleware import GuardMiddleware, Metrics, MetricsMiddleware
from .options import GatewayOptions
from .repository import RepositoryInfo
from .state import Gateway

log = logging.getLogger(__name__)

DESCRIPTION = """OpenAI-, text-embeddings-inference-, Cohere- and Jina-compatible HTTP API in front of
structbert-triton's Triton model repository; every model also answers at its own root `/models/{model}`
(Hugging Face's inference API pattern). Errors: OpenAI style `{"error": {"message", "type", "param",
"code"}}` on `/v1/*`, TEI style `{"error", "error_type"}` on TEI's routes and the model roots, Cohere
style `{"message"}` on `/v1/embed` and `/v2/*`. Overload is 429 (retry later), a down server 503, a
timeout 504. Try the pipelines at [/playground](/playground)."""


async def discover(options: GatewayOptions, repo: RepositoryInfo) -> set[str]:
    """The public models to serve: the local repository's, else those Triton reports ready (waiting up
    to ``startup_timeout_s`` for it)."""
    if repo.local:
        return set(repo.models)
    backend = TritonBackend(options.triton_url, pool_size=1, headers=options.triton_headers)
    try:
        deadline = time.monotonic() + options.startup_timeout_s
        while True:
            if await backend.is_ready([], cache_s=0):
                served = await backend.ready_models()
                if served:
                    return served
            if time.monotonic() > deadline:
                raise RuntimeError(f"Triton at {options.triton_url} serves no public model after "
                                   f"{options.startup_timeout_s:.0f} s (expected some of {', '.join(api.PUBLIC_MODELS)})")
            log.info("waiting for Triton at %s ...", options.triton_url)
            await asyncio.sleep(1.0)
    finally:
        await backend.close()


def create_app(options: GatewayOptions, served: set[str], repo: RepositoryInfo | None = None,
               backend: TritonBackend | None = None) -> FastAPI:
    repo = repo or RepositoryInfo()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        own = backend is None
        gw = Gateway(options, backend or TritonBackend(options.triton_url, pool_size=options.pool_size,
                                                       timeout_s=options.timeout_s, batch_size=options.batch_size,
                                                       headers=options.triton_headers,
                                                       http_url=options.triton_http_url
                                                       if options.triton_protocol != "grpc" else None),
                     repo, set(served))
        if api.TEXT_EMBEDDING.name in served:
            with contextlib.suppress(ApiError, asyncio.TimeoutError):
                dims = await asyncio.wait_for(gw.backend.output_dims(api.TEXT_EMBEDDING.name,
                                                                     api.TEXT_EMBEDDING.outputs[0]), 10)
                gw.hidden = dims[-1] if dims and dims[-1] > 0 else None
        for model in served:  # load the tokenizers now, not on the first request
            repo.tokenizer(model)
        app.state.gateway = gw
        log.info("gateway serving %s against Triton %s", ", ".join(sorted(served)) or "nothing", options.triton_url)
        yield
        if own:
            await gw.backend.close()

    app = FastAPI(title="structbert-triton gateway", version=__version__, description=DESCRIPTION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)  # routes_docs serves them, without a CDN
    routes_docs.install(app, app.title)
    paths = {"/metrics"}
    routers = [module.router(served) for module in (routes_openai, routes_cohere, routes_tei, routes_own)]
    routers.append(routes_models.router(served, options.default_model))
    for router in routers:
        paths |= {route.path for route in router.routes}
        app.include_router(router)
    install_handlers(app)

    metrics = Metrics()

    @app.get("/metrics", tags=["operations"], summary="The gateway's Prometheus metrics",
             response_class=Response, responses={200: {"content": {"text/plain": {}}}})
    async def prometheus_metrics(request: Request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(GuardMiddleware, api_key=options.api_key, max_body_bytes=options.max_body_bytes,
                       max_concurrent=options.max_concurrent_requests)
    if options.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=options.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=frozenset(paths))
    return app
