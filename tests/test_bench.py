"""`alexnet bench` and the inference fast path: structure and correctness, never timing."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from alexnet import get_model, list_models
from alexnet.models import model_info
from alexnet.cli import main
from alexnet.engine import inference
from alexnet.engine.inference import optimize_for_inference
from alexnet.tasks.bench import interleave


def eager_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model = copy.deepcopy(model).eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.slow
def test_bench_quick_cli_prints_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--quick", "--device", "cpu", "--arch", "alexnet_cifar", "--batch-size", "2", "--json", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "threads" in text.splitlines()[0]
    header = next(line for line in text.splitlines() if line.startswith("arch"))
    for column in ("batch", "size", "pass", "eager img/s", "best img/s", "ratio", "best"):
        assert column in header
    train = next(line for line in text.splitlines() if line.startswith("alexnet_cifar"))
    assert train.split()[1:4] == ["2", "32", "train"] and "channels_last" in train
    assert any(line.split()[:1] == ["infer"] for line in text.splitlines())

    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    (r,) = report["results"]
    assert (r["arch"], r["batch_size"], r["image_size"], r["num_classes"], r["rounds"]) == ("alexnet_cifar", 2, 32, 10, 2)
    assert r["threads"] == torch.get_num_threads()
    assert r["infer_backend"] in inference.BACKENDS
    for kind in ("train", "infer"):
        p = r[kind]
        assert p["baseline_img_per_s"] > 0 and p["best_img_per_s"] > 0 and p["ratio"] > 0
        assert len(p["per_round_img_per_s"]["baseline"]) == len(p["per_round_img_per_s"]["best"]) == 2


def test_bench_rejects_an_image_below_the_minimum(capsys):
    assert main(["bench", "--quick", "--device", "cpu", "--arch", "alexnet_cifar", "--image-size", "8"]) == 1
    assert "minimum" in capsys.readouterr().err


def test_interleave_alternates_order_and_counts_rounds():
    order = []
    timings = interleave({"a": lambda n: order.append("a"), "b": lambda n: order.append("b")}, rounds=3, min_seconds=0)
    assert order == ["a", "a", "b", "b"] + ["a", "b", "b", "a", "a", "b"]  # 2 warm-ups each, then A B, B A, A B
    assert all(len(t.per_round_s) == 3 and len(t.warmup_s) == 2 for t in timings.values())


@pytest.mark.parametrize(
    "arch, options, size",
    [
        ("alexnet_cifar", {}, 32),
        # the paper's net with LRN, groups and cuda-convnet's rounded conv1; small fc layers keep it quick
        ("alexnet2012", {"hidden": 64}, 224),
        # pool5 of 1x1 and 4x4 averaged to 6x6 and 3x3: sizes the exporter cannot pool adaptively
        ("alexnet", {"hidden": 64}, 64),
        ("alexnet_cifar", {}, 40),
    ],
)
def test_optimized_inference_gives_the_eager_logits(arch, options, size):
    model = get_model(arch, num_classes=10, **options)
    x = torch.randn(5, 3, size, size)
    expected = eager_logits(model, x)
    fn = optimize_for_inference(model, "cpu", (2, 3, size, size))
    assert fn.backend == "onnxruntime", fn.notes
    torch.testing.assert_close(fn(x), expected, rtol=1e-4, atol=1e-5)  # another batch size than the example
    # another image size takes the eager path, with the same answer
    y = torch.randn(3, 3, size + 8, size + 8)
    torch.testing.assert_close(fn(y), eager_logits(model, y), rtol=1e-4, atol=1e-5)


def test_a_fast_path_that_fails_to_build_falls_back_to_eager(monkeypatch):
    def broken(*args):
        raise RuntimeError("no such thing here")

    monkeypatch.setattr(inference, "_onnxruntime", broken)
    model = get_model("alexnet_cifar")
    x = torch.randn(2, 3, 32, 32)
    with pytest.warns(UserWarning, match="no such thing here"):
        fn = optimize_for_inference(model, "cpu", (2, 3, 32, 32))
    assert fn.backend == "eager" and "no such thing here" in fn.notes[0]
    torch.testing.assert_close(fn(x), eager_logits(model, x), rtol=1e-4, atol=1e-5)


def test_a_fast_path_with_wrong_logits_is_refused(monkeypatch):
    model = get_model("alexnet_cifar")
    monkeypatch.setattr(inference, "_onnxruntime", lambda *args: (lambda x: eager_logits(model, x) + 0.01))
    with pytest.warns(UserWarning, match="differ from eager"):
        fn = optimize_for_inference(model, "cpu", (2, 3, 32, 32))
    assert fn.backend == "eager"


def test_a_fast_path_that_fails_at_run_time_hands_over_to_eager(monkeypatch):
    model = get_model("alexnet_cifar")
    calls = []

    def flaky(model, device, example, amp):
        def run(x):
            calls.append(len(x))
            if len(calls) > 2:  # after the two checks optimize_for_inference makes
                raise RuntimeError("lost the session")
            return eager_logits(model, x)

        return run

    monkeypatch.setattr(inference, "_onnxruntime", flaky)
    fn = optimize_for_inference(model, "cpu", (2, 3, 32, 32))
    assert fn.backend == "onnxruntime"
    x = torch.randn(4, 3, 32, 32)
    with pytest.warns(UserWarning, match="lost the session"):
        out = fn(x)
    assert fn.backend == "eager"
    torch.testing.assert_close(out, eager_logits(model, x), rtol=1e-4, atol=1e-5)


def test_without_the_onnx_extra_the_cpu_runs_eager_and_says_why(monkeypatch, recwarn):
    from alexnet import extras

    for module in (extras, inference):
        monkeypatch.setattr(module, "available", lambda name: name != "onnxruntime")
    model = get_model("alexnet_cifar")
    fn = optimize_for_inference(model, "cpu", (2, 3, 32, 32))
    assert fn.backend == "eager" and fn.notes == ["onnxruntime: not installed (pip install 'alexnet[onnx]')"]
    assert not recwarn.list  # an extra left out on purpose is no cause for a warning
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(fn(x), eager_logits(model, x), rtol=1e-4, atol=1e-5)
    with pytest.warns(UserWarning, match=r"pip install 'alexnet\[onnx\]'"):  # asked for by name: a warning
        assert optimize_for_inference(model, "cpu", (2, 3, 32, 32), backend="onnxruntime").backend == "eager"


def test_unknown_backend_is_an_error():
    with pytest.raises(ValueError, match="backend"):
        optimize_for_inference(get_model("alexnet_cifar"), "cpu", (1, 3, 32, 32), backend="tensorrt")


@pytest.mark.slow
def test_compiled_inference_gives_the_eager_logits():
    model = get_model("alexnet_cifar")
    x = torch.randn(4, 3, 32, 32)
    expected = eager_logits(model, x)
    fn = optimize_for_inference(model, "cpu", (4, 3, 32, 32), backend="compile")
    assert fn.backend == "compile", fn.notes
    torch.testing.assert_close(fn(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", list_models())
def test_every_variant_takes_the_fast_path_at_its_own_size(arch):
    size = model_info(arch).image_size
    model = get_model(arch, num_classes=1000)
    x = torch.randn(3, 3, size, size)
    expected = eager_logits(model, x)
    fn = optimize_for_inference(model, "cpu", (2, 3, size, size))
    assert fn.backend == "onnxruntime", fn.notes
    torch.testing.assert_close(fn(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_gpu_pipeline_benchmark_runs_quick_on_the_cpu(tmp_path):
    """benchmarks/gpu_pipeline.py --quick: model only and the three feeds run, the last line is every figure."""
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(3):  # 3 classes x 8 JPEGs, landscape and portrait (the decode path groups sizes)
        (tmp_path / "data" / f"c{c}").mkdir(parents=True)
        for i in range(8):
            w, h = (300, 260) if i % 2 else (260, 300)
            pixels = rng.integers(0, 256, (h // 20, w // 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).resize((w, h)).save(tmp_path / "data" / f"c{c}" / f"{i}.jpg", quality=90)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_pipeline.py"
    r = subprocess.run([sys.executable, str(script), "--quick", "--device", "cpu", "--data", str(tmp_path / "data"),
                        "--cache-dir", str(tmp_path / "bench-cache")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert any(line.startswith("model only") for line in lines) and any(line.startswith("end to end") for line in lines)
    report = json.loads(lines[-1])
    assert (report["device"], report["batch_size"], report["workers"], report["rounds"]) == ("cpu", 8, 2, 1)
    assert report["images"] == 21  # 24 less the 10% held out for validation
    assert report["errors"] == {}
    rates = ["model_best_img_per_s", "model_baseline_img_per_s", "model_ratio"]
    for feed in ("baseline", "cache", "decode"):
        rates += [f"e2e_{feed}_img_per_s", f"data_{feed}_img_per_s", f"e2e_{feed}_ratio"]
    for key in rates:
        assert report[key] > 0, key
    # One round: each ratio is that round's rate over the baseline's (the report rounds them).
    assert report["model_ratio"] == pytest.approx(report["model_best_img_per_s"] / report["model_baseline_img_per_s"],
                                                  rel=0.01)
    for feed in ("cache", "decode"):
        (rate,), (base,) = report["per_round"][f"e2e_{feed}"], report["per_round"]["e2e_baseline"]
        assert report[f"e2e_{feed}_ratio"] == pytest.approx(rate / base, rel=0.01), feed
    assert report["targets"] and all(key in rates for key in report["targets"])  # each target names a figure
    assert report["targets_met"] == dict.fromkeys(report["targets"])  # judged on CUDA only
    assert (tmp_path / "bench-cache").is_dir() and not (tmp_path / "cache").exists()  # $ALEXNET_CACHE untouched
