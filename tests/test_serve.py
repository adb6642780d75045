"""`alexnet serve` through FastAPI's test client: good requests, every bad one, batching."""

from __future__ import annotations

import asyncio
import base64
import io
import warnings

import numpy as np
import pytest
import torch
from model_files import CLASSES, make_checkpoint
from PIL import Image

pytest.importorskip("fastapi", reason="alexnet serve needs the serve extra: pip install 'alexnet[serve]'")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note on httpx versions
    from fastapi.testclient import TestClient

import alexnet  # noqa: E402
from alexnet.cli import build_parser, main  # noqa: E402
from alexnet.tasks.batching import Batcher  # noqa: E402
from alexnet.tasks.serve import ServeConfig, create_app  # noqa: E402


def _jpeg(seed: int = 0, size: tuple[int, int] = (48, 40)) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (10000, 10000)).save(buffer, "PNG")  # 100 megapixels in ~100 KB
    return buffer.getvalue()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "best.pt")


@pytest.fixture(scope="module")
def client(ckpt):
    app = create_app(ServeConfig(str(ckpt), max_upload_mb=1, max_batch=8, max_wait_ms=2))
    with TestClient(app) as c:
        yield c


def _good(client) -> dict:
    r = client.post("/predict", files={"file": ("cat.jpg", _jpeg(), "image/jpeg")})
    assert r.status_code == 200, r.text
    return r.json()


def test_predict_multipart_matches_the_api(client, ckpt):
    body = _good(client)
    (prediction,) = body["predictions"]
    assert prediction["name"] == "cat.jpg" and len(prediction["top"]) == 3
    expected = alexnet.load(ckpt).predict(_jpeg())
    assert prediction["top"][0]["class"] == expected.label and prediction["top"][0]["index"] == expected.indices[0]
    assert prediction["top"][0]["probability"] == pytest.approx(expected.probability, abs=1e-4)


def test_predict_several_files_and_base64_json(client):
    files = [("file", ("a.jpg", _jpeg(1), "image/jpeg")), ("file", ("b.jpg", _jpeg(2), "image/jpeg"))]
    r = client.post("/predict?top_k=2", files=files)
    assert r.status_code == 200 and [p["name"] for p in r.json()["predictions"]] == ["a.jpg", "b.jpg"]
    assert all(len(p["top"]) == 2 for p in r.json()["predictions"])
    encoded = base64.b64encode(_jpeg(1)).decode()
    r = client.post("/predict", json={"images": [encoded, "data:image/jpeg;base64," + encoded]})
    first, second = r.json()["predictions"]
    assert r.status_code == 200 and first["top"] == second["top"]
    assert first["top"][0]["probability"] == pytest.approx(
        client.post("/predict", files={"f": ("a.jpg", _jpeg(1), "image/jpeg")}).json()["predictions"][0]["top"][0][
            "probability"], abs=1e-6)
    assert client.post("/predict", json={"image": encoded}).status_code == 200


BAD = {
    "not an image": ({"files": {"file": ("notes.txt", b"just text", "text/plain")}}, 400, "not an image"),
    "truncated jpeg": ({"files": {"file": ("t.jpg", _jpeg()[:300], "image/jpeg")}}, 400, "truncated"),
    "empty upload": ({"files": {"file": ("e.jpg", b"", "image/jpeg")}}, 400, "empty upload"),
    "decompression bomb": ({"files": {"file": ("bomb.png", _bomb(), "image/png")}}, 413, "decompression bomb"),
    "over the upload limit": ({"files": {"file": ("big.jpg", b"\xff" * (2 << 20), "image/jpeg")}}, 413, "limit"),
    "wrong content type": ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "content type"),
    "no content type": ({"content": b"abc"}, 415, "content type"),
    "form without files": ({"files": {"note": (None, "hello")}}, 400, "no image"),
    "url-encoded form": ({"data": {"a": "b"}}, 415, "content type"),
    "malformed json": ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "malformed"),
    "json without images": ({"json": {"picture": "x"}}, 400, '"images"'),
    "json images not strings": ({"json": {"images": [1, 2]}}, 400, "base64 strings"),
    "bad base64": ({"json": {"image": "@@@"}}, 400, "base64"),
    "bad top_k": ({"files": {"file": ("a.jpg", _jpeg(), "image/jpeg")}, "params": {"top_k": "two"}}, 400, "top_k"),
    "zero top_k": ({"files": {"file": ("a.jpg", _jpeg(), "image/jpeg")}, "params": {"top_k": "0"}}, 400, "top_k"),
    "too many images": ({"json": {"images": [base64.b64encode(b"x").decode()] * 65}}, 413, "at most"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_a_4xx_one_liner_and_the_server_goes_on(client, case):
    kwargs, status, text = BAD[case]
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert text in error and "\n" not in error
    _good(client)


def test_a_multipart_body_over_the_limit_without_content_length(client):
    def chunks():  # a generator body is sent chunked: no Content-Length to check up front
        yield b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.jpg\"\r\n\r\n"
        for _ in range(40):
            yield b"\xff" * 65536
        yield b"\r\n--b--\r\n"

    r = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "limit" in r.json()["error"]
    _good(client)


def test_health_info_and_page(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["classes"] == CLASSES and info["backend"] == "onnxruntime" and info["metrics"]["best_val_top1"] == 0.5
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="file"' in page.text and "/predict" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing from outside: works offline
    assert client.get("/nowhere").status_code == 404


def test_int8_export_is_served_as_int8(ckpt, tmp_path):
    from conftest import write_images

    write_images(tmp_path / "calib", 3, size=40)
    out = tmp_path / "m.int8.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--quantize", "int8", "--calibration-data",
                 str(tmp_path / "calib"), "--out", str(out)]) == 0
    with TestClient(create_app(ServeConfig(str(out)))) as c:
        assert c.get("/info").json()["backend"] == "onnxruntime int8"
        _good(c)


def test_batcher_joins_concurrent_requests_and_keeps_their_order():
    sizes = []

    def infer(x: torch.Tensor) -> torch.Tensor:
        sizes.append(len(x))
        return x.flatten(1)[:, :1] * 2

    async def scenario():
        batcher = Batcher(infer, max_batch=4, max_wait_s=0.05)
        inputs = [torch.full((1, 1, 1, 1), float(i)) for i in range(10)]
        outputs = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        await batcher.close()
        return outputs

    outputs = asyncio.run(scenario())
    assert [o.item() for o in outputs] == [2.0 * i for i in range(10)]
    assert max(sizes) == 4 and sum(sizes) == 10 and len(sizes) < 10


def test_batcher_failure_fails_that_batch_only():
    calls = []

    def infer(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return x.flatten(1)

    async def scenario():
        batcher = Batcher(infer, max_batch=8, max_wait_s=0.001)
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(torch.zeros(1, 1, 1, 1))
        result = await batcher.submit(torch.ones(1, 1, 1, 1))
        await batcher.close()
        return result

    assert asyncio.run(scenario()).item() == 1.0


def test_serve_defaults_to_localhost_and_refuses_a_busy_port(ckpt, capsys):
    import socket

    args = build_parser().parse_args(["serve", str(ckpt)])
    assert args.host == "127.0.0.1" and args.port == 8000
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["serve", str(ckpt), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert "cannot listen" in err and err.count("\n") == 1


@pytest.mark.parametrize("flag, value", [("--max-wait-ms", "-1"), ("--max-upload-mb", "0")])
def test_serve_refuses_meaningless_limits(ckpt, flag, value, capsys):
    assert main(["serve", str(ckpt), "--port", "0", flag, value]) == 1
    assert "--max-wait-ms at least 0" in capsys.readouterr().err
