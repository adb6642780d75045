"""Pretrained weights, predict, features + scikit-learn classifiers, neighbours: offline, on the CPU.

Weights are made by the tests (torchvision's AlexNet with random weights, saved as
torchvision saves its own); the torch hub cache is a temporary TORCH_HOME; the download
is replaced by one that fails as an offline machine does. Small tests use an
``alexnet_cifar`` checkpoint at 32 px; the shapes that only exist at 224 use AlexNet at 224.
"""

from __future__ import annotations

import json
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from conftest import write_cifar, write_images
from safetensors.torch import save_file

from alexnet import checkpoint
from alexnet.cli import main
from alexnet.data.images import load_rgb
from alexnet.data.transforms import Preprocess, ten_crop_transform
from alexnet.models import WeightsError, get_model
from alexnet.models.pretrained import HUB_FILES, imagenet_categories, load_pretrained
from alexnet.tasks import classifier as clf

URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


@pytest.fixture(scope="module")
def tv_model() -> torchvision.models.AlexNet:
    torch.manual_seed(0)
    return torchvision.models.alexnet(weights=None).eval()


@pytest.fixture(scope="module")
def tv_file(tv_model, tmp_path_factory) -> Path:
    """A state dict file exactly as torchvision publishes its weights (random values)."""
    path = tmp_path_factory.mktemp("tv") / HUB_FILES[0]
    torch.save(tv_model.state_dict(), path)
    return path


@pytest.fixture
def offline(monkeypatch):
    """No download can happen: torch.hub's downloader fails as it does without a network."""

    def refuse(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def torch_home(tmp_path, monkeypatch, offline) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def colours(tmp_path) -> Path:
    """train/ and val/ with three colour classes, few images (AlexNet at 224 is slow on a CPU)."""
    write_images(tmp_path / "colours" / "train", 3, seed=1)
    write_images(tmp_path / "colours" / "val", 1, seed=2, fmt="jpg")
    return tmp_path / "colours"


@pytest.fixture
def small_ckpt(tmp_path) -> Path:
    """A checkpoint of this project: alexnet_cifar at 32 px, three colour classes."""
    torch.manual_seed(0)
    model = get_model("alexnet_cifar", num_classes=3)
    path = tmp_path / "small.pt"
    checkpoint.save(path, {
        "arch": "alexnet_cifar", "model_config": model.config.to_dict(), "class_names": ["blue", "green", "red"],
        "preprocess": Preprocess.for_size(32).to_dict(), "model": model.state_dict(), "data": {"val_split": 0.1},
    })
    return path


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"alexnet {command}: error: ") and "Traceback" not in err, err
    return lines[0]


# --- weights -----------------------------------------------------------------------------

def test_torchvision_state_dict_file_loads_with_imagenet_names(tv_model, tv_file):
    p = load_pretrained(tv_file)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (p.model(x) - tv_model(x)).abs().max().item() < 1e-5
    assert p.class_names == imagenet_categories() and len(p.class_names) == 1000
    assert p.class_names[281] == "tabby"
    assert (p.preprocess.crop, p.preprocess.resize, p.preprocess.mean) == (224, 256, (0.485, 0.456, 0.406))
    assert not p.model.training and p.spec == str(tv_file.resolve())
    model, names, preprocess, description = p  # unpacks as the four things a command needs
    assert "alexnet state dict, ImageNet classes" in description


def test_safetensors_loads(tv_model, tmp_path):
    path = tmp_path / "alexnet.safetensors"
    save_file(tv_model.state_dict(), str(path))
    p = load_pretrained(path)
    assert torch.equal(p.model.conv1.weight, tv_model.features[0].weight)
    assert torch.equal(p.model.fc8.bias, tv_model.classifier[6].bias)
    # this project's layer names, another variant, another class count: found from the tensors
    small = get_model("alexnet_cifar", num_classes=7)
    save_file(small.state_dict(), str(tmp_path / "small.safetensors"))
    p = load_pretrained(tmp_path / "small.safetensors")
    assert p.model.config == small.config and p.class_names == [str(i) for i in range(7)] and p.preprocess.crop == 32


def test_weights_that_fit_no_variant_name_what_differs(tv_model, tmp_path):
    state = {k: v for k, v in tv_model.state_dict().items() if not k.startswith("classifier.4")}
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(WeightsError, match=r"missing: fc7.weight, fc7.bias"):
        load_pretrained(tmp_path / "cut.pth")
    with pytest.raises(WeightsError, match="no such file"):
        load_pretrained(tmp_path / "absent.pth")


@pytest.mark.parametrize("name", HUB_FILES)
def test_torchvision_from_the_hub_cache(name, tv_file, torch_home):
    torch_home.mkdir(parents=True)
    os.symlink(tv_file, torch_home / name)
    p = load_pretrained("torchvision")
    assert p.spec == "torchvision" and p.class_names[281] == "tabby" and p.preprocess.crop == 224
    assert str(torch_home / name) in p.description and "IMAGENET1K_V1" in p.description


def test_torchvision_offline_without_the_file_is_one_line(torch_home, tmp_path, capsys):
    assert main(["predict", "--weights", "torchvision", str(tmp_path / "cat.jpg")]) == 1
    line = _one_line_error(capsys, "predict")
    assert f"save it as {torch_home / HUB_FILES[0]}" in line and f"download {URL}" in line
    assert "Temporary failure in name resolution" in line


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): what a malicious weights file would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_a_pickle_that_runs_code_is_refused_and_not_run(tmp_path, capsys):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": _RunsCode(marker)}, evil)
    with pytest.raises(checkpoint.CheckpointError, match="refused"):
        load_pretrained(evil)
    assert main(["features", "--weights", str(evil), "--data", "digits", "--out", str(tmp_path / "f.npz")]) == 1
    assert "refused" in _one_line_error(capsys, "features")
    assert not marker.exists()


# --- predict -----------------------------------------------------------------------------

def test_predict_with_torchvision_weights_names_imagenet_classes(tv_file, torch_home, colours, capsys):
    torch_home.mkdir(parents=True)
    os.symlink(tv_file, torch_home / HUB_FILES[0])
    image = colours / "val" / "red" / "img 0.jpg"
    assert main(["predict", "--weights", "torchvision", "--top-k", "3", str(image)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("img 0.jpg") and len(out) == 4
    categories = set(imagenet_categories())
    assert all(line.split("%  ", 1)[1] in categories for line in out[1:])


def test_predict_folders_globs_json_and_bad_files(small_ckpt, colours, capsys):
    (colours / "notes.txt").write_text("not an image, and not picked up from a folder")
    (colours / "val" / "broken.png").write_bytes(b"not a png")
    argv = ["predict", "--checkpoint", str(small_ckpt), "--json", "--top-k", "2",
            str(colours / "train" / "red"),  # a folder: its 3 images
            str(colours / "val") + "/**/*.jpg",  # a quoted glob: 3 images in class folders
            str(colours / "val" / "broken.png"), str(colours / "absent.png"), str(colours / "*.gif")]
    assert main(argv) == 1
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["outputs"] == "probability" and doc["views"] == "centre crop"
    good = [p for p in doc["predictions"] if p["error"] is None]
    assert sorted(Path(p["path"]).parent.name for p in good) == ["blue", "green", "red", "red", "red", "red"]
    assert all(len(p["top"]) == 2 and p["top"][0]["class"] in ("red", "green", "blue") for p in good)
    errors = {p["path"]: p["error"] for p in doc["predictions"] if p["error"]}
    assert errors[str(colours / "absent.png")] == "no such file or folder"
    assert errors[str(colours / "*.gif")] == "pattern matches no image files"
    assert errors[str(colours / "val" / "broken.png")].startswith("cannot read image")
    lines = captured.err.strip().splitlines()  # and the same three on stderr, one line each
    assert len(lines) == 3 and f"{colours / 'val' / 'broken.png'}: cannot read image" in captured.err


def test_predict_ten_crop_is_the_mean_softmax_of_ten_views(small_ckpt, colours, capsys):
    image = colours / "val" / "green" / "img 0.jpg"
    assert main(["predict", "--checkpoint", str(small_ckpt), "--ten-crop", "--json", "--top-k", "3", str(image)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["views"] == "ten-crop"
    got = {t["class"]: t["probability"] for t in doc["predictions"][0]["top"]}
    ckpt = checkpoint.load(small_ckpt)
    from alexnet.models import model_from_checkpoint

    model = model_from_checkpoint(ckpt).eval()
    views = ten_crop_transform(Preprocess.from_dict(ckpt["preprocess"]))(load_rgb(image))
    assert views.shape == (10, 3, 32, 32)
    with torch.no_grad():
        expected = model(views).softmax(1).mean(0)
    for i, name in enumerate(ckpt["class_names"]):
        assert got[name] == pytest.approx(expected[i].item(), abs=1e-6)


# --- features and classifiers ------------------------------------------------------------

def test_features_shapes_at_224(tv_file, colours, tmp_path, capsys):
    for layer, width in (("fc7", 4096), ("pool5", 9216)):
        out = tmp_path / f"{layer}.npz"
        assert main(["features", "--weights", str(tv_file), "--data", str(colours), "--layer", layer,
                     "--out", str(out), "--workers", "0"]) == 0
        f = np.load(out)  # no pickle needed to read it
        assert f["train_features"].shape == (9, width) and f["val_features"].shape == (3, width)
        assert f["train_features"].dtype == np.float32 and str(f["layer"]) == layer
        names = list(f["class_names"])
        assert names == ["blue", "green", "red"] and list(f["splits"]) == ["train", "val"]
        for split in ("train", "val"):
            folders = [Path(p).parent.name for p in f[f"{split}_paths"]]
            assert folders == [names[i] for i in f[f"{split}_labels"]]
    assert "pool5 features (train 9x9216, val 3x9216)" in capsys.readouterr().out


def test_features_skip_unreadable_images_and_stay_aligned(small_ckpt, colours, tmp_path, capsys):
    (colours / "train" / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but truncated")
    out = tmp_path / "f.npz"
    assert main(["features", "--weights", str(small_ckpt), "--data", str(colours), "--out", str(out),
                 "--workers", "0"]) == 0
    assert "broken.png" in capsys.readouterr().err
    f = np.load(out)
    assert f["train_features"].shape == (9, 1024) and len(f["train_paths"]) == 9
    assert not any("broken" in p for p in f["train_paths"])
    assert [Path(p).parent.name for p in f["train_paths"]] == [f["class_names"][i] for i in f["train_labels"]]


def test_features_of_in_memory_data_keep_index_strings(small_ckpt, tmp_path):
    cifar = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=4)
    out = tmp_path / "cifar.npz"
    assert main(["features", "--weights", str(small_ckpt), "--data", str(cifar), "--layer", "fc6",
                 "--val-split", "0.2", "--out", str(out), "--workers", "0"]) == 0
    f = np.load(out)
    assert f["train_features"].shape == (16, 1024) and f["test_features"].shape == (4, 1024)
    assert list(f["test_paths"]) == ["0", "1", "2", "3"] and list(f["test_labels"]) == [0, 1, 2, 3]


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("kind", clf.KINDS)
def test_classifier_head_is_the_sklearn_pipeline(kind, classes):
    rng = np.random.default_rng(0)
    y = np.arange(60) % classes
    x = (rng.normal(size=(60, 30)) + 1.5 * y[:, None] * (np.arange(30) < 5)).astype(np.float32)
    pipeline = clf.make_pipeline(kind).fit(x, y)
    head = clf.ClassifierHead.from_sklearn(pipeline)
    with torch.no_grad():
        out = head(torch.from_numpy(x)).numpy()
    assert out.shape == (60, classes) and (out.argmax(1) == pipeline.predict(x)).all()
    if kind == "svm":
        assert head.outputs == "score"
        expected = pipeline.decision_function(x)
        np.testing.assert_allclose(out[:, 1] if classes == 2 else out, expected, atol=1e-4)
    else:
        assert head.outputs == "probability"
        np.testing.assert_allclose(torch.from_numpy(out).softmax(1).numpy(), pipeline.predict_proba(x), atol=1e-5)


@pytest.mark.parametrize("kind", clf.KINDS)
def test_classifier_round_trips_through_predict(kind, small_ckpt, colours, tmp_path, capsys):
    feats = tmp_path / "feats.npz"
    assert main(["features", "--weights", str(small_ckpt), "--data", str(colours), "--out", str(feats),
                 "--classifier", kind, "--workers", "0"]) == 0
    out = capsys.readouterr().out
    saved = tmp_path / f"feats.{kind}.safetensors"
    assert f"{kind} on fc7: val accuracy" in out and f"predict --classifier {saved}" in out
    assert saved.read_bytes()[8:9] == b"{"  # safetensors: a length, then a JSON header; no pickle anywhere

    # The same pipeline fitted on the saved features must give what predict prints for a val image.
    f = np.load(feats)
    pipeline = clf.make_pipeline(kind).fit(f["train_features"], f["train_labels"])
    image = f["val_paths"][0]
    assert main(["predict", "--classifier", str(saved), "--json", "--top-k", "3", image]) == 0
    doc = json.loads(capsys.readouterr().out)
    key = "score" if kind == "svm" else "probability"
    assert doc["outputs"] == key and kind in doc["model"]
    got = {t["class"]: t[key] for t in doc["predictions"][0]["top"]}
    x = f["val_features"][:1]
    expected = pipeline.decision_function(x)[0] if kind == "svm" else pipeline.predict_proba(x)[0]
    for label, value in zip(pipeline.classes_, expected):
        assert got[str(f["class_names"][label])] == pytest.approx(float(value), abs=1e-4)
    # --checkpoint recognises a classifier file too, and --weights refuses it with a pointer
    assert main(["predict", "--checkpoint", str(saved), image]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--weights", str(saved), "--data", str(colours)]) == 1
    assert f"use `alexnet predict --classifier {saved}`" in _one_line_error(capsys, "evaluate")


def test_classifier_whose_weights_are_gone_is_a_one_line_error(small_ckpt, colours, tmp_path, capsys):
    saved = tmp_path / "c.safetensors"
    assert main(["features", "--weights", str(small_ckpt), "--data", str(colours), "--out", str(tmp_path / "f.npz"),
                 "--classifier", "logreg", "--classifier-out", str(saved), "--workers", "0"]) == 0
    small_ckpt.unlink()
    capsys.readouterr()
    assert main(["predict", "--classifier", str(saved), str(colours / "val")]) == 1
    assert "cannot load the weights it was fitted on" in _one_line_error(capsys, "predict")


# --- neighbours and evaluate -------------------------------------------------------------

def test_neighbors_writes_a_png(small_ckpt, colours, tmp_path, capsys):
    query = colours / "train" / "blue" / "img 1.png"
    out = tmp_path / "grid.png"
    assert main(["neighbors", "--weights", str(small_ckpt), "--data", str(colours), "--query", str(query),
                 "-k", "4", "--out", str(out), "--workers", "0"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = capsys.readouterr().out.splitlines()
    rows = lines[1:5]
    assert len(rows) == 4 and float(rows[0].split()[0]) < 1e-3 and rows[0].endswith(str(query))  # itself, first
    distances = [float(r.split()[0]) for r in rows]
    assert distances == sorted(distances)


def test_evaluate_with_weights(small_ckpt, tv_file, colours, capsys):
    assert main(["evaluate", "--weights", str(small_ckpt), "--data", str(colours), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{small_ckpt} on {colours} [val, 3 images, centre crop]") and "top-1" in out
    assert main(["evaluate", "--weights", str(tv_file), "--data", str(colours), "--workers", "0"]) == 1
    line = _one_line_error(capsys, "evaluate")
    assert "has classes [blue, green, red] but the weights predict [tench, goldfish" in line
    assert main(["evaluate", "--data", str(colours)]) == 1
    assert "give one of --checkpoint or --weights" in _one_line_error(capsys, "evaluate")
