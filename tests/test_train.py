"""Train, evaluate and predict end to end on data the tests make."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from alexnet.cli import main
from alexnet.data import DataError, open_source
from alexnet.data.datasets import stratified_split
from alexnet.engine import TrainConfig, fit
from alexnet.models import model_from_checkpoint
from conftest import TINY


@pytest.mark.slow
def test_train_evaluate_predict(split_folder, tmp_path, capsys, train_run):
    run = tmp_path / "run"
    assert train_run(split_folder, run, "--epochs", "6", "--lr", "0.001") == 0
    out = capsys.readouterr().out
    assert "config: {" in out and "epoch   6/6" in out

    assert json.loads((run / "config.json").read_text())["epochs"] == 6
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert set(rows[0]) == {"epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "img_per_s", "seconds"}
    # three colour classes are easy: the network must have learnt them
    assert float(rows[-1]["val_top1"]) == 1.0
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])

    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert ckpt["arch"] == "alexnet_cifar" and ckpt["class_names"] == ["blue", "green", "red"]
    assert ckpt["preprocess"]["crop"] == 32 and len(ckpt["preprocess"]["mean"]) == 3
    assert ckpt["model_config"]["num_classes"] == 3 and ckpt["epoch"] >= 1
    assert (run / "checkpoints" / "last.pt").is_file()
    assert model_from_checkpoint(ckpt)(torch.zeros(1, 3, 32, 32)).shape == (1, 3)

    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(split_folder),
                 "--workers", "0", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "[val, 12 images, centre crop]" in out and "top-1  accuracy 100.00%  error 0.00%" in out
    figures = json.loads(report.read_text())
    assert figures["top1_acc"] == 1.0 and figures["images"] == 12 and figures["split"] == "val"
    assert {"loss", "top5_acc", "top1_err", "top5_err"} <= set(figures)

    image = next((split_folder / "val" / "red").iterdir())
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--top-k", "2", str(image)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and lines[1].endswith("red") and len(lines) == 3


def test_predict_reports_unreadable_images_and_goes_on(split_folder, tmp_path, capsys, train_run):
    run = tmp_path / "run"
    assert train_run(split_folder, run, "--epochs", "1") == 0
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    good = next((split_folder / "val" / "blue").iterdir())
    capsys.readouterr()
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "last.pt"), str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    assert str(bad) in captured.err and "cannot read image" in captured.err
    assert captured.out.splitlines()[0] == str(good)


@pytest.mark.slow
def test_flat_folder_is_split_and_evaluated_on_the_held_out_part(flat_folder, tmp_path, capsys, train_run):
    run = tmp_path / "run"
    assert train_run(flat_folder, run, "--epochs", "1", "--val-split", "0.2") == 0
    assert "one folder split 80%/20%" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(flat_folder),
                 "--workers", "0", "--split", "val"]) == 0
    assert "[val, 6 images" in capsys.readouterr().out


def test_run_folder_is_never_overwritten(split_folder, tmp_path, capsys, train_run):
    run = tmp_path / "run"
    assert train_run(split_folder, run, "--epochs", "1") == 0
    before = (run / "checkpoints" / "last.pt").read_bytes()
    assert main(["train", "--data", str(split_folder), "--out", str(run), *TINY]) == 1
    assert "already holds an earlier run" in capsys.readouterr().err
    assert (run / "checkpoints" / "last.pt").read_bytes() == before


def test_evaluate_refuses_data_with_other_classes(split_folder, flat_folder, tmp_path, capsys, train_run):
    run = tmp_path / "run"
    assert train_run(split_folder, run, "--epochs", "1") == 0
    (flat_folder / "purple").mkdir()
    (flat_folder / "red").rename(flat_folder / "purple" / "red")  # purple/red/*.png: still an image folder
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(flat_folder)]) == 1
    assert "trained on [blue, green, red]" in capsys.readouterr().err


def test_train_and_val_with_different_classes_is_refused(split_folder):
    (split_folder / "val" / "red").rename(split_folder / "val" / "crimson")
    with pytest.raises(DataError, match=r"different class folders \(only in train/: red; only in val/: crimson\)"):
        open_source(str(split_folder), 32)


def test_divergence_stops_with_a_clear_message(split_folder, tmp_path, capsys):
    assert main(["train", "--data", str(split_folder), "--out", str(tmp_path / "run"), *TINY,
                 "--epochs", "2", "--lr", "1e30"]) == 1
    err = capsys.readouterr().err
    assert "diverged" in err and ("best validated weights" in err or "saved last" in err or "no checkpoint was written" in err)


def test_a_failing_run_closes_its_logs_without_hiding_its_error(split_folder, tmp_path, capsys, monkeypatch):
    from alexnet.engine.logging import RunLogger

    closed = []

    def close_on_a_full_disk(self):
        closed.append(True)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RunLogger, "close", close_on_a_full_disk)
    assert main(["train", "--data", str(split_folder), "--out", str(tmp_path / "run"), *TINY,
                 "--epochs", "2", "--lr", "1e30"]) == 1
    assert closed and "diverged" in capsys.readouterr().err


def test_digits_source_and_its_folder_form(tmp_path):
    splits = open_source("digits", 32)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1078, 360, 359)
    assert splits.class_names == [str(d) for d in range(10)] and not splits.preprocess.flip
    image, y = splits.test[0]
    assert image.size == (8, 8) and 0 <= y < 10  # raw; the engine attaches transforms
    assert main(["prepare", "digits", "--to-folders", str(tmp_path / "digits")]) == 0
    assert len(list((tmp_path / "digits" / "test").rglob("*.png"))) == 359
    folder = open_source(str(tmp_path / "digits"), 32)
    assert folder.class_names == splits.class_names and len(folder.test) == 359


def test_stratified_split_is_fixed_and_balanced():
    labels = [0] * 50 + [1] * 30
    a, b = stratified_split(labels, (0.8, 0.2))
    assert (a, b) == tuple(stratified_split(labels, (0.8, 0.2)))
    assert sorted(a + b) == list(range(80))
    assert sum(labels[i] == 1 for i in b) == 6 and len(b) == 16


@pytest.mark.slow
def test_fit_is_reproducible(split_folder, tmp_path):
    cfg = dict(data=str(split_folder), arch="alexnet_cifar", image_size=32, epochs=1, batch_size=8, workers=0, device="cpu")
    weights = []
    for name in ("a", "b"):
        fit(TrainConfig(out=str(tmp_path / name), **cfg))
        weights.append(torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=True)["model"])
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_model_options_are_trained_and_saved(split_folder, tmp_path, train_run):
    assert train_run(split_folder, tmp_path / "run", "--epochs", "1", "--model-option", "norm=bn",
                     "--model-option", "norm_after=conv1,conv2", "--dropout", "0.2") == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["model_config"]["norm"] == "bn" and ckpt["model_config"]["dropout"] == 0.2
    assert ckpt["train_config"]["model_option"] == ["norm=bn", "norm_after=conv1,conv2"]
    assert "norm1.running_mean" in model_from_checkpoint(ckpt).state_dict()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--lr", "-1"], "need --lr > 0"),
        (["--image-size", "12"], "--image-size 12 is below alexnet_cifar's minimum of 15"),
        (["--model-option", "norm=group"], "norm must be one of"),
    ],
)
def test_bad_training_options_are_one_line_errors(split_folder, tmp_path, capsys, extra, message):
    assert main(["train", "--data", str(split_folder), "--out", str(tmp_path / "run"), *TINY, *extra]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
