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


# benchmarks/time_to_accuracy.py: its JSON line is a complete measurement or nothing. These run
# its main() with a stand-in for the `alexnet` command line (a small script told by the
# environment how to end), so they take no training and no data set.
FAKE_ALEXNET = r'''
import json, os, sys
from pathlib import Path

command, args = sys.argv[1], sys.argv[2:]
flag = lambda name: args[args.index(name) + 1]
with open(os.environ["FAKE_ALEXNET_CALLS"], "a") as f:
    f.write(command + "\n")
if command == "train":
    out = Path(flag("--out"))
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    (out / "metrics.csv").write_text("epoch,val_top1,ema_val_top1\n1,0.5,0.25\n")  # one epoch, then the ending asked for
    (out / "checkpoints" / "best.pt").write_bytes(b"weights")
    print("trained one epoch; " + os.environ.get("FAKE_TRAIN_SAYS", "done"))
    sys.exit(int(os.environ.get("FAKE_TRAIN_EXIT", "0")))
status = int(os.environ.get("FAKE_EVAL_EXIT", "0"))
if status:
    sys.exit("a warning first\nalexnet evaluate: error: " + os.environ.get("FAKE_EVAL_SAYS", "failed"))
Path(flag("--json")).write_text(json.dumps({"top1_acc": 0.875 if "--tta" in args else 0.75}))
'''


@pytest.fixture
def tta_bench(tmp_path, monkeypatch):
    """``(module, calls)``: benchmarks/time_to_accuracy.py loaded, with its `alexnet` the
    stand-in above; ``calls()`` lists the commands the stand-in was given (train, evaluate)."""
    import importlib.util
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_accuracy.py"
    spec = importlib.util.spec_from_file_location("time_to_accuracy", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fake = tmp_path / "fake_alexnet.py"
    fake.write_text(FAKE_ALEXNET)
    calls = tmp_path / "calls.txt"
    calls.touch()
    monkeypatch.setenv("FAKE_ALEXNET_CALLS", str(calls))
    monkeypatch.setattr(module, "ALEXNET", [sys.executable, str(fake)])
    monkeypatch.setattr(module, "POLL_S", 0.05)
    return module, lambda: calls.read_text().split()


def json_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("{")]


def test_time_to_accuracy_reports_a_complete_run(tta_bench, tmp_path, capsys):
    bench, calls = tta_bench
    assert bench.main(["--data", "digits", "--out", str(tmp_path / "b"), "--", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "epoch   1" in out and "test top-1 75.00%, 87.50% with flip TTA" in out
    report = json.loads(out.splitlines()[-1])
    assert (report["data"], report["recipe"], report["epochs"], report["best_val_top1"]) == ("digits", "scratch", 1, 0.5)
    assert (report["test_top1"], report["test_top1_tta"], report["target_split"]) == (0.75, 0.875, "test")
    assert report["reached_target_at_minutes"] is None and report["minutes"] >= 0
    assert report["run"] == str(tmp_path / "b" / "run")
    assert calls() == ["train", "evaluate", "evaluate"]


@pytest.mark.parametrize("held", ["metrics.csv", "config.json", "checkpoints/last.pt"])
def test_time_to_accuracy_refuses_an_out_that_holds_a_run(tta_bench, tmp_path, capsys, held):
    bench, calls = tta_bench
    (tmp_path / "b" / "run" / held).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "b" / "run" / held).write_text("epoch,val_top1\n1,0.9\n")  # an earlier run's
    assert bench.main(["--data", "digits", "--out", str(tmp_path / "b")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing started, nothing reported
    assert len(captured.err.splitlines()) == 1 and f"run/{held}" in captured.err and "--out" in captured.err
    assert calls() == []


def test_time_to_accuracy_takes_an_out_left_by_a_start_that_saved_nothing(tta_bench, tmp_path, capsys):
    bench, calls = tta_bench
    (tmp_path / "b" / "run" / "checkpoints").mkdir(parents=True)  # what a failed start leaves: no run
    (tmp_path / "b" / "train.log").write_text("alexnet train: error: ...")
    assert bench.main(["--data", "digits", "--out", str(tmp_path / "b")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["epochs"] == 1


@pytest.mark.parametrize("status, says", [(1, "RuntimeError: out of memory"), (130, "interrupted; --resume continues")])
def test_time_to_accuracy_a_failed_or_interrupted_training_is_no_result(tta_bench, tmp_path, capsys, monkeypatch,
                                                                       status, says):
    bench, calls = tta_bench
    monkeypatch.setenv("FAKE_TRAIN_EXIT", str(status))
    monkeypatch.setenv("FAKE_TRAIN_SAYS", says)
    assert bench.main(["--data", "digits", "--out", str(tmp_path / "b")]) == status
    captured = capsys.readouterr()
    assert json_lines(captured.out) == [] and "best val top-1" not in captured.out
    assert f"training failed ({status}" in captured.err and says in captured.err  # the log's end, kept visible
    assert calls() == ["train"]  # no evaluation of a run that did not finish


def test_time_to_accuracy_a_failed_test_evaluation_says_why(tta_bench, tmp_path, capsys, monkeypatch):
    bench, calls = tta_bench
    for split in ("train", "val", "test"):
        (tmp_path / "data" / split / "a").mkdir(parents=True)
    monkeypatch.setenv("FAKE_EVAL_EXIT", "1")
    monkeypatch.setenv("FAKE_EVAL_SAYS", "best.pt is not a checkpoint")
    assert bench.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "b")]) == 1
    captured = capsys.readouterr()
    assert json_lines(captured.out) == []
    assert "evaluation of the test split failed" in captured.err and "best.pt is not a checkpoint" in captured.err
    assert "a warning first" not in captured.err  # the last line is the reason


def test_time_to_accuracy_data_without_a_test_split_has_no_test_figure(tta_bench, tmp_path, capsys, monkeypatch):
    bench, calls = tta_bench
    for split in ("train", "val"):
        (tmp_path / "data" / split / "a").mkdir(parents=True)
    monkeypatch.setenv("FAKE_EVAL_EXIT", "1")  # were it asked, it would fail
    assert bench.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "test top-1 -" in out
    report = json.loads(out.splitlines()[-1])
    assert report["test_top1"] is None and report["test_top1_tta"] is None and report["epochs"] == 1
    assert calls() == ["train"]


@pytest.mark.slow
def test_time_to_accuracy_script_refuses_a_stale_out_and_a_bad_train_flag(tmp_path):
    """The script itself, with the real `alexnet train`: exit statuses, and no JSON line."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "time_to_accuracy.py"
    (tmp_path / "b" / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "b" / "run" / "checkpoints" / "last.pt").write_bytes(b"")
    r = subprocess.run([sys.executable, str(script), "--data", "digits", "--out", str(tmp_path / "b")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1 and r.stdout == "" and "already holds a run" in r.stderr
    r = subprocess.run([sys.executable, str(script), "--data", "digits", "--out", str(tmp_path / "c"),
                        "--", "--no-such-flag"], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]  # argparse's status, passed on
    assert json_lines(r.stdout) == [] and "training failed (2)" in r.stderr and "--no-such-flag" in r.stderr
    for flag in ("--out=elsewhere", "--data"):  # a run other than the one measured: refused before it starts
        r = subprocess.run([sys.executable, str(script), "--data", "digits", "--out", str(tmp_path / "d"), "--", flag, "x"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert r.returncode == 2 and r.stdout == "" and "would train something other" in r.stderr
        assert not (tmp_path / "d").exists()
