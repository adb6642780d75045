"""alexnet.load and the Classifier: every input kind, tta, features, errors; predict --tta; the docs' examples."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from model_files import CLASSES, make_checkpoint
from PIL import Image

import alexnet
from alexnet.cli import main
from alexnet.data.images import ImageReadError
from alexnet.models import WeightsError
from alexnet.tasks.inputs import InputError

DOCS = Path(__file__).resolve().parents[1] / "docs" / "serving.md"


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "cat.png"
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(path)
    return path


def test_every_input_kind_gives_the_same_answer(ckpt, picture):
    clf = alexnet.load(ckpt)
    image = Image.open(picture)
    array = np.array(image.convert("RGB"))
    reference = clf.probabilities(str(picture))
    for kind in (picture, image, array, torch.from_numpy(array).permute(2, 0, 1),
                 torch.from_numpy(array).permute(2, 0, 1).float() / 255, picture.read_bytes()):
        assert torch.allclose(clf.probabilities(kind), reference, atol=1e-6), type(kind)
    one = clf.predict(image, top_k=2)
    assert isinstance(one, alexnet.Prediction) and len(one.top) == 2 and one.label in CLASSES
    assert one.top[0][1] == pytest.approx(reference.max().item(), abs=1e-6)
    assert one.indices[0] == reference.argmax().item()
    many = clf.predict([picture, array, image])
    assert isinstance(many, list) and len(many) == 3 and all(len(p.top) == 3 for p in many)  # k capped at 3 classes
    batch = clf.predict(torch.from_numpy(np.stack([array, array])).permute(0, 3, 1, 2))
    assert isinstance(batch, list) and len(batch) == 2


def test_attributes_and_transform(ckpt, picture):
    clf = alexnet.load(ckpt)
    assert clf.class_names == CLASSES and clf.labels == CLASSES and clf.arch == "alexnet_cifar"
    assert clf.metrics["best_val_top1"] == 0.5
    x = clf.transform(Image.open(picture).convert("RGB"))
    assert x.shape == (3, 32, 32)
    with torch.no_grad():
        logits = clf.model(x[None])
    assert torch.allclose(logits.softmax(1), clf.probabilities(picture), atol=1e-6)


def test_tta_is_the_mean_of_the_image_and_its_mirror(ckpt, picture):
    clf = alexnet.load(ckpt)
    x = clf.transform(Image.open(picture).convert("RGB"))[None]
    with torch.no_grad():
        expected = (clf.model(x).softmax(1) + clf.model(x.flip(-1)).softmax(1)) / 2
    assert torch.allclose(clf.probabilities(picture, tta=True), expected, atol=1e-6)
    assert not torch.allclose(clf.probabilities(picture, tta=True), clf.probabilities(picture), atol=1e-6)


def test_predict_cli_tta_matches_the_api(ckpt, picture, capsys):
    assert main(["predict", "--checkpoint", str(ckpt), str(picture), "--tta", "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["views"] == "centre crop + mirror"
    top = report["predictions"][0]["top"][0]
    best = alexnet.load(ckpt).predict(picture, tta=True)
    assert top["class"] == best.label and top["probability"] == pytest.approx(best.probability, abs=1e-5)
    assert main(["predict", "--checkpoint", str(ckpt), str(picture), "--tta", "--ten-crop"]) == 1
    assert "already holds the mirror" in capsys.readouterr().err


def test_features(ckpt, picture):
    clf = alexnet.load(ckpt)
    assert clf.features(picture).shape == (1024,)  # alexnet_cifar's fc7
    assert clf.features([picture, picture], layer="pool5").shape == (2, 256 * 3 * 3)
    with pytest.raises(InputError, match="unknown layer"):
        clf.features(picture, layer="fc9")


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros((8, 8, 3), np.float32), InputError, "uint8"),
    (np.zeros((8, 8, 2), np.uint8), InputError, "HWC"),
    (np.zeros((0, 8, 3), np.uint8), InputError, "HWC"),
    (torch.zeros(5, 8, 8), InputError, "CHW"),
    (torch.full((3, 8, 8), 2.0), InputError, r"\[0, 1\]"),
    (torch.zeros(3, 8, 8, dtype=torch.int32), InputError, "uint8"),
    ("no/such/file.jpg", ImageReadError, "no such file"),
    (b"not an image", InputError, "not an image"),
    (b"", InputError, "empty"),
    (12, InputError, "cannot use a int"),
    ([], InputError, "no inputs"),
])
def test_bad_inputs_are_one_line_errors(ckpt, bad, error, match):
    with pytest.raises(error, match=match) as e:
        alexnet.load(ckpt).predict(bad)
    assert "\n" not in str(e.value)


def test_load_sources(ckpt, tmp_path):
    clf = alexnet.load(torch.load(ckpt, weights_only=True))  # an in-memory checkpoint
    assert clf.class_names == CLASSES
    state = alexnet.get_model("alexnet_cifar", num_classes=3).state_dict()
    assert alexnet.load(state).arch == "alexnet_cifar"
    with pytest.raises(WeightsError, match="no such file"):
        alexnet.load(tmp_path / "missing.pt")
    with pytest.raises(alexnet.api.InputError, match="top_k"):
        alexnet.load(ckpt).predict(np.zeros((8, 8, 3), np.uint8), top_k=0)


@pytest.mark.slow
def test_torchvision_weights_by_name(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(1)
    reference = torchvision.models.alexnet(weights=None)
    torch.save(reference.state_dict(), hub / "alexnet-owt-7be5be79.pth")
    model = alexnet.get_model("alexnet", weights="torchvision").eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(model(x), reference.eval()(x), atol=1e-5)
    clf = alexnet.load("torchvision")
    assert len(clf.class_names) == 1000 and clf.metrics["imagenet_val_top1"] > 0.5


def test_top_level_exports():
    from alexnet.engine.config import TrainConfig

    assert alexnet.TrainConfig is TrainConfig
    assert callable(alexnet.fit) and callable(alexnet.load)
    with pytest.raises(AttributeError):
        alexnet.no_such_thing  # noqa: B018


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _docs_setup(folder: Path) -> None:
    make_checkpoint(folder / "runs" / "x" / "checkpoints" / "best.pt")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / "cat.jpg")


def test_docs_first_python_example_runs(tmp_path, monkeypatch, capsys):
    _docs_setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_blocks(DOCS.read_text())[0], "docs/serving.md", "exec"), {})
    assert "Prediction(top=[" in capsys.readouterr().out


@pytest.mark.slow
def test_docs_python_examples_all_run(tmp_path, monkeypatch, capsys):
    _docs_setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks(DOCS.read_text())
    assert len(blocks) >= 2
    for block in blocks:
        exec(compile(block, "docs/serving.md", "exec"), {})
    assert (tmp_path / "runs" / "digits" / "checkpoints" / "best.pt").is_file()
    assert os.path.exists("cat.jpg")
