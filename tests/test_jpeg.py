"""--decode-on-device: JPEG bytes from the workers, decoded in batches on the device.

On the CPU the device is the CPU: the same code as on a GPU, with torchvision's CPU decoder
in place of nvJPEG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.data import open_source
from alexnet.data.cache import cache_split
from alexnet.data.fast import CachedLoader, EvalBatches
from alexnet.data.images import ImageReadError
from alexnet.data.jpeg import DeviceDecodeLoader, read_for_device
from alexnet.data.loading import EpochBatchSampler
from conftest import write_images

CPU = torch.device("cpu")


def _mixed_folder(root: Path) -> Path:
    """JPEGs of two sizes and both orientations, grey and CMYK JPEGs, and a PNG."""
    write_images(root, 5, size=50, fmt="jpg")
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (45, 60, 3), np.uint8)).save(root / "red" / "wide.jpg")
    Image.fromarray(rng.integers(0, 256, (64, 44, 3), np.uint8)).save(root / "green" / "tall.jpg")
    Image.fromarray(rng.integers(0, 256, (48, 48), np.uint8)).save(root / "blue" / "grey.jpg")
    Image.fromarray(rng.integers(0, 256, (40, 52, 3), np.uint8)).convert("CMYK").save(root / "blue" / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 256, (41, 41, 3), np.uint8)).save(root / "red" / "photo.png")
    return root


def test_jpegs_travel_as_bytes_and_the_rest_as_decoded_squares(tmp_path):
    root = _mixed_folder(tmp_path / "d")
    assert read_for_device(str(root / "red" / "wide.jpg"), 37).dim() == 1
    assert read_for_device(str(root / "blue" / "grey.jpg"), 37).dim() == 1  # the decoder converts grey
    assert read_for_device(str(root / "blue" / "cmyk.jpg"), 37).shape == (37, 37, 3)
    assert read_for_device(str(root / "red" / "photo.png"), 37).shape == (37, 37, 3)
    with pytest.raises(ImageReadError, match="over the limit"):
        read_for_device(str(root / "red" / "wide.jpg"), 37, max_pixels=1000)
    turned = Image.Exif()
    turned[0x0112] = 6  # a phone's portrait photo, stored on its side
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(root / "red" / "turned.jpg", exif=turned)
    Image.fromarray(np.zeros((2, 400, 3), np.uint8)).save(root / "red" / "strip.jpg")
    assert read_for_device(str(root / "red" / "turned.jpg"), 37).shape == (37, 37, 3)  # upright, by Pillow
    assert read_for_device(str(root / "red" / "strip.jpg"), 37).shape == (37, 37, 3)  # its centre, by Pillow


@pytest.mark.parametrize("train", [True, False])
def test_device_decoding_gives_the_cache_paths_batches(tmp_path, train, make_preprocess):
    """Same crops, flips and lighting as the cache path; only the resize is torch's rather
    than Pillow's, so pixels may differ by a level or two."""
    root = _mixed_folder(tmp_path / "d")
    splits = open_source(str(root), 32, 0.5)
    subset = splits.train if train else splits.val
    p = make_preprocess(lighting=0.1)
    if train:
        sampler = EpochBatchSampler(len(subset), 4, seed=3)
        sampler.set_epoch(2)
    else:
        sampler = EvalBatches(len(subset), 4)
    cache = cache_split(subset, 37, "d")
    cached = list(CachedLoader(cache, p, sampler, train=train, device=CPU, workers=0))
    decoded = list(DeviceDecodeLoader(subset, p, sampler, train=train, device=CPU, workers=2))
    assert len(decoded) == len(cached) >= 2
    for a, b in zip(decoded, cached):
        assert torch.equal(a.target, b.target) and a.skipped == ()
        level = 1 / 255 / min(p.std)  # one pixel level, normalised
        assert (a.images - b.images).abs().max() <= 2 * level
        assert (a.images - b.images).abs().mean() <= 0.05 * level


def test_unreadable_files_are_left_out_and_named(tmp_path, make_preprocess):
    root = tmp_path / "d" / "train"
    write_images(root, 4, size=50, fmt="jpg")
    write_images(tmp_path / "d" / "val", 1, size=50, fmt="jpg")
    jpeg = (root / "red" / "img 0.jpg").read_bytes()
    (root / "red" / "cut off.jpg").write_bytes(jpeg[: len(jpeg) // 2])  # header fine: only decoding finds it
    (root / "red" / "empty.jpg").write_bytes(b"")
    (root / "green" / "notes.jpg").write_text("not an image\n")
    splits = open_source(str(tmp_path / "d"), 32, 0.1)
    sampler = EvalBatches(len(splits.train), 64)
    [batch] = list(DeviceDecodeLoader(splits.train, make_preprocess(), sampler, train=False, device=CPU, workers=0))
    assert len(batch.images) == len(batch.target) == len(splits.train) - 3
    problems = "\n".join(batch.skipped)
    assert len(batch.skipped) == 3
    assert "cut off.jpg: corrupt or truncated JPEG (Image is incomplete or truncated)" in problems
    assert "empty.jpg: empty file" in problems and "notes.jpg: not an image file" in problems


@pytest.mark.slow
def test_train_decoding_on_the_device_resumes_exactly(tmp_path, capsys, train_run):
    write_images(tmp_path / "d" / "train", 6, size=44, fmt="jpg")
    write_images(tmp_path / "d" / "val", 2, size=44, seed=5, fmt="jpg")
    args = ["--decode-on-device", "--deterministic", "--lighting", "0.1", "--schedule", "step"]
    assert train_run(tmp_path / "d", tmp_path / "full", "--epochs", "2", *args) == 0
    assert "JPEGs decoded in batches on the device" in capsys.readouterr().out
    assert train_run(tmp_path / "d", tmp_path / "part", *args) == 0
    assert main(["train", "--resume", "--out", str(tmp_path / "part"), "--epochs", "2"]) == 0
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    part = torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], part[k]) for k in full)


@pytest.mark.parametrize("data, args, message", [
    ("digits", ["--decode-on-device"], "is not a folder of images to crop from; drop the flag"),
    (None, ["--decode-on-device", "--cache"], "--cache and --decode-on-device are two ways"),
])
def test_decode_on_device_refuses_what_it_cannot_do(tmp_path, capsys, data, args, message, train_run):
    if data is None:
        write_images(tmp_path / "d", 3, size=44, fmt="jpg")
        data = tmp_path / "d"
    assert train_run(data, tmp_path / "run", *args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
