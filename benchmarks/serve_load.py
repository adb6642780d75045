"""Load test of ``alexnet serve`` against a naive server, in one run.

    .venv/bin/python benchmarks/serve_load.py [--source CKPT] [--images DIR] [--clients 16] [--seconds 20]

Both servers run on 127.0.0.1 as their own processes, one after the other, and get the
same load: ``--clients`` threads, each posting real JPEGs (multipart, keep-alive) one
after another for ``--seconds``. The naive server is what one writes first: FastAPI, one
request = decode, preprocess and one eager PyTorch forward of that image, no batching.
Ours batches concurrent requests and runs ONNX Runtime (``alexnet serve``'s defaults).

Then ``--bad-run`` requests (default 2000) go to ours with every tenth one broken
(truncated JPEG, text, empty, a decompression bomb in turn): every good one must get its
answer, every bad one a 4xx, and the server's resident memory is read before and after.

Without ``--source`` the model is ``alexnet`` (224 px, 10 classes) with fresh weights:
speed does not depend on the weights. Images default to ``../shared/data`` (imagenette's
val JPEGs). The last line printed is JSON: ``ours_rps``, ``naive_rps``, ``ratio``, ``p99_ms``,
``errors`` and the rest.
"""

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "imagenette_small" / "val"
BOUNDARY = "alexnetbenchboundary"


# --- the naive server -------------------------------------------------------------------------


def naive_app(source: str):
    """FastAPI, one eager forward per request; the way a first version is written."""
    import torch
    from fastapi import FastAPI, File, UploadFile
    from PIL import Image

    from alexnet.data.transforms import eval_transform
    from alexnet.models.pretrained import load_pretrained

    p = load_pretrained(source)
    model, transform = p.model.eval(), eval_transform(p.preprocess)
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/predict")
    def predict(file: UploadFile = File(...)):
        image = Image.open(io.BytesIO(file.file.read())).convert("RGB")
        with torch.no_grad():
            probs = model(transform(image)[None]).softmax(1)[0]
        values, indices = probs.topk(5)
        return {"predictions": [{"top": [{"class": p.labels[j], "probability": float(v)}
                                         for v, j in zip(values, indices.tolist())]}]}

    return app


# --- clients ----------------------------------------------------------------------------------


def multipart(name: str, data: bytes) -> bytes:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def post(conn: http.client.HTTPConnection, body: bytes) -> int:
    conn.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    response = conn.getresponse()
    response.read()
    return response.status


def load(port: int, bodies: list[bytes], clients: int, seconds: float, pid: int | None = None) -> dict:
    """``clients`` threads posting for ``seconds``; requests/s, latency percentiles, errors, and
    the server's CPU seconds (``pid``) over the window: requests per CPU second do not depend
    on how much of a shared machine the server got."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = k
        while time.perf_counter() < stop:
            start = time.perf_counter()
            try:
                ok = post(conn, bodies[i % len(bodies)]) == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors[0] += 1
            i += clients
        conn.close()

    cpu_before = cpu_seconds(pid) if pid else 0.0
    began = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    cpu = cpu_seconds(pid) - cpu_before if pid else float("nan")
    ms = sorted(1000 * x for x in latencies) or [float("nan")]
    pick = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]  # noqa: E731
    return {"rps": len(latencies) / elapsed, "requests": len(latencies), "errors": errors[0],
            "cpu_s": cpu, "per_cpu_s": len(latencies) / cpu if cpu > 0 else float("nan"),
            "p50_ms": pick(0.50), "p95_ms": pick(0.95), "p99_ms": pick(0.99), "mean_ms": statistics.fmean(ms)}


def bad_bodies(good: bytes) -> list[bytes]:
    from PIL import Image

    bomb = io.BytesIO()
    Image.new("L", (12000, 12000)).save(bomb, "PNG")  # 144 megapixels, 200 KB of PNG
    return [multipart("truncated.jpg", good[: len(good) // 2]), multipart("notes.txt", b"not an image"),
            multipart("empty.jpg", b""), multipart("bomb.png", bomb.getvalue())]


def abuse(port: int, bodies: list[bytes], bad: list[bytes], total: int, clients: int, pid: int) -> dict:
    """``total`` requests, every tenth one bad; good ones lost, bad ones not refused, memory."""
    counts = {"good_ok": 0, "good_lost": 0, "bad_4xx": 0, "bad_other": 0}
    lock = threading.Lock()
    rss = {}
    next_i = iter(range(total))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for i in next_i:  # one shared iterator: each request number is taken once
            is_bad = i % 10 == 9
            body = bad[(i // 10) % len(bad)] if is_bad else bodies[i % len(bodies)]
            try:
                status = post(conn, body)
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            key = ("bad_4xx" if 400 <= status < 500 else "bad_other") if is_bad else \
                ("good_ok" if status == 200 else "good_lost")
            with lock:
                counts[key] += 1
                if i == total // 10:
                    rss["first"] = rss_mb(pid)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    first, last = rss.get("first", float("nan")), rss_mb(pid)
    return {**counts, "rss_after_tenth_mb": round(first, 1), "rss_end_mb": round(last, 1),
            "rss_growth_mb": round(last - first, 1)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- servers ----------------------------------------------------------------------------------


def start(command: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().strip().splitlines()[-1:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("server did not come up in 300 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def fresh_checkpoint(folder: Path) -> str:
    import torch

    from alexnet import checkpoint, get_model
    from alexnet.data.transforms import Preprocess

    torch.manual_seed(0)
    model = get_model("alexnet", num_classes=10)
    path = folder / "alexnet_fresh.pt"
    checkpoint.save(path, {"arch": "alexnet", "model_config": model.config.to_dict(),
                           "class_names": [f"class{i}" for i in range(10)], "display_names": None,
                           "preprocess": Preprocess.for_size(224).to_dict(), "model": model.state_dict()})
    return str(path)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_int8(source: str, args: argparse.Namespace, bodies: list[bytes], tmp: Path) -> dict:
    """``alexnet export --quantize int8`` of ``source``, served by ``alexnet serve``, under the same load."""
    out = tmp / "model.int8.onnx"
    subprocess.run([sys.executable, "-m", "alexnet", "export", source, "--format", "onnx", "--quantize", "int8",
                    "--calibration-data", args.images, "--calibration-images", "64", "--out", str(out)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    proc = start([sys.executable, "-m", "alexnet", "serve", str(out), "--port", str(port), "--max-batch",
                  str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)], port)
    try:
        load(port, bodies[:4], 2, 2.0)
        int8 = load(port, bodies, args.clients, args.seconds, proc.pid)
    finally:
        stop(proc)
    print(f"ours, int8 export: {int8['rps']:.1f} req/s, p50 {int8['p50_ms']:.0f} ms, p95 {int8['p95_ms']:.0f} ms, "
          f"p99 {int8['p99_ms']:.0f} ms, {int8['errors']} errors; {int8['per_cpu_s']:.2f} req per server CPU second",
          flush=True)
    return int8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="checkpoint or export to serve (default: fresh alexnet weights, 224 px)")
    parser.add_argument("--images", default=str(DEFAULT_IMAGES), help=f"JPEG folder (default: {DEFAULT_IMAGES})")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bad-run", type=int, default=2000, help="requests of the bad-input run (0: skip)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--int8", action="store_true",
                        help="also export SOURCE as int8 ONNX (calibrated on --images) and load-test serving that")
    parser.add_argument("--naive-server", metavar="SOURCE", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        import uvicorn

        uvicorn.run(naive_app(args.naive_server), host="127.0.0.1", port=args.port, log_level="warning",
                    access_log=False)
        return
    files = sorted(Path(args.images).rglob("*.JPEG")) + sorted(Path(args.images).rglob("*.jpg"))
    if not files:
        print(f"no JPEGs under {args.images}: nothing to measure (give --images DIR)")
        print(json.dumps({"skipped": f"no images under {args.images}"}))
        return
    bodies = [multipart(f.name, f.read_bytes()) for f in files[:200]]
    with tempfile.TemporaryDirectory() as tmp:
        source = args.source or fresh_checkpoint(Path(tmp))
        print(f"model {source}; {len(bodies)} JPEGs from {args.images}; {args.clients} clients x {args.seconds:g} s; "
              f"{os.cpu_count()} CPUs", flush=True)
        python = sys.executable
        port = free_port()
        naive = start([python, __file__, "--naive-server", source, "--port", str(port)], port)
        try:
            load(port, bodies[:4], 2, 2.0)  # warm-up
            base = load(port, bodies, args.clients, args.seconds, naive.pid)
        finally:
            stop(naive)
        print(f"naive: {base['rps']:.1f} req/s, p50 {base['p50_ms']:.0f} ms, p95 {base['p95_ms']:.0f} ms, "
              f"p99 {base['p99_ms']:.0f} ms, {base['errors']} errors; {base['per_cpu_s']:.2f} req per server CPU second",
              flush=True)
        port = free_port()
        ours_proc = start([python, "-m", "alexnet", "serve", source, "--port", str(port), "--max-batch",
                           str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--device", "cpu"], port)
        try:
            load(port, bodies[:4], 2, 2.0)
            ours = load(port, bodies, args.clients, args.seconds, ours_proc.pid)
            print(f"ours:  {ours['rps']:.1f} req/s, p50 {ours['p50_ms']:.0f} ms, p95 {ours['p95_ms']:.0f} ms, "
                  f"p99 {ours['p99_ms']:.0f} ms, {ours['errors']} errors; {ours['per_cpu_s']:.2f} req per server CPU "
                  "second", flush=True)
            bad = abuse(port, bodies, bad_bodies(Path(files[0]).read_bytes()), args.bad_run, args.clients,
                        ours_proc.pid) if args.bad_run else {}
            alive = ours_proc.poll() is None
        finally:
            stop(ours_proc)
        int8 = measure_int8(source, args, bodies, Path(tmp)) if args.int8 else None
    if bad:
        print(f"bad-input run: {args.bad_run} requests, {bad['good_ok']} good answered, {bad['good_lost']} good lost, "
              f"{bad['bad_4xx']} bad refused with 4xx, {bad['bad_other']} bad otherwise; server RSS "
              f"{bad['rss_after_tenth_mb']} MB after {args.bad_run // 10} requests, {bad['rss_end_mb']} MB at the end; "
              f"server {'still up' if alive else 'DOWN'}")
    result = {"ours_rps": round(ours["rps"], 2), "naive_rps": round(base["rps"], 2),
              "ratio": round(ours["rps"] / base["rps"], 2) if base["rps"] else None, "p99_ms": round(ours["p99_ms"], 1),
              "errors": ours["errors"], "cpu_ratio": round(ours["per_cpu_s"] / base["per_cpu_s"], 2),
              "ours_per_cpu_s": round(ours["per_cpu_s"], 3), "naive_per_cpu_s": round(base["per_cpu_s"], 3),
              "ours_p50_ms": round(ours["p50_ms"], 1), "ours_p95_ms": round(ours["p95_ms"], 1),
              "naive_p50_ms": round(base["p50_ms"], 1), "naive_p99_ms": round(base["p99_ms"], 1),
              "naive_errors": base["errors"], "clients": args.clients, "seconds": args.seconds, "source": source,
              **({f"bad_run_{k}": v for k, v in bad.items()} if bad else {}), "server_survived": alive}
    if int8:
        result.update(ours_int8_rps=round(int8["rps"], 2), int8_ratio=round(int8["rps"] / base["rps"], 2),
                      int8_cpu_ratio=round(int8["per_cpu_s"] / base["per_cpu_s"], 2),
                      int8_p99_ms=round(int8["p99_ms"], 1), int8_errors=int8["errors"])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
