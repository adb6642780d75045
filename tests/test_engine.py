"""The training engine: run folder, no lost work, exact resume, knobs, DDP on the CPU."""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alexnet import checkpoint
from alexnet.cli import main

# A narrow alexnet_cifar so that a step takes milliseconds.
SMALL = ["--arch", "alexnet_cifar", "--image-size", "32", "--model-option", "widths=8,16,16,16,16",
         "--model-option", "hidden=32", "--workers", "0", "--device", "cpu"]


def _cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "alexnet", *argv]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _metrics(run: Path) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(run / "metrics.csv"))]


@pytest.mark.slow
def test_run_folder_holds_everything(split_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "2", "--batch-size", "4",
                 "--lighting", "0.1"]) == 0
    for name in ("config.json", "metrics.csv", "curves.png", "data_stats.pt", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    rows = _metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["img_per_s"] > 0 for r in rows)
    out = capsys.readouterr().out
    assert "channel mean/std and PCA from 24 training images, lighting 0.1" in out and '"recipe": null' in out
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["preprocess"]["lighting"] == 0.1 and ckpt["preprocess"]["stats_from"] == "24 training images"
    (run / "curves.png").unlink()
    assert main(["plot", str(run)]) == 0 and (run / "curves.png").stat().st_size > 10_000


def test_plot_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 1
    assert "metrics.csv: no such file" in capsys.readouterr().err


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"model": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        checkpoint.save(path, {"model": {"w": torch.zeros(3)}})
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # and no temporary file is left


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)


RESUMABLE = [*SMALL, "--epochs", "3", "--batch-size", "4", "--lighting", "0.1", "--deterministic", "--seed", "5"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["kill -9", "ctrl-c"])
def test_interrupted_and_resumed_run_ends_with_identical_weights(split_folder, tmp_path, how):
    reference = tmp_path / "reference"
    subprocess.run(_cmd("train", "--data", str(split_folder), "--out", str(reference), *RESUMABLE), check=True,
                   capture_output=True, timeout=300)

    run = tmp_path / "run"
    proc = subprocess.Popen(_cmd("train", "--data", str(split_folder), "--out", str(run), *RESUMABLE,
                                 "--save-every-steps", "1"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for(run / "checkpoints" / "last.pt", proc)
    proc.send_signal(signal.SIGKILL if how == "kill -9" else signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    if how == "ctrl-c":
        assert proc.returncode == 130, out
        assert f"resume with: alexnet train --resume --out {run}" in out
    else:
        assert proc.returncode == -signal.SIGKILL
    stopped_at = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert stopped_at["epoch"] < 3  # it really was stopped before the end

    r = subprocess.run(_cmd("train", "--resume", "--out", str(run)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumed at epoch" in r.stdout
    assert _same(_weights(run), _weights(reference))  # bitwise
    assert _metrics(run) == [dict(row, seconds=m["seconds"], img_per_s=m["img_per_s"])
                             for row, m in zip(_metrics(reference), _metrics(run))]


def test_resume_refuses_to_change_the_optimisation(split_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1", "--batch-size", "4",
                 "--schedule", "step"]) == 0
    assert main(["train", "--resume", "--out", str(run), "--lr", "0.5"]) == 1
    assert "cannot change --lr" in capsys.readouterr().err
    # extending a finished run is allowed
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2"]) == 0
    assert [r["epoch"] for r in _metrics(run)] == [1, 2]
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run)]) == 0  # finished: says so, trains nothing
    assert "nothing left to train" in capsys.readouterr().out and len(_metrics(run)) == 2
    assert main(["train", "--resume", "--out", str(tmp_path / "nothing")]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err


def test_a_finished_one_cycle_run_points_to_a_new_run_from_its_weights(split_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1", "--batch-size", "4",
                 "--schedule", "onecycle"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "--out", str(run)]) == 0
    hint = capsys.readouterr().out
    assert "onecycle schedule ended" in hint and "--epochs N extends it" not in hint
    weights = hint.split("--weights ")[1].split()[0]
    assert main(["train", "--weights", weights, "--data", str(split_folder), "--out", str(tmp_path / "more"),
                 "--epochs", "1", "--batch-size", "4", "--workers", "0"]) == 0  # the hint works as printed


def test_a_run_folder_is_held_by_one_run_and_default_names_never_collide(split_folder, tmp_path, monkeypatch, capsys):
    import fcntl

    from alexnet.engine import rundir

    out = tmp_path / "busy"
    out.mkdir()
    with open(out / rundir.LOCK_NAME, "w") as held:  # as another process's run would hold it
        held.write("pid 12345\n")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        r = subprocess.run(_cmd("train", "--data", str(split_folder), "--out", str(out), *SMALL, "--epochs", "1"),
                           capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "in use by another training run (pid 12345)" in r.stderr
    assert not (out / "checkpoints" / "last.pt").exists()
    assert main(["train", "--data", str(split_folder), "--out", str(out), *SMALL, "--epochs", "1",
                 "--batch-size", "4"]) == 0  # free again once that process let go
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rundir.time, "strftime", lambda _: "20261203-120000")  # one second for all
    names = {rundir._new_default("alexnet") for _ in range(3)}
    assert sorted(p.name for p in names) == ["alexnet-20261203-120000", "alexnet-20261203-120000-2",
                                             "alexnet-20261203-120000-3"]


def test_resume_from_a_damaged_or_foreign_checkpoint_is_one_line(split_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1", "--batch-size", "4"]) == 0
    last = run / "checkpoints" / "last.pt"
    good = last.read_bytes()
    last.write_bytes(good[: len(good) // 2])
    assert main(["train", "--resume", "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert "truncated or corrupt" in err and len(err.strip().splitlines()) == 1
    # a checkpoint of another architecture in the run folder
    last.write_bytes(good)
    ckpt = torch.load(last, weights_only=True)
    ckpt["model_config"]["hidden"] = 64
    torch.save(ckpt, last)
    assert main(["train", "--resume", "--out", str(run)]) == 1
    assert "another architecture" in capsys.readouterr().err


def test_non_finite_loss_keeps_the_last_good_checkpoint(split_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1", "--batch-size", "4",
                 "--schedule", "constant"]) == 0
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["model"]["fc8.weight"].fill_(float("nan"))  # the next step's loss will be NaN
    torch.save(ckpt, last)
    before = last.read_bytes()
    assert main(["train", "--resume", "--out", str(run), "--epochs", "3", "--save-every-steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "not finite" in err and f"{run / 'checkpoints' / 'best.pt'} keeps the best validated weights, {last}" in err
    assert last.read_bytes() == before  # nothing was written over it


def test_early_stop_and_schedules_run(split_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "20", "--batch-size", "4",
                 "--lr", "1e-6", "--early-stop", "2", "--schedule", "plateau", "--plateau-patience", "1"]) == 0
    out = capsys.readouterr().out
    assert "early stop" in out and len(_metrics(run)) < 20
    assert "lr divided by 10" in out


class KnobSpy:
    """What a training run really did, step by step: the dtype of the logits and the memory
    format of the input and of conv1's weights in each training forward, the label smoothing
    of each loss, the clipping asked for and the gradient norm after it, the learning rate of
    each step, and the worker count of each DataLoader."""

    def __init__(self, monkeypatch):
        from alexnet.engine.optim import Schedule
        from alexnet.models import AlexNet

        self.forwards, self.smoothing, self.clips, self.lrs, self.workers = [], set(), [], [], []
        forward, cross_entropy = AlexNet.forward, torch.nn.functional.cross_entropy
        clip, apply, loader_init = torch.nn.utils.clip_grad_norm_, Schedule.apply, torch.utils.data.DataLoader.__init__

        def spy_forward(model, x):
            out = forward(model, x)
            if model.training:
                cl = torch.channels_last
                self.forwards.append((out.dtype, x.is_contiguous(memory_format=cl),
                                      model.conv1.weight.is_contiguous(memory_format=cl)))
            return out

        def spy_cross_entropy(*args, **kwargs):
            self.smoothing.add(kwargs.get("label_smoothing", 0.0))
            return cross_entropy(*args, **kwargs)

        def spy_clip(params, max_norm, *args, **kwargs):
            params = list(params)
            clip(params, max_norm, *args, **kwargs)
            after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            self.clips.append((max_norm, after.item()))

        def spy_apply(schedule, optimizer, step):
            apply(schedule, optimizer, step)
            self.lrs.append(optimizer.param_groups[0]["lr"])

        def spy_loader_init(loader, *args, **kwargs):
            loader_init(loader, *args, **kwargs)
            self.workers.append(loader.num_workers)

        monkeypatch.setattr(AlexNet, "forward", spy_forward)
        monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy_cross_entropy)
        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy_clip)
        monkeypatch.setattr(Schedule, "apply", spy_apply)
        monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", spy_loader_init)


# What a run with none of the knobs does (SMALL, --lr 0.001, batch 4 of 24 images: 6 steps an epoch).
PLAIN = {"dtype": torch.float32, "channels_last": False, "velocity": "momentum_buffer", "smoothing": {0.0},
         "clip": None, "weight_decays": [5e-4], "workers": 0, "schedule": "cosine"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "knobs, effects",
    [
        (["--amp", "bf16", "--channels-last"], {"dtype": torch.bfloat16, "channels_last": True}),
        (["--paper-momentum", "--label-smoothing", "0.1", "--clip-grad-norm", "1.0"],
         {"velocity": "velocity", "smoothing": {0.1}, "clip": 1.0}),
        (["--no-decay-bias-norm", "--schedule", "onecycle", "--warmup-epochs", "0.5", "--workers", "2"],
         {"weight_decays": [0.0, 5e-4], "schedule": "onecycle", "workers": 2}),
        (["--amp", "fp16", "--schedule", "step", "--step-epochs", "1"], {"dtype": torch.float16, "schedule": "step"}),
    ],
)
def test_speed_and_recipe_knobs_train_on_the_cpu(split_folder, tmp_path, monkeypatch, knobs, effects):
    """Each knob changes what the run does, and nothing else changes."""
    spy = KnobSpy(monkeypatch)
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "2", "--batch-size", "4",
                 "--lr", "0.001", *knobs]) == 0
    rows = _metrics(run)
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    want = {**PLAIN, **effects}

    assert len(spy.forwards) == 12 and set(spy.forwards) == {(want["dtype"], want["channels_last"], want["channels_last"])}
    assert spy.smoothing == want["smoothing"]
    if want["clip"] is None:
        assert spy.clips == []
    else:  # every step clipped, to at most the norm asked for
        assert len(spy.clips) == 12 and all(m == want["clip"] and after <= m * 1.001 for m, after in spy.clips)
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert {k for state in ckpt["optimizer"]["state"].values() for k in state} == {want["velocity"]}
    assert sorted(g["weight_decay"] for g in ckpt["optimizer"]["param_groups"]) == want["weight_decays"]
    assert max(spy.workers) == want["workers"]

    lrs = spy.lrs
    assert len(lrs) == 12
    if want["schedule"] == "step":  # divided by 10 after each epoch
        assert lrs[:6] == [pytest.approx(1e-3)] * 6 and lrs[6:] == [pytest.approx(1e-4)] * 6
    elif want["schedule"] == "onecycle":  # up to the peak (warmup and the first 30%), then down to ~0
        peak = lrs.index(max(lrs))
        assert 0 < peak < 11 and lrs[:peak + 1] == sorted(lrs[:peak + 1]) and lrs[peak:] == sorted(lrs[peak:], reverse=True)
        assert lrs[0] < 0.5 * lrs[peak] and lrs[-1] < 0.1 * lrs[peak]
    else:  # cosine from the full rate down
        assert lrs[0] == pytest.approx(1e-3) and lrs == sorted(lrs, reverse=True) and lrs[-1] < 0.1 * lrs[0]


@pytest.mark.slow
def test_compile_gives_the_same_training_step(split_folder, tmp_path):
    runs = []
    for name, extra in (("eager", []), ("compiled", ["--compile"])):
        run = tmp_path / name
        assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1",
                     "--batch-size", "4", "--dropout", "0", *extra]) == 0
        runs.append(_metrics(run)[0])
    assert runs[0]["train_loss"] == pytest.approx(runs[1]["train_loss"], rel=1e-4)


def test_channels_last_model_gives_the_same_outputs():
    from alexnet import get_model

    model = get_model("alexnet2012").eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, out, atol=1e-4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_follow_the_one_process_loss_curve(split_folder, tmp_path):
    """2 ranks x batch 4 (gloo, CPU) see exactly the batches of 1 process x batch 8."""
    common = ["--data", str(split_folder), *SMALL, "--epochs", "3", "--dropout", "0", "--lighting", "0.1", "--lr", "0.003",
              "--schedule", "step", "--step-epochs", "2"]
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    subprocess.run(_cmd("train", "--out", str(single), "--batch-size", "8", *common), check=True, capture_output=True,
                   timeout=300)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
         "-m", "alexnet", "train", "--out", str(ddp), "--batch-size", "4", *common],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "x 2 processes" in r.stdout
    a, b = _metrics(single), _metrics(ddp)
    assert len(a) == len(b) == 3
    for x, y in zip(a, b):
        for key in ("train_loss", "val_loss"):
            assert y[key] == pytest.approx(x[key], rel=1e-3, abs=1e-4), (key, x, y)
    # and it resumes like any other run
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
         "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
         "-m", "alexnet", "train", "--resume", "--out", str(ddp), "--epochs", "4"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert [row["epoch"] for row in _metrics(ddp)] == [1, 2, 3, 4]


def test_mean_image_run_carries_its_mean_image(split_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1", "--batch-size", "4",
                 "--normalize", "image"]) == 0
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["preprocess"]["normalize"] == "image" and ckpt["preprocess"]["mean_image"].shape == (3, 37, 37)
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(split_folder),
                 "--workers", "0", "--ten-crop"]) == 0
    assert "[val, 12 images, ten-crop]" in capsys.readouterr().out
    image = next((split_folder / "val" / "red").iterdir())
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "last.pt"), str(image)]) == 0
    assert main(["train", "--data", str(split_folder), "--out", str(tmp_path / "r2"), *SMALL, "--normalize", "image",
                 "--stats-images", "0"]) == 1
    assert "needs the training set's mean image" in capsys.readouterr().err


def test_batches_shard_across_ranks_and_resume_mid_epoch():
    from alexnet.data.loading import EpochBatchSampler

    one = EpochBatchSampler(20, 8, seed=3)
    ranks = [EpochBatchSampler(20, 4, seed=3, world=2, rank=r) for r in (0, 1)]
    for s in (one, *ranks):
        s.set_epoch(2)
    for whole, a, b in zip(one, *ranks):
        assert whole == a + b  # rank 0 then rank 1 make up the single process's batch, seeds included
    assert len(one) == 2  # 20 // 8: the incomplete batch is dropped
    one.set_epoch(2, start_batch=1)
    assert len(one) == 1 and len(list(one)) == 1
    fresh = EpochBatchSampler(20, 8, seed=3)
    fresh.set_epoch(2)
    assert list(one)[0] == list(fresh)[1]  # resuming at batch 1 gives epoch 2's second batch
    fresh.set_epoch(3)
    assert list(fresh) != [b for b in EpochBatchSampler(20, 8, seed=3)]  # another epoch, another order
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatchSampler(5, 4, seed=0, world=2)


def test_run_folder_checks_come_before_anything_is_written(split_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "typo"), "--out", str(run), *SMALL]) == 1
    assert not run.exists()  # a mistyped --data leaves nothing behind
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(b"a run")  # a folder without a checkpoint would be reused
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--batch-size", "4"]) == 1
    assert "already holds an earlier run (checkpoints/last.pt)" in capsys.readouterr().err


def test_cosine_runs_cannot_change_length_on_resume(split_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1", "--batch-size", "4",
                 "--schedule", "cosine"]) == 0
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2"]) == 1
    assert "laid out over its 1 epochs" in capsys.readouterr().err


def test_wrapper_prefixes_of_compiled_ddp_models_are_stripped():
    from alexnet import get_model

    state = {"_orig_mod.module." + k: v for k, v in get_model("alexnet_cifar").state_dict().items()}
    get_model("alexnet_cifar", weights=state)


def test_curves_are_redrawn_at_most_every_interval_and_always_at_the_end(tmp_path, monkeypatch):
    from alexnet.engine import logging as run_logging

    drawn = []
    monkeypatch.setattr(run_logging, "draw_curves", lambda rows, path, *a: drawn.append(len(rows)))
    monkeypatch.setattr(run_logging, "available", lambda module: module == "matplotlib")
    logger = run_logging.RunLogger(tmp_path, enabled=True)
    rows = [{k: 0.5 for k in run_logging.METRIC_FIELDS} | {"epoch": e} for e in (1, 2, 3)]
    logger.epoch(rows[:1], 1)
    logger.epoch(rows[:2], 2)  # within CURVES_EVERY_S of the first drawing
    assert drawn == [1]
    monkeypatch.setattr(run_logging, "CURVES_EVERY_S", 0.0)
    logger.epoch(rows, 3)
    assert drawn == [1, 3]
    monkeypatch.setattr(run_logging, "CURVES_EVERY_S", 1e9)
    logger.epoch(rows + [rows[0] | {"epoch": 4}], 4)
    logger.close()
    logger.close()  # a second close draws nothing new
    assert drawn == [1, 3, 4]
