"""The service as an ASGI application (FastAPI): clip-retrieval's protocol, KoCLIP's own JSON API,
and what a public service needs around them.

  GET  /health                                   ready, with the model and galleries
  GET  /indices-list, POST /knn-service, /metadata   clip-retrieval's back end (koclip.serve.clip_back)
  GET  /v1/galleries                             the galleries
  POST /v1/search/text, /v1/search/image         search by text, by image (base64 or URL)
  GET  /v1/galleries/{gallery}/rows/{row}/similar    "more like this"
  GET  /v1/galleries/{gallery}/rows/{row}/thumbnail  a result's picture
  GET  /openapi.json, /docs                      the schema of all of it

Around them: CORS for browser front ends; a cap on the body (Limits.body_bytes, 413 past it, before
it is read whole); bounded concurrency (koclip.serve.gate: 503 when full, 504 past the time limit);
every error as JSON {"error", "status"} with its status code, never a traceback; one access log line
per request on the `koclip.serve` logger. Requests name galleries, never paths.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from koclip import webimage
from koclip.errors import GalleryError, InvalidImageError, InvalidInputError, KoCLIPError, ModelUnavailableError
from koclip.search.exact import Hit
from koclip.search.gallery import Gallery
from koclip.serve import clip_back
from koclip.serve.catalog import UnknownGallery
from koclip.serve.gate import Busy, Gate, TimedOut
from koclip.serve.service import Query as EncodedQuery
from koclip.serve.service import SearchService, TooLarge, Unanswerable

LOG = logging.getLogger("koclip.serve")
STATUS: tuple[tuple[type[Exception], int], ...] = (  # the first that matches
    (TooLarge, 413),
    (Unanswerable, 422),
    (UnknownGallery, 404),
    (Busy, 503),
    (TimedOut, 504),
    (ModelUnavailableError, 503),
    (GalleryError, 500),
    (webimage.FetchError, 400),
    (InvalidImageError, 400),
    (InvalidInputError, 400),
    (KoCLIPError, 400),
)


def status_of(exc: Exception) -> int:
    """The HTTP status of one of koclip's errors."""
    return next((status for kind, status in STATUS if isinstance(exc, kind)), 500)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error as the service answers one."""
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


class BodyTooLarge(HTTPException):
    """A request body over the limit, found while it streams in."""


class BodyLimit:
    """ASGI middleware: refuse a body over `limit` bytes, by its Content-Length or as it streams in."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    def _message(self) -> str:
        return f"the request body is over {self.limit / 2**20:.1f} MiB, the most this service reads"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await error(413, self._message())(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(413, self._message())
            return message

        await self.app(scope, limited, send)


class AccessLog:
    """ASGI middleware: one line per request on the `koclip.serve` logger: client, method, path, status,
    time."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        began, status = time.perf_counter(), 500

        async def noted(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            client = scope.get("client") or ("-", 0)
            path = scope["path"]  # the whole path: under a Mount it already begins with the mount's root_path
            LOG.info(
                '%s "%s %s" %d %.1f ms', client[0], scope["method"], path, status, (time.perf_counter() - began) * 1e3
            )


# ---------------------------------------------------------------- the JSON API's schema


class TextSearch(BaseModel):
    """A search by text."""

    text: str = Field(description="what to look for, in Korean (at most the service's text limit)")
    gallery: str | None = Field(None, description="the gallery's name (GET /v1/galleries); default: the first")
    k: int = Field(10, description="how many rows to return")


class ImageSearch(BaseModel):
    """A search by image: `image` (base64, optionally a data: URL) or `image_url` (public http(s))."""

    image: str | None = Field(None, description="the image's bytes in base64")
    image_url: str | None = Field(None, description="a public http(s) URL of the image")
    gallery: str | None = Field(None, description="the gallery's name; default: the first")
    k: int = Field(10, description="how many rows to return")


class Result(BaseModel):
    """One row found."""

    row: int = Field(description="the row's number in the gallery")
    score: float = Field(description="cosine similarity with the query")
    caption: str | None = None
    source: str | int | None = Field(None, description="the image's file name or dataset row, as indexed")
    width: int | None = None
    height: int | None = None
    thumbnail: str = Field(description="URL of the row's thumbnail")


class Verdict(BaseModel):
    """What the model made of a text."""

    answerable: bool = Field(description="false when the model reads none of the words: then there are no results")
    unknown_words: list[str] = Field(description="words the model cannot read, which were ignored")
    truncated: bool = Field(description="true when the text is longer than the model reads")


class Answer(BaseModel):
    """The rows found, best first, with what the model made of the query."""

    model: str
    gallery: str
    results: list[Result]
    verdict: Verdict | None = Field(None, description="for a text query")
    note: str | None = Field(None, description="words skipped, no answer, or an image unlike the model's training")


class GalleryInfo(BaseModel):
    """A gallery on offer."""

    name: str
    model: str | None = None
    count: int | None = None
    index: str | None = Field(None, description="'exact', or the kind of approximate index")
    error: str | None = Field(None, description="why the gallery cannot be searched, when it cannot")


class Health(BaseModel):
    """The service is up: its model and galleries."""

    status: str
    model: str
    galleries: list[str]
    requests: int = Field(description="requests being answered or waiting now")
    capacity: int = Field(description="the most that may be; past it, 503")


# ---------------------------------------------------------------- the application


def create_app(
    service: SearchService, gate: Gate | None = None, cors_origins: tuple[str, ...] = ("*",), title: str = "KoCLIP"
) -> FastAPI:
    """The service's ASGI application; `gate` bounds its concurrency (default: one of service.limits)."""
    gate = gate or Gate(service.limits)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        gate.close()

    api = FastAPI(
        lifespan=lifespan,
        title=f"{title} search service",
        summary="Korean image search over KoCLIP galleries; also speaks clip-retrieval's back-end protocol.",
        version="1",
    )

    @api.exception_handler(KoCLIPError)
    async def koclip_error(_request: Request, exc: KoCLIPError) -> JSONResponse:
        status = status_of(exc)
        return error(status, str(exc), {"Retry-After": "1"} if status == 503 else None)

    @api.exception_handler(StarletteHTTPException)  # FastAPI's own and the router's (404, 405)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, str(exc.detail), exc.headers)

    @api.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in problem.get('loc', ())[1:]) or 'body'}: {problem.get('msg', '')}"
            for problem in exc.errors()[:5]
        )
        return error(422, f"the request does not fit the schema: {problems}")

    @api.exception_handler(Exception)
    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        LOG.error("internal error", exc_info=exc)
        return error(500, f"internal error ({type(exc).__name__}); the service's log has the details")

    async def json_body(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except (ValueError, RecursionError):
            raise InvalidInputError("the request body is not JSON") from None

    def results(request: Request, name: str, opened: Gallery, hits: list[Hit]) -> list[Result]:
        rows = []
        for hit in hits:
            described = service.describe(opened, hit.index)
            thumbnail = str(request.url_for("thumbnail", gallery=name, row=hit.index))
            rows.append(Result(row=hit.index, score=hit.score, thumbnail=thumbnail, **described))
        return rows

    def answer(request: Request, name: str | None, query: EncodedQuery, k: int) -> Answer:
        name = name or service.default_gallery()
        opened = service.gallery(name)
        hits = service.search(opened, query, k) if query.vector is not None else []
        verdict = None
        if query.verdict is not None:
            verdict = Verdict(
                answerable=query.vector is not None, unknown_words=query.verdict.unknown, truncated=query.truncated
            )
        return Answer(
            model=service.model.name, gallery=name, results=results(request, name, opened, hits), verdict=verdict,
            note=query.note,
        )  # fmt: skip

    # Not through the gate, so that they answer under full load; on a thread, since finding the model
    # or listing galleries may wait.
    @api.get("/health", tags=["service"])
    def health() -> Health:
        """Ready: the model is loaded and the galleries are listed."""
        return Health(
            status="ok",
            model=service.model.name,
            galleries=service.catalog.names(),
            requests=gate.admitted,
            capacity=service.limits.capacity,
        )

    @api.get("/indices-list", tags=["clip-retrieval"])
    def indices_list() -> list[str]:
        """clip-back's list of indices: the gallery names."""
        return service.catalog.names()

    @api.post("/knn-service", tags=["clip-retrieval"])
    async def knn_service(request: Request) -> JSONResponse:
        """clip-back's search: text, image (base64), image_url or embedding_input; see koclip.serve.clip_back."""
        body = await json_body(request)
        found = await gate.run(lambda: clip_back.knn(service, body))
        skipped = clip_back.ignored(body)
        headers = {"X-KoCLIP-Ignored": ",".join(skipped)} if skipped else None
        return JSONResponse(found, headers=headers)

    @api.post("/metadata", tags=["clip-retrieval"])
    async def metadata(request: Request) -> JSONResponse:
        """clip-back's metadata of rows by id."""
        body = await json_body(request)
        return JSONResponse(await gate.run(lambda: clip_back.metadata(service, body)))

    @api.get("/v1/galleries", tags=["search"])
    async def galleries() -> list[GalleryInfo]:
        """The galleries this service searches."""
        return [GalleryInfo(**info) for info in await gate.run(service.galleries)]

    @api.post("/v1/search/text", tags=["search"])
    async def search_text(request: Request, body: TextSearch) -> Answer:
        """The rows that best match a text, with what the model made of the text."""
        return await gate.run(lambda: answer(request, body.gallery, service.text_query(body.text), body.k))

    @api.post("/v1/search/image", tags=["search"])
    async def search_image(request: Request, body: ImageSearch) -> Answer:
        """The rows most like an image, sent as base64 or fetched from a public URL."""
        return await gate.run(
            lambda: answer(request, body.gallery, service.image_query(body.image, body.image_url), body.k)
        )

    @api.get("/v1/galleries/{gallery}/rows/{row}/similar", tags=["search"])
    async def similar(request: Request, gallery: str, row: int, k: int = Query(10)) -> Answer:
        """More like this: the rows most like row `row` of the gallery, itself left out."""

        def work() -> Answer:
            opened = service.gallery(gallery)
            hits = service.similar(opened, row, k, gallery)
            return Answer(model=service.model.name, gallery=gallery, results=results(request, gallery, opened, hits))

        return await gate.run(work)

    @api.get("/v1/galleries/{gallery}/rows/{row}/thumbnail", tags=["search"], name="thumbnail")
    async def thumbnail(gallery: str, row: int) -> Response:
        """A row's thumbnail, a JPEG; 404 when it has none fit to show."""

        def work() -> bytes | None:
            opened = service.gallery(gallery)
            return opened.thumbnail(service.row(opened, row, gallery))

        picture = await gate.run(work)
        if picture is None:
            return error(404, f"row {row} of gallery {gallery!r} has no thumbnail")
        return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    # The last added runs first: CORS (so errors carry its headers too), the access log, the body limit.
    api.add_middleware(BodyLimit, limit=service.limits.body_bytes)
    api.add_middleware(AccessLog)
    api.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"])
    return api
