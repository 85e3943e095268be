"""The FastAPI app: ``POST /translate``, ``GET /health``, ``GET /models`` and the web page.

Every expected mistake is a 4xx JSON answer ``{"error": "one sentence"}``: a body that is too
large (413), not UTF-8, not JSON or out of bounds (400), a full queue (503). Decoding never
runs on the event loop: requests go through the :class:`~nmt.serve.batcher.Batcher`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from nmt.search.translator import Translator
from nmt.serve.batcher import Batcher, QueueFull, Stopped
from nmt.serve.decoding import Decoder
from nmt.serve.model import ServedModel, describe
from nmt.serve.requests import RequestError, parse_request
from nmt.serve.settings import ServeSettings, flag

STATIC = Path(__file__).parent / "static"
# The page loads its own script and style only: no CDN, no inline code.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}

ModelSource = ServedModel | Translator | Callable[[], ServedModel | Translator]


def create_app(model: ModelSource, settings: ServeSettings | None = None) -> FastAPI:
    """The app serving ``model``: a :class:`ServedModel`, a bare Translator, or a function
    returning one, called once at startup (so a server can start before the model loads).

    The decoding thread starts with the app (its lifespan) and stops with it.
    """
    settings = settings or ServeSettings()
    settings.check()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        served = await asyncio.to_thread(_served, model)
        decoder = Decoder(served.translator)
        batcher = Batcher(
            decoder,
            settings.batch_window_ms / 1000,
            settings.max_batch_tokens,
            settings.max_queue,
        )
        app.state.served, app.state.decoder, app.state.batcher = served, decoder, batcher
        batcher.start()
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.stop)

    app = FastAPI(title="nmt", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    _add_error_handlers(app)
    _add_routes(app, settings)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _served(model: ModelSource) -> ServedModel:
    if callable(model) and not isinstance(model, ServedModel | Translator):
        model = model()
    if isinstance(model, Translator):
        return ServedModel(model, describe(model))
    return model


def _add_routes(app: FastAPI, settings: ServeSettings) -> None:
    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/health")
    async def health(request: Request) -> dict[str, Any]:
        batcher: Batcher = request.app.state.batcher
        return {"status": "ok", "queue": len(batcher), "max_queue": batcher.max_queue}

    @app.get("/models")
    async def models(request: Request) -> dict[str, Any]:
        return {**request.app.state.served.info, "limits": settings.public()}

    @app.post("/translate")
    async def translate(request: Request) -> JSONResponse:
        body = await _read_body(request, settings.max_body_bytes)
        req = parse_request(body, settings)
        decoder: Decoder = request.app.state.decoder
        key = decoder.settings(req)
        try:
            future = request.app.state.batcher.submit(key, req, decoder.cost(req))
            translations = await asyncio.wrap_future(future)
        except QueueFull as err:
            raise RequestError(
                503, f"the server is busy ({err}; --{flag('max_queue')}): retry in a moment"
            ) from None
        except Stopped as err:
            raise RequestError(503, f"{err}: retry in a moment") from None
        return JSONResponse({"translations": translations})


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes ``limit`` bytes (whatever
    Content-Length claims)."""
    too_large = RequestError(
        413, f"the request body is over {limit} bytes (--{flag('max_body_bytes')}): split it"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(request: Request, err: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if err.status == 503 else None
        return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        message = f"{err.detail}: {request.method} {request.url.path}"
        if err.status_code == 404:
            message += " (the API is POST /translate, GET /health, GET /models)"
        return JSONResponse({"error": message}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        # A bug, not the client's mistake: uvicorn logs the traceback; the client gets JSON.
        return JSONResponse(
            {"error": f"internal error ({type(err).__name__}): see the server log"}, 500
        )
