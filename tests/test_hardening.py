"""Hostile data and careless hands: each case of issue 12, and split folder names (issue 11, item 5)."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, write_cifar, write_images
from PIL import Image

from alexnet import checkpoint
from alexnet.cli import main
from alexnet.data import DataError, open_source
from alexnet.data.cifar import is_cifar_dir
from alexnet.engine.resume import StopFlag
from alexnet.errors import DataWarning


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_run) -> tuple[Path, Path]:
    """(data folder, best.pt) of a one-epoch run, shared by the tests that need a checkpoint."""
    root = tmp_path_factory.mktemp("trained")
    write_images(root / "data" / "train", 8, seed=1)
    write_images(root / "data" / "val", 4, seed=2)
    assert train_run(root / "data", root / "run", "--epochs", "1") == 0
    return root / "data", root / "run" / "checkpoints" / "best.pt"


class Marker:
    """Unpickling this runs code: it creates the file ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


# 1. prepare imagenet-val: names and labels stay inside the validation folder

@pytest.mark.parametrize("labels", [
    "../../outside/secret.txt 0\n",  # val.txt, a path out of the folder
    "ImageId,PredictionString\nILSVRC2012_val_00000001,../../escaped 1 2 3 4\n",  # CSV, a label out of it
    "ImageId,PredictionString\nILSVRC2012_val_00000001,/tmp/abs 1 2 3 4\n",  # CSV, an absolute label
    "ImageId,PredictionString\nILSVRC2012_val_00000001,dogs 1 2 3 4\n",  # not a wnid
])
def test_imagenet_val_moves_nothing_outside_its_folder(tmp_path, capsys, labels):
    val, outside = tmp_path / "a" / "b" / "val", tmp_path / "outside"
    val.mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    (val / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"jpeg")
    (tmp_path / "classes.txt").write_text("n01440764 tench\n")
    (tmp_path / "labels").write_text(labels)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["prepare", "imagenet-val", "--val-dir", str(val), "--labels", str(tmp_path / "labels"),
                 "--classes", str(tmp_path / "classes.txt")]) == 1
    assert "nothing was moved" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


# 2. prepare cifar --to-folders: class names from the pickle are plain folder names

@pytest.mark.parametrize("name", [b"../../x", b"/tmp/abs", b"..", b""])
def test_cifar_class_names_cannot_write_outside_dst(tmp_path, capsys, name):
    src = write_cifar(tmp_path / "cifar-10-batches-py")
    names = [f"class{i}".encode() for i in range(10)]
    names[3] = name
    with open(src / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names}, f, protocol=2)
    assert main(["prepare", "cifar10", str(src), "--to-folders", str(tmp_path / "out" / "dst")]) == 1
    assert "not a plain folder name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "x").exists()


# 3. CIFAR: detected only as a CIFAR folder, and read without running code

def test_class_folders_beside_batch_files_are_images_and_nothing_is_unpickled(split_folder, tmp_path):
    ran = tmp_path / "ran"
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        (split_folder / name).write_bytes(pickle.dumps({b"data": Marker(ran)}, protocol=2))
    assert not is_cifar_dir(split_folder)
    splits = open_source(str(split_folder), 32)
    assert splits.class_names == ["blue", "green", "red"] and not ran.exists()


def test_a_crafted_cifar_batch_is_refused_not_run(tmp_path):
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    ran = tmp_path / "ran"
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": Marker(ran), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="data_batch_3: refused.*never holds.*nothing in it was run"):
        open_source(str(folder), 32)
    assert not ran.exists()
    # an array of Python objects would unpickle arbitrary objects into it: refused too
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.array([1, "x"], dtype=object)}, protocol=2))
    with pytest.raises(DataError, match="array of Python objects"):
        open_source(str(folder), 32)


def test_the_real_cifar_files_read_with_the_restricted_unpickler():
    real = Path("/work/shared/data/cifar10_partial/cifar-10-batches-py")
    if not real.is_dir():
        pytest.skip("the shared CIFAR-10 copy is not on this machine")
    splits = open_source(str(real), 32)
    assert splits.class_names[:2] == ["airplane", "automobile"] and len(splits.test) > 0


# 4. sizes are checked against the architecture and the free memory before anything is allocated

@pytest.mark.parametrize("command", [
    ["summary", "--arch", "alexnet", "--image-size", "100000"],
    ["bench", "--arch", "alexnet_cifar", "--image-size", "100000", "--quick", "--device", "cpu"],
    ["prepare", "cache", "--data", "DATA", "--image-size", "100000"],
    ["train", "--data", "DATA", "--out", "RUN", *TINY, "--image-size", "100000"],
])
def test_a_huge_image_size_is_a_one_line_error(split_folder, tmp_path, capsys, command):
    command = [str(split_folder) if c == "DATA" else str(tmp_path / "run") if c == "RUN" else c for c in command]
    assert main(command) == 1
    err = capsys.readouterr().err
    assert "--image-size 100000:" in err and "GiB" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_an_edited_checkpoint_input_size_is_refused_before_allocating(trained, tmp_path, capsys):
    data, best = trained
    ckpt = torch.load(best, weights_only=True)
    ckpt["preprocess"].update(crop=100000, resize=114286)
    torch.save(ckpt, tmp_path / "huge.pt")
    image = next((data / "val" / "red").iterdir())
    assert main(["predict", "--checkpoint", str(tmp_path / "huge.pt"), str(image)]) == 1
    assert "input size 100000" in capsys.readouterr().err


# 5. refusals say what the file is and never suggest unsafe loading

@pytest.mark.parametrize("content, message", [
    (lambda p: torch.save({"a": Marker(p)}, p.with_name("x.pt")), "holds Python code or objects"),
    # Seeded: os.urandom's bytes began with a pickle opcode about once in 256 runs.
    (lambda p: p.with_name("x.pt").write_bytes(np.random.default_rng(0).bytes(4096)), "not a PyTorch file"),
    (lambda p: p.with_name("x.pt").write_bytes(b""), "empty file"),
    (lambda p: p.with_name("x.pt").write_bytes(pickle.dumps({"a": 1})), "a Python pickle, not a PyTorch"),
])
def test_refusals_say_what_the_file_is(tmp_path, capsys, content, message):
    content(tmp_path / "ran")
    assert main(["predict", "--checkpoint", str(tmp_path / "x.pt"), str(tmp_path / "x.pt")]) == 1
    err = capsys.readouterr().err
    assert message in err and "weights_only" not in err and "succeed" not in err
    assert not (tmp_path / "ran").exists()


# 6. symlinks: each real folder once, no file in two splits

def test_symlink_loops_are_followed_once(tmp_path):
    data = tmp_path / "data"
    write_images(data / "train", 4)
    write_images(data / "val", 2, seed=5)
    os.symlink("..", data / "train" / "red" / "loop")  # train/red/loop -> train/
    os.symlink("../../val/blue", data / "train" / "green" / "more")  # into another split
    splits = open_source(str(data), 32)
    assert (len(splits.train), len(splits.val)) == (12, 6)

    outside = tmp_path / "elsewhere"
    write_images(outside, 3, seed=7)
    os.symlink(outside / "red", data / "train" / "red" / "external")  # a folder outside the data: followed
    assert len(open_source(str(data), 32).train) == 15


def test_a_file_in_two_splits_is_refused(tmp_path):
    data = tmp_path / "data"
    write_images(data / "train", 4)
    write_images(data / "val", 2, seed=5)
    os.symlink(next((data / "train" / "red").iterdir()), data / "val" / "red" / "same.png")
    with pytest.raises(DataError, match="is in both train/ and val/"):
        open_source(str(data), 32)


# 7. hidden and system folders and files are never classes or images

def test_hidden_and_system_folders_are_skipped(tmp_path):
    data = tmp_path / "flat"
    write_images(data, 5)
    (data / ".ipynb_checkpoints").mkdir()
    write_images(data / "__MACOSX", 2)
    (data / "red" / "._img 0.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")
    splits = open_source(str(data), 32, val_split=0.2)
    assert splits.class_names == ["blue", "green", "red"]
    assert len(splits.train) + len(splits.val) == 15


# 8. a run folder inside the data

def test_out_inside_data_is_refused(split_folder, capsys, train_run):
    assert train_run(split_folder, split_folder / "run1", "--epochs", "1") == 1
    assert "inside --data" in capsys.readouterr().err
    assert not (split_folder / "run1").exists()


# 9. one class

def test_one_class_is_refused(tmp_path, capsys, train_run):
    write_images(tmp_path / "one", 6)
    for name in ("green", "blue"):
        for f in (tmp_path / "one" / name).iterdir():
            f.unlink()
        (tmp_path / "one" / name).rmdir()
    assert train_run(tmp_path / "one", tmp_path / "run", "--epochs", "1") == 1
    assert "one class (red)" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "one"), "--out", str(tmp_path / "run")]) == 1  # the scratch recipe
    out, err = capsys.readouterr()
    assert "one class (red)" in err and "scratch recipe" not in out  # refused before any recipe is chosen


def test_a_split_without_one_readable_image_is_refused_before_training(tmp_path, capsys, train_run):
    write_images(tmp_path / "data" / "train", 6)
    for name in ("red", "green", "blue"):
        (tmp_path / "data" / "val" / name).mkdir(parents=True)
        (tmp_path / "data" / "val" / name / "z.jpg").write_bytes(b"")
    assert train_run(tmp_path / "data", tmp_path / "run", "--epochs", "1") == 1
    err = capsys.readouterr().err
    assert "none of the 3 images of the val split can be read" in err and "z.jpg" in err
    assert not (tmp_path / "run").exists()  # refused before the run folder, before an epoch


# 10. unreadable images in val/ and test/ are named, in every split, and listed in --json

@pytest.mark.slow
def test_unreadable_val_images_are_named_in_training_and_evaluate(trained, tmp_path, capsys, train_run):
    data, best = trained
    bad = tmp_path / "data"
    write_images(bad / "train", 8, seed=1)
    write_images(bad / "val", 4, seed=2)
    (bad / "val" / "red" / "broken.png").write_bytes(b"not a png")
    assert train_run(bad, tmp_path / "run", "--epochs", "1") == 0
    err = capsys.readouterr().err
    assert "skipped unreadable image" in err and "broken.png" in err
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(bad), "--workers", "0", "--json", str(report)]) == 0
    assert "broken.png" in capsys.readouterr().err
    skipped = json.loads(report.read_text())["skipped_files"]
    assert len(skipped) == 1 and "broken.png" in skipped[0]


# 11. a folder without a checkpoint is not a run

def test_a_run_that_failed_before_its_first_checkpoint_can_be_rerun(split_folder, tmp_path, capsys, train_run):
    run = tmp_path / "run"
    assert train_run(split_folder, run, "--epochs", "1", "--batch-size", "64") == 1  # a batch larger than the data
    assert "fewer than one batch" in capsys.readouterr().err
    (run / "tb").mkdir(exist_ok=True)
    (run / "config.json").write_text("{}")  # what an interrupted start leaves
    assert train_run(split_folder, run, "--epochs", "1") == 0
    assert (run / "checkpoints" / "last.pt").is_file()
    assert train_run(split_folder, run, "--epochs", "1") == 1  # now it is a run
    assert "already holds an earlier run" in capsys.readouterr().err


# 12. outputs do not replace files this tool did not write for the same purpose

def test_outputs_do_not_overwrite_other_files(trained, tmp_path, capsys):
    data, best = trained
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    original = photo.read_bytes()
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(data), "--workers", "0", "--json", str(photo)]) == 1
    assert "not an evaluation report" in capsys.readouterr().err and photo.read_bytes() == original
    assert main(["features", "--weights", "torchvision", "--data", str(data), "--out", str(best)]) == 1
    assert "not a features file" in capsys.readouterr().err and torch.load(best, weights_only=True)["format"]
    assert main(["neighbors", "--weights", "torchvision", "--data", str(data), "--query", str(photo), "--out",
                 str(photo)]) == 1
    assert "not a PNG picture" in capsys.readouterr().err and photo.read_bytes() == original
    assert main(["bench", "--arch", "alexnet_cifar", "--quick", "--device", "cpu", "--json", str(photo)]) == 1
    assert "not a bench report" in capsys.readouterr().err and photo.read_bytes() == original


@pytest.mark.slow
def test_reports_replace_reports_and_overwrite_replaces_anything(trained, tmp_path):
    data, best = trained
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    report = tmp_path / "eval.json"
    for _ in range(2):  # a report replaces an earlier report
        assert main(["evaluate", "--checkpoint", str(best), "--data", str(data), "--workers", "0", "--json", str(report)]) == 0
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(data), "--workers", "0", "--json", str(photo),
                 "--overwrite"]) == 0
    assert json.loads(photo.read_text())["images"] == 12


# 13. write errors are one line, naming the path, and leave nothing half-written

def test_write_errors_are_one_line(trained, tmp_path, capsys, monkeypatch, train_run):
    data, best = trained
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert train_run(data, a_file / "run", "--epochs", "1") == 1  # a file where a folder should be
    err = capsys.readouterr().err
    assert str(a_file) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(data), "--workers", "0",
                 "--json", str(a_file / "eval.json")]) == 1
    assert "cannot write there" in capsys.readouterr().err
    assert main(["prepare", "digits", "--to-folders", str(a_file / "digits")]) == 1
    assert str(a_file) in capsys.readouterr().err
    assert train_run(data, tmp_path / "run", "--epochs", "1", "--cache", "--cache-dir", str(a_file / "cache")) == 1
    err = capsys.readouterr().err
    assert str(a_file) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_full_disk_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"model": {"w": torch.ones(2)}})
    old = path.read_bytes()

    def full(obj, f):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(checkpoint.CheckpointError, match="No space left on device.*previous file is kept"):
        checkpoint.save(path, {"model": {"w": torch.zeros(2)}})
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_prepare_to_folders_leaves_nothing_half_written(tmp_path, monkeypatch):
    from alexnet.tasks import prepare

    calls = []

    def failing_save(self, path, *a, **k):
        calls.append(path)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(prepare.Image.Image, "save", failing_save)
    with pytest.raises(DataError, match="No space left on device.*nothing was left behind"):
        prepare.digits_to_folders(tmp_path / "digits")
    assert list(tmp_path.iterdir()) == []


# 14. files get the umask's mode, not mkstemp's 0600

def test_checkpoints_get_the_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        checkpoint.save(tmp_path / "c.pt", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == 0o644


# 15. SIGTERM stops a run as Ctrl-C does: saved, resumable, exit 143

def test_stop_flag_catches_sigterm():
    with StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.set and stop.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_sigterm_saves_the_run_and_exits_143(split_folder, tmp_path, capsys, monkeypatch, train_run):
    from alexnet.engine.logging import RunLogger

    step = RunLogger.step

    def terminate_once(self, *args, **kw):
        step(self, *args, **kw)
        if not getattr(terminate_once, "sent", False):
            terminate_once.sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(RunLogger, "step", terminate_once)
    run = tmp_path / "run"
    assert train_run(split_folder, run, "--epochs", "3", "--log-every", "1") == 143
    out = capsys.readouterr().out
    assert "interrupted (SIGTERM)" in out and f"resume with: alexnet train --resume --out {run}" in out
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["position"]["global_step"] == 1


# 16. numeric flags are checked up front

@pytest.mark.parametrize("flag, value", [("--lr", "nan"), ("--lr", "inf"), ("--label-smoothing", "2"),
                                         ("--momentum", "nan"), ("--val-split", "1.5"), ("--dropout", "1")])
def test_numeric_flags_are_validated(split_folder, tmp_path, capsys, flag, value, train_run):
    assert train_run(split_folder, tmp_path / "run", flag, value) == 1
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


# 17. a checkpoint's metadata is checked on load

@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(class_names=c["class_names"][:2]), "3 outputs but there are 2 class names"),
    (lambda c: c["preprocess"].update(crop="x"), "crop 'x'"),
    (lambda c: c["preprocess"].update(mean=[0.5]), "mean is not 3 numbers"),
    (lambda c: c["preprocess"].update(unknown=1), "'preprocess' entry is not usable"),
])
def test_edited_checkpoints_are_one_line_errors(trained, tmp_path, capsys, edit, message):
    data, best = trained
    ckpt = torch.load(best, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, tmp_path / "edited.pt")
    image = next((data / "val" / "red").iterdir())
    for command in (["predict", "--checkpoint", str(tmp_path / "edited.pt"), str(image)],
                    ["evaluate", "--checkpoint", str(tmp_path / "edited.pt"), "--data", str(data), "--workers", "0"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


# 18. --arch that contradicts the weights

def test_finetune_refuses_an_arch_other_than_the_weights(trained, tmp_path, capsys):
    data, best = trained
    assert main(["finetune", "--weights", str(best), "--arch", "alexnet2012", "--data", str(data),
                 "--out", str(tmp_path / "ft"), "--workers", "0"]) == 1
    assert "--arch alexnet2012 conflicts with --weights" in capsys.readouterr().err


# 19. --dropout goes through the model config, so a resumed fine-tuning run is the same run

@pytest.mark.slow
def test_finetune_dropout_resumes_bitwise(trained, tmp_path):
    data, best = trained
    common = ["--weights", str(best), "--data", str(data), "--image-size", "32", "--batch-size", "8", "--workers",
              "0", "--device", "cpu", "--dropout", "0.2", "--schedule", "constant", "--deterministic"]
    assert main(["finetune", *common, "--out", str(tmp_path / "whole"), "--epochs", "2"]) == 0
    assert main(["finetune", *common, "--out", str(tmp_path / "parts"), "--epochs", "1"]) == 0
    assert main(["finetune", "--resume", "--out", str(tmp_path / "parts"), "--epochs", "2"]) == 0
    whole, parts = (torch.load(tmp_path / n / "checkpoints" / "last.pt", weights_only=True) for n in ("whole", "parts"))
    assert whole["model_config"]["dropout"] == parts["model_config"]["dropout"] == 0.2
    assert all(torch.equal(whole["model"][k], parts["model"][k]) for k in whole["model"])


# 20. outside a terminal: a plain flushed line every --log-every steps; no escape codes from file names

def test_progress_lines_outside_a_terminal(split_folder, tmp_path, capsys, train_run):
    assert train_run(split_folder, tmp_path / "run", "--epochs", "1", "--log-every", "1") == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 1/1 step")]
    assert [line.split()[3] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("loss" in line and "img/s" in line and "ETA" in line for line in lines)


def test_predict_escapes_control_characters_in_file_names(trained, tmp_path, capsys):
    data, best = trained
    image = tmp_path / "evil\x1b]0;pwned\x07.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(image, format="PNG")
    assert main(["predict", "--checkpoint", str(best), str(image)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "evil\\x1b]0;pwned\\x07.png" in out


# Issue 11, item 5: split folder names

def test_split_folders_any_case_and_valid(tmp_path):
    data = tmp_path / "data"
    write_images(data / "Train", 4)
    write_images(data / "Validation", 2, seed=4)
    write_images(data / "TEST", 3, seed=5)
    splits = open_source(str(data), 32)
    assert splits.class_names == ["blue", "green", "red"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 6, 9)
    write_images(data / "val", 1)
    with pytest.raises(DataError, match="Validation/ and val/ are both the val split"):
        open_source(str(data), 32)


def test_class_folders_named_like_splits_warn(tmp_path):
    data = tmp_path / "data"
    write_images(data / "Val", 4)
    write_images(data / "Test", 4)
    with pytest.warns(DataWarning, match="class folders Test, Val are named like splits"):
        splits = open_source(str(data), 32)
    assert splits.class_names == ["Test", "Val"]


@pytest.mark.slow
def test_evaluate_scores_a_whole_folder_of_class_folders(trained, capsys):
    data, best = trained
    test = data / "train"  # a folder of class folders, meant as a test set: 24 images
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(test), "--workers", "0"]) == 0
    assert "[all, 24 images" in capsys.readouterr().out
    # --split val: the 10% of each class a run on this folder holds out
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(test), "--workers", "0", "--split", "val"]) == 0
    assert "[val, 3 images" in capsys.readouterr().out
    assert main(["evaluate", "--checkpoint", str(best), "--data", str(data / "val"), "--workers", "0"]) == 0
    assert "[all, 12 images" in capsys.readouterr().out  # too small to split: scored whole all the same


def test_predict_skips_hidden_and_system_folders(trained, tmp_path, capsys):
    data, best = trained
    photos = tmp_path / "photos"
    write_images(photos, 1)
    write_images(photos / ".ipynb_checkpoints", 1)
    write_images(photos / "__MACOSX", 1)
    assert main(["predict", "--checkpoint", str(best), "--json", str(photos)]) == 0
    paths = [p["path"] for p in json.loads(capsys.readouterr().out)["predictions"]]
    assert len(paths) == 3 and not any("ipynb" in p or "MACOSX" in p for p in paths)


def test_file_names_that_are_not_utf8_train(tmp_path, train_run):
    write_images(tmp_path / "data", 4)
    for f in (tmp_path / "data").rglob("*.png"):  # names from a Latin-1 system: undecodable bytes
        os.rename(bytes(f), bytes(f.parent) + b"/\xff\xfe" + f.name.encode())
    assert train_run(tmp_path / "data", tmp_path / "run", "--val-split", "0.25") == 0
