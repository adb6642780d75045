"""Bad input, named CIFAR sources, ImageNet names, and the image cache's fast path."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from alexnet.cli import main
from alexnet.data import DataError, open_source
from alexnet.data.cache import cache_split
from alexnet.data.datasets import ArrayImages
from alexnet.data.fast import CachedLoader, Crops, EvalBatches, Finish, cut_slices, cut_torch
from alexnet.data.images import ImageReadError, load_rgb
from alexnet.data.loading import EpochBatchSampler, sample_seed
from alexnet.data.transforms import eval_transform, square_transform
from conftest import write_cifar, write_images


def _bad_files(folder: Path) -> dict[str, Path]:
    """One of each kind of unreadable file, in class ``red``."""
    good = folder / "red" / "img 0.png"
    jpeg = io.BytesIO()
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(jpeg, "JPEG")
    files = {
        "empty": folder / "red" / "empty.jpg",
        "not an image": folder / "red" / "notes.png",
        "truncated": folder / "red" / "cut off.jpg",
        "corrupt": folder / "red" / "garbled.png",
    }
    files["empty"].write_bytes(b"")
    files["not an image"].write_text("this is a text file with an image name\n")
    files["truncated"].write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    data = bytearray(good.read_bytes())
    data[60:200] = bytes(140)  # the compressed pixel data zeroed: header fine, IDAT broken
    files["corrupt"].write_bytes(bytes(data))
    return files


def test_each_kind_of_bad_file_is_an_error_naming_it(tmp_path):
    write_images(tmp_path / "d", 2)
    for kind, path in _bad_files(tmp_path / "d").items():
        with pytest.raises(ImageReadError) as e:
            load_rgb(path)
        assert str(path) in str(e.value), kind
    with pytest.raises(ImageReadError, match="over the limit of 1,000 .*--max-image-pixels"):
        load_rgb(tmp_path / "d" / "red" / "img 0.png", max_pixels=1000)
    assert load_rgb(tmp_path / "d" / "red" / "img 0.png", max_pixels=1600).size == (40, 40)


@pytest.mark.slow
def test_importing_alexnet_leaves_pillows_pixel_limit_alone():
    code = ("from PIL import Image; before = Image.MAX_IMAGE_PIXELS; "
            "import alexnet, alexnet.data, alexnet.cli, alexnet.api; "
            "assert Image.MAX_IMAGE_PIXELS == before is not None, Image.MAX_IMAGE_PIXELS")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_large_image_within_our_limit_is_read_though_pillow_would_refuse_it(tmp_path, monkeypatch):
    # Pillow refuses over twice its limit; shrunk here so that a 40x40 image is "large".
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    write_images(tmp_path / "d", 1)
    path = tmp_path / "d" / "red" / "img 0.png"
    with pytest.raises(Image.DecompressionBombError), Image.open(path):
        pass
    assert load_rgb(path, max_pixels=1600).size == (40, 40)  # --max-image-pixels rules our reads
    assert load_rgb(path, max_pixels=None).size == (40, 40)
    with pytest.raises(ImageReadError, match="over the limit of 1,000"):
        load_rgb(path, max_pixels=1000)
    assert Image.MAX_IMAGE_PIXELS == 500  # and Pillow's setting is the process's again


def test_training_skips_bad_files_and_says_how_many(tmp_path, capsys, train_run):
    write_images(tmp_path / "d", 6)
    bad = _bad_files(tmp_path / "d")
    assert train_run(tmp_path / "d", tmp_path / "run", "--val-split", "0.5") == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err  # skip reports go to stderr, the epoch's count to stdout
    reported = [p for p in bad.values() if str(p) in out]
    assert reported, out  # the ones that fell in the training half, named
    assert "unreadable images skipped" in out


def test_strict_fails_up_front_with_the_list(tmp_path, capsys, train_run):
    write_images(tmp_path / "d", 6)
    bad = _bad_files(tmp_path / "d")
    assert train_run(tmp_path / "d", tmp_path / "run", "--strict") == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"--strict: {len(bad)} of 22 images cannot be read" in captured.err
    for path in bad.values():
        assert str(path) in captured.out + captured.err
    assert not (tmp_path / "run").exists()  # nothing made before the data is known to be good


def test_pixel_limit_applies_to_training_data(tmp_path, capsys, train_run):
    write_images(tmp_path / "d", 6)
    assert train_run(tmp_path / "d", tmp_path / "run", "--strict", "--max-image-pixels", "1000") == 1
    assert "over the limit of 1,000" in capsys.readouterr().err


@pytest.mark.parametrize("case,fix", [
    ("missing", "no such data source"),
    ("no classes", "it holds 3 image files but no class folders"),
    ("empty class", "class folder green has no image files"),
    ("different classes", "only in val/: crimson"),
])
def test_data_errors_are_one_line(tmp_path, capsys, case, fix, train_run):
    data = tmp_path / "d"
    if case == "no classes":
        data.mkdir()
        for i in range(3):
            Image.new("RGB", (8, 8)).save(data / f"{i}.png")
    elif case == "empty class":
        write_images(data, 3)
        for f in (data / "green").iterdir():
            f.unlink()
    elif case == "different classes":
        write_images(data / "train", 3)
        write_images(data / "val", 2)
        (data / "val" / "red").rename(data / "val" / "crimson")
    assert train_run(data, tmp_path / "run") == 1
    err = capsys.readouterr().err
    assert fix in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# --- CIFAR by name -------------------------------------------------------------------

@pytest.fixture
def web(tmp_path):
    """An HTTP server on localhost serving tmp_path/www: downloads for real, without the internet."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    (tmp_path / "www").mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path / "www")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path / "www"
    server.shutdown()


def _cifar_archive(tmp_path: Path, web) -> tuple[str, str]:
    """A cifar-10-python.tar.gz like the real one (made here), its URL and md5."""
    write_cifar(tmp_path / "src" / "cifar-10-batches-py")
    archive = web[1] / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return f"{web[0]}/cifar-10-python.tar.gz", hashlib.md5(archive.read_bytes()).hexdigest()


def test_cifar10_by_name_downloads_through_torchvision(tmp_path, monkeypatch, web):
    import torchvision.datasets

    with pytest.raises(DataError, match="add --download to fetch it"):
        open_source("cifar10", 32)
    url, md5 = _cifar_archive(tmp_path, web)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", url)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "tgz_md5", md5)
    splits = open_source("cifar10", 32, download=True)
    assert (tmp_path / "datasets" / "cifar-10-batches-py" / "test_batch").is_file()
    assert len(splits.train) + len(splits.val) == 100 and len(splits.test) == 20
    assert len(open_source("cifar10", 32).train) == len(splits.train)  # now found without downloading


def test_a_failed_download_is_one_line(tmp_path, monkeypatch, capsys, web, train_run):
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "url", f"{web[0]}/nowhere.tar.gz")  # 404
    assert train_run("cifar10", tmp_path / "run", "--download") == 1
    err = capsys.readouterr().err
    assert "--data cifar10 --download: fetching" in err and "Traceback" not in err


# --- ImageNet names ------------------------------------------------------------------

def test_wnid_folders_get_torchvision_names(tmp_path, capsys):
    from alexnet.data.classnames import imagenet_categories

    # A class list in LOC_synset_mapping.txt's form; folders are two of its wnids.
    wnids = [f"n{i:08d}" for i in range(1000)]
    (tmp_path / "LOC_synset_mapping.txt").write_text("".join(f"{w} name {w}\n" for w in wnids))
    data = tmp_path / "imagenet"
    for wnid in ("n00000281", "n00000001"):
        write_images(data / "train" / wnid, 1)
    for folder in (data / "train").iterdir():  # write_images made colour subfolders: flatten them
        for f in folder.rglob("*.png"):
            f.rename(folder / f"{f.parent.name} {f.name}")
    splits = open_source(str(data), 32, 0.5)
    names = imagenet_categories()
    assert splits.class_names == ["n00000001", "n00000281"]
    assert splits.display_names == [names[1], names[281]] and names[281] == "tabby"

    assert main(["train", "--data", str(data), "--arch", "alexnet_cifar", "--epochs", "1", "--batch-size", "2",
                 "--workers", "0", "--stats-images", "4", "--val-split", "0.5", "--out", str(tmp_path / "run")]) == 0
    image = next((data / "train" / "n00000281").glob("*.png"))
    assert main(["predict", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "last.pt"), str(image)]) == 0
    assert "tabby" in capsys.readouterr().out


# --- the image cache -----------------------------------------------------------------

def test_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="alexnet.data.cache")
    write_images(tmp_path / "d", 4)
    splits = open_source(str(tmp_path / "d"), 32, 0.25)
    first = cache_split(splits.train, 37, "d-train")
    assert any("decoding" in line for line in caplog.messages)
    caplog.clear()
    again = cache_split(splits.train, 37, "d-train")
    assert not caplog.messages and np.array_equal(first.images, again.images)

    changed = Path(splits.train.paths[0])
    Image.new("RGB", (40, 40), (1, 2, 3)).save(changed)
    os.utime(changed, ns=(1, 1))  # even with an old time stamp: the size changed
    splits = open_source(str(tmp_path / "d"), 32, 0.25)
    rebuilt = cache_split(splits.train, 37, "d-train")
    assert any("stale" in line for line in caplog.messages)
    assert rebuilt.images[0].reshape(-1, 3).tolist()[0] == [1, 2, 3]
    assert not np.array_equal(rebuilt.images, first.images)


def test_cache_holds_exactly_the_plain_paths_square(tmp_path):
    write_images(tmp_path / "d", 3, size=50)
    splits = open_source(str(tmp_path / "d"), 32, 0.25)
    cache = cache_split(splits.train, 37, "d-train")
    for i in range(len(splits.train)):
        image, label = splits.train[i]
        assert np.array_equal(cache.images[i], np.asarray(square_transform(37)(image)))
        assert cache.labels[i] == label


def test_cache_leaves_bad_files_out_and_lists_them(tmp_path, capsys):
    write_images(tmp_path / "d", 4)
    bad = _bad_files(tmp_path / "d")
    assert main(["prepare", "cache", "--data", str(tmp_path / "d"), "--arch", "alexnet_cifar", "--val-split", "0.5",
                 "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "unreadable" in out and sum(str(p) in out for p in bad.values()) == len(bad)
    assert json.loads(next((tmp_path / "cache").glob("d-train-*.json")).read_text())["n"] + \
        json.loads(next((tmp_path / "cache").glob("d-val-*.json")).read_text())["n"] == 12


@pytest.mark.parametrize("normalize", ["channel", "image"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cached_and_plain_paths_give_the_same_tensors_for_the_same_crop(tmp_path, normalize, channels_last,
                                                                        make_preprocess):
    import torchvision.transforms.v2.functional as TF

    write_images(tmp_path / "d", 3, size=50)
    splits = open_source(str(tmp_path / "d"), 32, 0.25)
    mean_image = torch.rand(3, 37, 37) if normalize == "image" else None
    p = make_preprocess(lighting=0.1, normalize=normalize, mean_image=mean_image)
    cache = cache_split(splits.train, 37, "d-train")
    index = list(range(len(splits.train)))
    crops = Crops.draw([sample_seed(0, 1, i) for i in index], 37, 32, True, 0.1)
    crops.flip[0], crops.flip[1] = True, False  # both cases, whatever the draw
    batch = Finish(p, torch.device("cpu"), channels_last)(cut_slices(cache.images, index, crops, 32), crops)

    rgb = (crops.alpha * torch.tensor(p.eigval)) @ torch.tensor(p.eigvec).T
    for k, i in enumerate(index):
        # The plain path's steps one by one, with this sample's crop, flip and lighting.
        x = TF.to_dtype(TF.to_image(square_transform(37)(splits.train[i][0])), torch.float32, scale=True)
        x = x + rgb[k][:, None, None]
        x = (x - (mean_image if mean_image is not None else torch.tensor(p.mean)[:, None, None])) \
            / torch.tensor(p.std)[:, None, None]
        x = x[:, int(crops.top[k]) : int(crops.top[k]) + 32, int(crops.left[k]) : int(crops.left[k]) + 32]
        if crops.flip[k]:
            x = x.flip(-1)
        torch.testing.assert_close(batch[k], x, atol=2e-5, rtol=0)


def test_cached_centre_crop_equals_the_plain_eval_transform(tmp_path, make_preprocess):
    write_images(tmp_path / "d", 3, size=50)
    splits = open_source(str(tmp_path / "d"), 32, 0.25)
    p = make_preprocess()
    cache = cache_split(splits.val, 37, "d-val")
    loader = CachedLoader(cache, p, EvalBatches(cache.n, 4), train=False, device=torch.device("cpu"), workers=0)
    cached = torch.cat([b.images for b in loader])
    plain = torch.stack([eval_transform(p)(splits.val[i][0]) for i in range(len(splits.val))])
    torch.testing.assert_close(cached, plain, atol=2e-5, rtol=0)


def test_resident_gather_equals_worker_slices(tmp_path, make_preprocess):
    """The GPU-resident path (one gather on the device) cuts what the workers' slices cut."""
    images = np.random.default_rng(0).integers(0, 256, (10, 37, 37, 3), dtype=np.uint8)
    crops = Crops.draw([sample_seed(3, 2, i) for i in range(10)], 37, 32, True, 0.0)
    index = list(range(10))[::-1]
    sliced = cut_slices(images, index, crops, 32)
    gathered = cut_torch(torch.from_numpy(images), torch.tensor(index), crops, 32)
    assert torch.equal(sliced, gathered) and crops.flip.any() and not crops.flip.all()

    cache = cache_split(ArrayImages(images, range(10)), 37, "arrays")  # in memory: no file
    sampler = EpochBatchSampler(10, 4, seed=5)
    sampler.set_epoch(2)
    kw = dict(train=True, device=torch.device("cpu"))
    workers = [b.images for b in CachedLoader(cache, make_preprocess(lighting=0.1), sampler, workers=2, **kw)]
    resident = [b.images for b in CachedLoader(cache, make_preprocess(lighting=0.1), sampler, resident=True, **kw)]
    assert len(workers) == 2 and all(torch.equal(a, b) for a, b in zip(workers, resident))


@pytest.mark.slow
def test_train_with_cache_resumes_exactly(tmp_path, train_run):
    write_images(tmp_path / "d" / "train", 6, size=44)
    write_images(tmp_path / "d" / "val", 2, size=44, seed=5)
    args = ["--cache", "--deterministic", "--workers", "2", "--lighting", "0.1", "--schedule", "step"]
    assert train_run(tmp_path / "d", tmp_path / "full", "--epochs", "2", *args) == 0
    assert train_run(tmp_path / "d", tmp_path / "part", "--epochs", "1", *args) == 0
    assert main(["train", "--resume", "--out", str(tmp_path / "part"), "--epochs", "2"]) == 0
    full = torch.load(tmp_path / "full" / "checkpoints" / "last.pt", weights_only=True)["model"]
    part = torch.load(tmp_path / "part" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(full[k], part[k]) for k in full)


def test_cache_refuses_data_used_whole(tmp_path, capsys, train_run):
    assert train_run("digits", tmp_path / "run", "--cache") == 1
    assert "nothing to cache; drop --cache" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
    cifar = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=4)
    assert train_run(cifar, tmp_path / "run", "--cache", "--arch", "alexnet_cifar") == 1
    assert "CIFAR at 32 px), so there is nothing to cache" in capsys.readouterr().err


def test_worker_batches_survive_the_shared_ring(tmp_path, make_preprocess):
    """Workers reuse a ring of shared blocks for finished batches: each batch, as the loop
    sees it, must still be the batch the single-process path makes (no block overwritten
    before its batch was handed on), over many more batches than the ring holds."""
    images = np.random.default_rng(1).integers(0, 256, (48, 37, 37, 3), dtype=np.uint8)
    cache = cache_split(ArrayImages(images, [i % 3 for i in range(48)]), 37, "arrays")
    sampler = EpochBatchSampler(48, 2, seed=0)
    sampler.set_epoch(1)
    kw = dict(train=True, device=torch.device("cpu"))
    seen = [b.images.clone() for b in CachedLoader(cache, make_preprocess(lighting=0.1), sampler, workers=2, **kw)]
    plain = [b.images for b in CachedLoader(cache, make_preprocess(lighting=0.1), sampler, workers=0, **kw)]
    assert len(seen) == 24 and all(torch.equal(a, b) for a, b in zip(seen, plain))


def test_crop_draws_depend_on_the_sample_seed_alone_and_have_the_right_law():
    seeds = [sample_seed(0, 1, i) for i in range(40_000)]
    c = Crops.draw(seeds, 40, 32, True, 0.1)
    part = Crops.draw(seeds[7:9][::-1], 40, 32, True, 0.1)  # other batch, other order, same samples
    assert torch.equal(part.top, c.top[7:9].flip(0)) and torch.equal(part.alpha, c.alpha[7:9].flip(0))
    counts = np.bincount(c.top.numpy(), minlength=9)
    assert len(counts) == 9 and counts.min() > 0.9 * 40_000 / 9  # uniform over the 9 offsets 0..8
    assert abs(c.flip.float().mean() - 0.5) < 0.01 and not Crops.draw(seeds[:100], 40, 32, False, 0.1).flip.any()
    assert torch.allclose(c.alpha.std(0), torch.full((3,), 0.1), rtol=0.03)
    assert c.alpha.mean(0).abs().max() < 0.003 and np.abs(np.corrcoef(c.alpha.numpy().T) - np.eye(3)).max() < 0.03
    assert not Crops.draw(seeds[:100], 40, 32, True, 0.0).alpha.any()
