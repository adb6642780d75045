"""Images as users have them: turned by EXIF, absurdly thin, behind symlinks; output cut short by a pipe."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_images
from PIL import Image, TiffImagePlugin
from torchvision.transforms import v2 as T

from alexnet.cli import main
from alexnet.data import open_source
from alexnet.data.images import load_rgb
from alexnet.data.transforms import (MAX_ASPECT, Preprocess, central_part, eval_transform, square_transform,
                                     stats_transform, ten_crop_transform, train_transform)
from alexnet.tasks.inputs import decode_image, to_image
from alexnet.tasks.predict import gather_images


@pytest.fixture(scope="module")
def best(tmp_path_factory, train_run) -> Path:
    """best.pt of a one-epoch tiny run, for the tests that predict."""
    root = tmp_path_factory.mktemp("trained")
    write_images(root / "data" / "train", 4, seed=1)
    write_images(root / "data" / "val", 2, seed=2)
    assert train_run(root / "data", root / "run", "--epochs", "1") == 0
    return root / "run" / "checkpoints" / "best.pt"


def _pixels(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# 1. EXIF orientation: an image is used upright, as every viewer shows it

def _sideways_jpeg(path: Path, orientation: int = 6) -> np.ndarray:
    """An 80x40 (wide) JPEG tagged to be shown turned; returns its pixels as stored."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_pixels(40, 80)).save(path, exif=exif, quality=95)
    with Image.open(path) as image:  # the decoded pixels as stored, without the turn
        return np.asarray(image.convert("RGB"))


@pytest.mark.parametrize("orientation,turn", [
    (3, lambda a: np.rot90(a, 2)),
    (6, lambda a: np.rot90(a, -1)),  # the usual portrait phone photo: turn 90 degrees clockwise
    (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1]),
])
def test_exif_orientation_is_applied_to_files_and_uploads(tmp_path, orientation, turn):
    path = tmp_path / "phone.jpg"
    stored = _sideways_jpeg(path, orientation)
    want = turn(stored)
    for image in (load_rgb(path), to_image(str(path)), decode_image(path.read_bytes())):
        assert np.array_equal(np.asarray(image), want)


def test_a_folder_of_phone_photos_trains_upright(tmp_path):
    for split in ("train", "val"):
        for name in ("a", "b"):
            (tmp_path / "data" / split / name).mkdir(parents=True)
            _sideways_jpeg(tmp_path / "data" / split / name / "photo.jpg")
    splits = open_source(str(tmp_path / "data"), 32)
    assert {splits.train[0][0].size, splits.val[0][0].size} == {(40, 80)}


def test_an_uncompressed_tiff_turned_by_its_tag_is_not_scrambled(tmp_path):
    # Pillow memory-maps such a file when opened by path, at the turned size.
    grey = (np.arange(40 * 80).reshape(40, 80) % 251).astype(np.uint8)
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x0112] = 6
    Image.fromarray(grey).save(tmp_path / "scan.tif", tiffinfo=tags)
    assert np.array_equal(np.asarray(load_rgb(tmp_path / "scan.tif"))[:, :, 0], np.rot90(grey, -1))


def test_an_unreadable_exif_block_leaves_the_image_as_stored(tmp_path):
    Image.fromarray(_pixels(40, 80)).save(tmp_path / "odd.jpg", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")
    assert load_rgb(tmp_path / "odd.jpg").size == (80, 40)


# 2. any aspect ratio in bounded memory; ordinary images exactly as before

P = Preprocess(crop=128, resize=146, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


@pytest.mark.parametrize("w,h", [(20000, 1), (1, 20000)])
def test_a_one_pixel_strip_is_cut_before_it_is_resized(w, h):
    image = Image.fromarray(_pixels(h, w))
    # 16x1 becomes 2336x146 at 146 px; 20000x1 would become 2,920,000x146 (1.3 GB).
    assert max(central_part(image).size) == MAX_ASPECT
    assert eval_transform(P)(image).shape == (3, 128, 128)
    assert ten_crop_transform(P)(image).shape == (10, 3, 128, 128)
    assert square_transform(146)(image).size == (146, 146)
    assert stats_transform(P)(image).shape == (3, 146, 146)
    assert train_transform(P)(image).shape == (3, 128, 128)
    assert eval_transform(P)(torch.from_numpy(_pixels(h, w)).permute(2, 0, 1)).shape == (3, 128, 128)


@pytest.mark.parametrize("w,h", [(300, 200), (200, 300), (600, 200), (16 * 37, 37), (37, 16 * 37), (7, 7)])
def test_ordinary_images_give_the_same_tensors_as_before(w, h):
    image = Image.fromarray(_pixels(h, w, seed=w + h))
    assert central_part(image) is image
    resized = T.Compose([T.RGB(), T.Resize(146, antialias=True)])
    plain = T.Compose([resized, T.CenterCrop(128), T.ToImage(), T.ToDtype(torch.float32, scale=True),
                       T.Normalize(P.mean, P.std)])
    assert torch.equal(eval_transform(P)(image), plain(image))
    assert np.array_equal(np.asarray(square_transform(146)(image)), np.asarray(T.CenterCrop(146)(resized(image))))


def test_a_thin_image_keeps_the_centre_the_whole_image_would_give():
    # A smooth picture 50 times as wide as high: cut first or not, the crop shows the same middle.
    x = np.linspace(0, 1, 2000)
    row = (np.stack([x, x ** 2, np.sin(3 * x) ** 2], axis=1) * 255).astype(np.uint8)
    image = Image.fromarray(np.repeat(row[None], 40, axis=0))
    whole = T.Compose([T.Resize(146, antialias=True), T.CenterCrop(128), T.ToImage(),
                       T.ToDtype(torch.float32, scale=True), T.Normalize(P.mean, P.std)])(image)
    assert (eval_transform(P)(image) - whole).abs().max() < 0.05


# 3. predict's folders: symlinked folders followed once, links that lead nowhere reported

def _linked_folders(root: Path) -> Path:
    photos = root / "photos"
    write_images(photos / "own", 1)
    write_images(root / "elsewhere", 1, seed=3)
    os.symlink(root / "elsewhere", photos / "linked")  # a folder outside: followed
    os.symlink("..", photos / "own" / "loop")  # back up: each real folder once
    os.symlink(root / "gone.png", photos / "gone.png")  # leads nowhere
    return photos


def test_predict_follows_symlinked_folders_once(tmp_path):
    photos = _linked_folders(tmp_path)
    found, problems = gather_images([str(photos)])
    assert problems == []
    assert sorted(os.path.relpath(f, photos) for f in found) == [
        "gone.png", *(f"{d}/{c}/img 0.png" for d in ("linked", "own") for c in ("blue", "green", "red"))]
    found, _ = gather_images([str(photos / "*.png")])
    assert found == [str(photos / "gone.png")]


def test_predict_reports_a_link_that_leads_nowhere(best, tmp_path, capsys):
    photos = _linked_folders(tmp_path)
    assert main(["predict", "--checkpoint", str(best), "--device", "cpu", "--json", str(photos)]) == 1
    captured = capsys.readouterr()
    predictions = {os.path.relpath(p["path"], photos): p for p in json.loads(captured.out)["predictions"]}
    assert len(predictions) == 7
    assert predictions["gone.png"]["error"] == f"cannot read image: broken symbolic link (to {tmp_path / 'gone.png'})"
    assert "gone.png: cannot read image: broken symbolic link" in captured.err


def test_predict_reports_a_folder_it_cannot_list(tmp_path, monkeypatch):
    photos = tmp_path / "photos"
    write_images(photos, 1)
    (photos / "locked").mkdir()
    scandir = os.scandir

    def denied(path):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", denied)
    found, problems = gather_images([str(photos)])
    assert len(found) == 3
    assert [(p.path, p.error) for p in problems] == [(str(photos / "locked"), "cannot read folder: Permission denied")]


# 4. a reader that stops reading (| head) ends the command quietly

@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_predict_into_a_closed_pipe_exits_quietly(best, tmp_path, json_flag):
    write_images(tmp_path / "photos", 2)
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line: every write fails, as after `head` exits
    try:
        r = subprocess.run([sys.executable, "-m", "alexnet", "predict", "--checkpoint", str(best), "--device", "cpu",
                            *json_flag, str(tmp_path / "photos")], stdout=write, stderr=subprocess.PIPE, text=True,
                           timeout=300)
    finally:
        os.close(write)
    assert (r.returncode, r.stderr) == (141, "")


def test_a_closed_pipe_in_process_is_141(best, tmp_path, monkeypatch):
    write_images(tmp_path / "photos", 1)

    class Closed(io.StringIO):
        def write(self, s):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["predict", "--checkpoint", str(best), "--device", "cpu", str(tmp_path / "photos")]) == 141
