"""``alexnet serve``: a model behind HTTP (FastAPI on uvicorn), with a page to try it.

* ``POST /predict``: images as ``multipart/form-data`` (any file fields: ``curl -F
  file=@cat.jpg``) or ``application/json`` (``{"image": B64}`` or ``{"images": [B64, ...]}``,
  data URLs accepted); ``?top_k=N``. Answers ``{"model", "predictions": [{"name", "top":
  [{"class", "index", "probability"}]}]}``.
* ``GET /``: the page (``static/index.html``, no external resources); ``GET /health``;
  ``GET /info``: model, classes, metrics, batching settings.

Every bad request gets a 4xx and ``{"error": "one line"}``; nothing a client sends stops
the server. Concurrent images are batched (``tasks.batching``).
"""

import asyncio
import base64
import binascii
import contextlib
import json
import os
import socket
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
import torch

from ..data.images import DEFAULT_MAX_PIXELS
from ..data.transforms import eval_transform
from ..engine.device import resolve_device
from ..engine.inference import optimize_for_inference
from ..errors import AlexNetError, first_line
from ..extras import require
from ..models.onnx_file import OnnxModel
from ..models.pretrained import load_pretrained
from .batching import Batcher
from .inputs import InputError, decode_image

MAX_IMAGES_PER_REQUEST = 64


class ServeError(AlexNetError):
    """The server cannot start: a missing extra, a port in use."""


@dataclass
class ServeConfig:
    source: str  # anything --weights takes, or an exported .onnx
    host: str = "127.0.0.1"  # this machine only, unless told otherwise
    port: int = 8000
    device: str = "auto"
    top_k: int = 5
    max_batch: int = 32  # images per forward pass at most
    max_wait_ms: float = 5.0  # how long an image waits for others to share its forward pass
    max_upload_mb: float = 20.0  # request body limit
    max_image_pixels: int = DEFAULT_MAX_PIXELS  # refused before decoding: decompression bombs
    threads: int | None = None  # inference threads (default: PyTorch's)


class Model:
    """What the server runs: preprocessing, the fastest checked inference path, class names."""

    def __init__(self, cfg: ServeConfig):
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        p = load_pretrained(cfg.source)
        device = resolve_device(cfg.device)
        size = p.preprocess.crop
        if isinstance(p.model, OnnxModel):
            device = torch.device("cpu")  # the session was made for the CPU
        # ONNX Runtime on the CPU; eager PyTorch on a GPU (batch sizes vary: nothing to compile for).
        backend = "onnxruntime" if device.type == "cpu" else "eager"
        self.run = optimize_for_inference(p.model, device, (cfg.max_batch, 3, size, size), backend=backend)
        self.transform = eval_transform(p.preprocess)
        self.labels, self.class_names, self.description = p.labels, p.class_names, p.description
        self.name = "torchvision" if cfg.source == "torchvision" else Path(cfg.source).name
        self.arch, self.metrics, self.size = p.arch, dict(p.metrics or {}), size
        self.backend = "onnxruntime int8" if getattr(p.model, "quantized", False) else self.run.backend

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.run(images).float().softmax(dim=1).cpu()


def create_app(cfg: ServeConfig, model: Model | None = None):
    """The FastAPI application (``model`` may be given to share one between apps, e.g. in tests).

    Longer than most functions here: FastAPI routes are closures over the app's model,
    batcher and limits, declared together so one read shows the whole HTTP surface.
    """
    fastapi = _import_fastapi()
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    if cfg.max_batch < 1 or cfg.max_wait_ms < 0 or cfg.max_upload_mb <= 0:
        raise ServeError("--max-batch must be at least 1, --max-wait-ms at least 0 and --max-upload-mb above 0")
    model = model or Model(cfg)
    batcher = Batcher(model.probabilities, cfg.max_batch, cfg.max_wait_ms / 1000)
    limit = int(cfg.max_upload_mb * 2**20)
    page = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        yield
        await batcher.close()

    app = fastapi.FastAPI(title="alexnet serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.model, app.state.batcher = model, batcher

    def error(status: int, reason: str) -> JSONResponse:
        return JSONResponse({"error": reason}, status_code=status)

    @app.exception_handler(InputError)
    async def bad_input(_request, e: InputError):
        return error(e.status, str(e))

    @app.exception_handler(HTTPException)
    async def http_error(_request, e: HTTPException):
        return error(e.status_code, str(e.detail))

    @app.exception_handler(Exception)
    async def unexpected(_request, e: Exception):  # a bug: the client gets one line, the server goes on
        return error(500, f"internal error ({type(e).__name__}: {first_line(e, default='')})")

    # A decoded image may take up to max_image_pixels * 3 bytes (about 270 MB at the default):
    # decoding a few at a time bounds the memory that many large uploads at once could take.
    decode_slots = asyncio.Semaphore(max(2, os.cpu_count() or 2))

    async def decode(data: bytes, name: str) -> torch.Tensor:
        async with decode_slots:
            return await asyncio.to_thread(_prepare, data, model.transform, cfg.max_image_pixels, name)

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/info")
    async def info():
        return {"model": model.description, "name": model.name, "arch": model.arch, "classes": model.labels,
                "class_names": model.class_names, "metrics": model.metrics, "input_size": model.size,
                "backend": model.backend, "top_k": cfg.top_k, "max_batch": cfg.max_batch,
                "max_wait_ms": cfg.max_wait_ms, "max_upload_mb": cfg.max_upload_mb,
                "batches_run": batcher.batches, "images_run": batcher.images}

    @app.post("/predict")
    async def predict(request: Request):
        start = time.perf_counter()
        top_k = _top_k(request.query_params.get("top_k"), cfg.top_k, len(model.labels))
        named = await _read_images(request, limit)
        images = await asyncio.gather(*(decode(data, name) for name, data in named))
        probs = await batcher.submit(torch.stack(images))
        values, indices = probs.topk(top_k, dim=1)
        return {"model": model.description, "ms": round(1000 * (time.perf_counter() - start), 2), "predictions": [
            {"name": name, "top": [{"class": model.labels[j], "index": j, "probability": round(float(v), 6)}
                                   for v, j in zip(vs, ix.tolist())]}
            for (name, _), vs, ix in zip(named, values, indices)]}

    return app


def _prepare(data: bytes, transform, max_pixels: int, name: str) -> torch.Tensor:
    try:
        return transform(decode_image(data, max_pixels))
    except InputError as e:
        raise InputError(f"{name}: {e}", e.status) from None


def _top_k(text: str | None, default: int, classes: int) -> int:
    if text is None:
        return min(default, classes)
    try:
        k = int(text)
    except ValueError:
        raise InputError(f"top_k must be a whole number, got {text!r}") from None
    if k < 1:
        raise InputError(f"top_k must be at least 1, got {k}")
    return min(k, classes)


class _TooLarge(Exception):
    pass


async def _read_images(request, limit: int) -> list[tuple[str, bytes]]:
    """``[(name, encoded bytes), ...]`` from a multipart or JSON body of at most ``limit`` bytes."""
    from starlette.requests import ClientDisconnect, Request

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InputError(f"request body of {int(declared):,} bytes is over the limit of {limit:,} (--max-upload-mb)", 413)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/json"):
        raise InputError(f"unsupported content type {kind or 'none'!r}: send multipart/form-data (a file field) "
                         "or application/json ({\"images\": [base64, ...]})", 415)
    seen = 0

    async def receive():  # counts the body as it arrives, for bodies sent without a Content-Length
        nonlocal seen
        message = await request.receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise _TooLarge
        return message

    limited = Request(request.scope, receive)
    try:
        named = await (_from_multipart(limited) if kind == "multipart/form-data" else _from_json(limited))
    except _TooLarge:
        raise InputError(f"request body is over the limit of {limit:,} bytes (--max-upload-mb)", 413) from None
    except ClientDisconnect:
        raise InputError("the client went away before sending the whole body") from None
    if not named:
        raise InputError("no image in the request: send a file field (multipart) or \"images\" (JSON)")
    if len(named) > MAX_IMAGES_PER_REQUEST:
        raise InputError(f"{len(named)} images in one request; at most {MAX_IMAGES_PER_REQUEST}", 413)
    return named


async def _from_multipart(request) -> list[tuple[str, bytes]]:
    form = await request.form(max_files=MAX_IMAGES_PER_REQUEST + 1)
    try:
        files = [(i, v) for i, (_, v) in enumerate(form.multi_items()) if hasattr(v, "read")]
        return [(f.filename or f"image {i + 1}", await f.read()) for i, f in files]
    finally:
        await form.close()


async def _from_json(request) -> list[tuple[str, bytes]]:
    try:
        body = json.loads(await request.body())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"malformed JSON body ({e})") from None
    if not isinstance(body, dict) or not ({"image", "images"} & body.keys()):
        raise InputError('the JSON body must be an object with "image": BASE64 or "images": [BASE64, ...]')
    items = body["images"] if "images" in body else [body["image"]]
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise InputError('"images" must be a list of base64 strings')
    return [(f"image {i + 1}", _base64(s, i + 1)) for i, s in enumerate(items)]


def _base64(text: str, number: int) -> bytes:
    if text.startswith("data:"):  # a data URL: data:image/png;base64,....
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"image {number}: not valid base64") from None


def _import_fastapi():
    fastapi = require("fastapi", "alexnet serve")
    require("python_multipart", "alexnet serve")  # for form uploads
    return fastapi


def serve(cfg: ServeConfig) -> None:
    """Load the model, then serve it until Ctrl-C."""
    _import_fastapi()
    uvicorn = require("uvicorn", "alexnet serve")

    _check_port(cfg.host, cfg.port)
    app = create_app(cfg)
    model = app.state.model
    print(f"serving {model.description} on http://{cfg.host}:{cfg.port} ({model.backend}, batches of up to "
          f"{cfg.max_batch}, {cfg.max_wait_ms:g} ms wait); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning", access_log=False)


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise ServeError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") from None
