"""The portable weights file and `alexnet export`: every format loads back and computes the same."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_images
from model_files import CLASSES, make_checkpoint
from PIL import Image

import alexnet
from alexnet.cli import main
from alexnet.models import WeightsError, get_model, list_models
from alexnet.models.onnx_file import initializers, is_quantized, make_session, read_onnx
from alexnet.models.portable import FORMAT, read_weights_file, save_weights_file


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    path = make_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    Image.new("RGB", (20, 10), "white").save(tmp_path / "run" / "curves.png")
    return path


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "cat.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(path)
    return path


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_weights_file_round_trip(tmp_path, umask_022):
    model = get_model("alexnet_cifar", num_classes=3)
    mean_image = torch.rand(3, 37, 37)
    preprocess = {"crop": 32, "resize": 37, "normalize": "image", "mean_image": mean_image, "std": [0.2, 0.2, 0.2]}
    path = tmp_path / "w.safetensors"
    save_weights_file(path, model, arch="alexnet_cifar", class_names=CLASSES, preprocess=preprocess,
                      display_names={"red": "Red"}, metrics={"val_top1": 0.5}, extra={"source": "test"})
    wf = read_weights_file(path)
    assert wf.arch == "alexnet_cifar" and wf.class_names == CLASSES and wf.metrics == {"val_top1": 0.5}
    assert wf.display_names == {"red": "Red"} and wf.extra == {"source": "test"}
    assert wf.model_config == model.config.to_dict()
    assert torch.equal(wf.preprocess["mean_image"], mean_image) and wf.preprocess["crop"] == 32
    assert wf.state_dict.keys() == model.state_dict().keys()
    assert all(torch.equal(wf.state_dict[k], v) for k, v in model.state_dict().items())
    assert _mode(path) == 0o644 and not list(tmp_path.glob(".*tmp"))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert meta["format"] == FORMAT and meta["version"] == "1" and "mean_image" not in meta["preprocess"]


def test_weights_file_write_is_atomic(tmp_path, monkeypatch):
    model = get_model("alexnet_cifar", num_classes=3)
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"old")

    def broken(*args, **kwargs):
        Path(args[1]).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_weights_file(path, model, arch="alexnet_cifar", class_names=CLASSES, preprocess={"crop": 32})
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_weights_file_refuses_wrong_class_count(tmp_path):
    with pytest.raises(WeightsError, match="2 class names"):
        save_weights_file(tmp_path / "w.safetensors", get_model("alexnet_cifar", num_classes=3), arch="alexnet_cifar",
                          class_names=["a", "b"], preprocess={"crop": 32})


@pytest.mark.parametrize("fmt, out", [("safetensors", "m.safetensors"), ("onnx", "m.onnx"),
                                      ("torchscript", "m.pt"), ("hf", "m_hf")])
def test_every_format_loads_back_and_agrees(ckpt, picture, tmp_path, fmt, out, capsys, umask_022):
    target = tmp_path / "exports" / out
    assert main(["export", str(ckpt), "--format", fmt, "--out", str(target)]) == 0
    printed = capsys.readouterr().out
    assert f"written to {target}" in printed
    reference = alexnet.load(ckpt).probabilities(picture)
    clf = alexnet.load(target)
    assert clf.class_names == CLASSES and clf.metrics["best_val_top1"] == 0.5
    assert torch.allclose(clf.probabilities(picture), reference, atol=1e-5)
    files = [target] if target.is_file() else [f for f in target.iterdir()]
    assert all(_mode(f) == 0o644 for f in files)
    assert main(["predict", "--weights", str(target), str(picture), "--json", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["predictions"][0]["top"][0]["class"] == clf.predict(picture).label


def test_onnx_has_a_free_batch_and_prints_its_check(ckpt, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    assert "max |diff|" in capsys.readouterr().out
    session = make_session(str(out))
    x = torch.randn(5, 3, 32, 32)
    (logits,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = alexnet.load(ckpt).model(x)
    assert logits.shape == (5, 3) and np.allclose(logits, expected.numpy(), atol=1e-4)
    _, meta = read_onnx(out)
    assert meta["format"] == FORMAT and json.loads(meta["class_names"]) == CLASSES


def test_mean_image_travels_with_onnx_and_torchscript(tmp_path, picture):
    ckpt = make_checkpoint(tmp_path / "ckpt.pt", mean_image=True)
    reference = alexnet.load(ckpt).probabilities(picture)
    for fmt, out in (("onnx", "m.onnx"), ("torchscript", "m.pt")):
        assert main(["export", str(ckpt), "--format", fmt, "--out", str(tmp_path / out)]) == 0
        clf = alexnet.load(tmp_path / out)
        assert clf.preprocess.mean_image is not None
        assert torch.allclose(clf.probabilities(picture), reference, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("arch", list_models())
def test_every_variant_exports_to_onnx(tmp_path, arch, picture):
    ckpt = make_checkpoint(tmp_path / "ckpt.pt", arch=arch, size=64 if arch != "alexnet_cifar" else 32)
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert torch.allclose(alexnet.load(tmp_path / "m.onnx").probabilities(picture),
                          alexnet.load(ckpt).probabilities(picture), atol=1e-5)
    proto, _ = read_onnx(tmp_path / "m.onnx")
    assert not [n for n in proto.graph.node if n.op_type == "Identity" and n.input[0] in initializers(proto)]


def test_int8_export(ckpt, tmp_path, picture, capsys):
    write_images(tmp_path / "calib" / "train", 4, size=40)
    write_images(tmp_path / "calib" / "val", 3, size=40, seed=4)
    out = tmp_path / "m.int8.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--quantize", "int8", "--calibration-data",
                 str(tmp_path / "calib"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "calibrated on 12 images" in printed and "top-1 on" in printed and "change" in printed
    proto, meta = read_onnx(out)
    assert is_quantized(proto) and meta["format"] == FORMAT
    assert out.stat().st_size < (tmp_path / "run" / "checkpoints" / "best.pt").stat().st_size / 3
    clf = alexnet.load(out)
    assert "int8" in clf.description and clf.class_names == CLASSES
    assert clf.probabilities(picture).shape == (1, 3)
    assert main(["evaluate", "--weights", str(out), "--data", str(tmp_path / "calib"), "--workers", "0",
                 "--device", "cpu"]) == 0
    assert "ran with onnxruntime" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--format", "onnx", "--quantize", "int8"], "needs --calibration-data"),
    (["--format", "hf", "--quantize", "int8", "--calibration-data", "."], "onnx only"),
    (["--format", "onnx", "--quantize", "int8", "--calibration-data", "/no/such/dir"], "no such folder"),
])
def test_export_refusals_are_one_line(ckpt, argv, message, capsys):
    assert main(["export", str(ckpt), *argv]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_export_into_a_read_only_folder(ckpt, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["export", str(ckpt), "--format", "safetensors", "--out", str(locked / "m.safetensors")]) == 1
    finally:
        locked.chmod(0o755)
    assert "cannot write" in capsys.readouterr().err


def test_export_under_a_file(ckpt, tmp_path, capsys):
    (tmp_path / "plain").write_text("a file, not a folder")
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "plain" / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "cannot write" in err and err.count("\n") == 1
    assert main(["export", str(ckpt), "--format", "hf", "--out", str(tmp_path / "plain")]) == 1
    assert "is a file" in capsys.readouterr().err


def test_export_refuses_an_onnx_source(ckpt, tmp_path, capsys):
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert main(["export", str(tmp_path / "m.onnx"), "--format", "safetensors"]) == 1
    assert "ONNX file already" in capsys.readouterr().err


def test_onnx_weights_are_inference_only(ckpt, tmp_path, picture):
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    clf = alexnet.load(tmp_path / "m.onnx")
    with pytest.raises(WeightsError, match="logits only"):
        clf.features(picture)
    with pytest.raises(WeightsError, match="inference only"):
        clf.model.train()


@pytest.mark.slow
def test_torchscript_runs_without_this_package(ckpt, tmp_path):
    out = tmp_path / "m.pt"
    assert main(["export", str(ckpt), "--format", "torchscript", "--out", str(out)]) == 0
    x = torch.randn(2, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    code = ("import sys, warnings; sys.modules['alexnet'] = None; warnings.simplefilter('ignore'); import torch; "
            f"m = torch.jit.load({str(out)!r}); print(m(torch.load({str(tmp_path / 'x.pt')!r})).tolist())")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with torch.no_grad():
        expected = alexnet.load(ckpt).model(x)
    assert torch.allclose(torch.tensor(json.loads(run.stdout)), expected, atol=1e-5)


def test_hf_folder_layout_and_model_card(ckpt, tmp_path):
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps({"split": "test", "top1": 0.625, "top5": 1.0, "images": 40}))
    out = tmp_path / "hf"
    assert main(["export", str(ckpt), "--format", "hf", "--out", str(out), "--eval-json", str(evaluation)]) == 0
    assert sorted(f.name for f in out.iterdir()) == ["README.md", "config.json", "curves.png", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "blue", "1": "green", "2": "red"} and config["arch"] == "alexnet_cifar"
    card = (out / "README.md").read_text()
    for text in ("alexnet_cifar", "`red`", "| lr | 0.01 |", "| validation | 50.00% |", "| test | 62.50% | 100.00% |",
                 "curves.png", "/data/colours"):
        assert text in card, text
    assert alexnet.load(out).metrics["test_top1"] == 0.625


def test_class_list_gives_wnid_classes_readable_names(tmp_path, picture):
    import torch

    from alexnet import checkpoint

    ckpt = make_checkpoint(tmp_path / "ckpt.pt")
    obj = torch.load(ckpt, weights_only=True)
    obj["class_names"] = ["n01440764", "n02102040", "n02979186"]  # tench, English springer, cassette player
    checkpoint.save(ckpt, {k: v for k, v in obj.items() if k not in ("format", "version")})
    listing = tmp_path / "imagenet_class_index.json"
    wnids = sorted(["n01440764", "n02102040", "n02979186"] + [f"n0{i:08d}" for i in range(997)])
    listing.write_text(json.dumps({str(i): [w, w] for i, w in enumerate(wnids)}))
    out = tmp_path / "m.safetensors"
    assert main(["export", str(ckpt), "--format", "safetensors", "--out", str(out), "--class-list", str(listing)]) == 0
    clf = alexnet.load(out)
    assert clf.class_names == obj["class_names"]
    from alexnet.data.classnames import imagenet_categories

    names = imagenet_categories()
    assert clf.labels == [names[wnids.index(w)] for w in obj["class_names"]]
    assert clf.predict(picture).label in clf.labels
    assert main(["export", str(make_checkpoint(tmp_path / "plain.pt")), "--format", "safetensors",
                 "--out", str(tmp_path / "p.safetensors"), "--class-list", str(listing)]) == 1
