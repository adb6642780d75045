"""Data sources beyond digits and plain folders: CIFAR pickles, train/ + test/ layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alexnet.cli import main
from alexnet.data import DataError, open_source
from alexnet.errors import DataWarning

from conftest import write_cifar, write_images


@pytest.mark.parametrize("kind,classes,train_images", [("cifar10", 10, 100), ("cifar100", 100, 1000)])
def test_cifar_pickles_are_read_directly(tmp_path, kind, classes, train_images):
    folder = write_cifar(tmp_path / kind, kind, per_batch=train_images // 5)
    splits = open_source(str(folder), 32, val_split=0.2 if kind == "cifar10" else 0.1)
    assert len(splits.class_names) == classes
    assert len(splits.train) + len(splits.val) == train_images and len(splits.test) == train_images // 5
    image, label = splits.test[3]
    assert image.size == (32, 32) and image.mode == "RGB"
    assert np.asarray(image)[..., 0].max() == label  # the red plane was written as the label
    assert splits.default_eval_split == "test"


def test_cifar_at_its_own_size_is_used_whole_and_larger_inputs_crop(tmp_path):
    folder = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=4)
    at_32, at_64 = open_source(str(folder), 32).preprocess, open_source(str(folder), 64).preprocess
    assert (at_32.crop, at_32.resize) == (32, 32)  # no 37 px upsampling, no border cut off at test time
    assert (at_64.crop, at_64.resize) == (64, 73)


def test_prepare_cifar_writes_the_png_layout_that_trains(tmp_path, capsys):
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    assert main(["prepare", "cifar10", str(folder), "--to-folders", str(tmp_path / "png")]) == 0
    assert "100 train, 20 test" in capsys.readouterr().out
    assert len(list((tmp_path / "png" / "train" / "class3").glob("*.png"))) == 10
    splits = open_source(str(tmp_path / "png"), 32, val_split=0.2)  # train/ + test/, no val/
    assert (len(splits.train), len(splits.val), len(splits.test)) == (80, 20, 20)
    assert "train/ split 80%/20%" in splits.description
    with pytest.raises(SystemExit) as e:  # a usage error, from argparse: prepare cifar10 takes SRC
        main(["prepare", "cifar10", "--to-folders", str(tmp_path / "x")])
    assert e.value.code == 2 and "required: SRC" in capsys.readouterr().err
    assert main(["prepare", "cifar10", str(tmp_path), "--to-folders", str(tmp_path / "y")]) == 1
    assert "not a CIFAR pickle folder" in capsys.readouterr().err


def test_small_images_in_a_folder_are_used_whole_like_the_pickles(tmp_path, capsys):
    import torch

    folder = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=20)
    assert main(["prepare", "cifar10", str(folder), "--to-folders", str(tmp_path / "png")]) == 0
    run = tmp_path / "run"  # the scratch recipe on 32 px PNGs: whole images, as from the pickles
    assert main(["train", "--data", str(tmp_path / "png"), "--out", str(run), "--recipe", "scratch", "--epochs", "1",
                 "--workers", "0", "--model-option", "widths=8,16,16,16,16", "--model-option", "hidden=32"]) == 0
    assert "preprocessing 32->32" in capsys.readouterr().out
    p = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["preprocess"]
    assert (p["crop"], p["resize"]) == (32, 32)
    assert main(["train", "--data", str(tmp_path / "png"), "--out", str(tmp_path / "at48"), "--recipe", "scratch",
                 "--image-size", "48", "--epochs", "1", "--workers", "0", "--model-option", "widths=8,16,16,16,16",
                 "--model-option", "hidden=32"]) == 0  # a size of one's own crops from the square made for it
    assert "preprocessing 55->48" in capsys.readouterr().out
    assert main(["train", "--data", str(tmp_path / "png"), "--out", str(tmp_path / "at32"), "--recipe", "scratch",
                 "--image-size", "32", "--epochs", "1", "--workers", "0", "--model-option", "widths=8,16,16,16,16",
                 "--model-option", "hidden=32"]) == 0  # the recipe's own size, given: the recipe's square
    assert "preprocessing 32->32" in capsys.readouterr().out
    assert open_source(str(tmp_path / "png"), 32, resize=40).preprocess.resize == 40
    assert open_source(str(folder), 32, resize=40).preprocess.resize == 40  # a pickle folder takes it too
    for args, message in ((["--data", str(folder), "--image-size", "32", "--resize", "30"], "--resize 30 is smaller"),
                          (["--data", "digits", "--image-size", "32", "--resize", "40"], "drop --resize")):
        assert main(["train", *args, "--out", str(tmp_path / "no"), "--epochs", "1"]) == 1
        assert message in capsys.readouterr().err


def test_train_and_evaluate_on_cifar_pickles(tmp_path, capsys):
    folder = write_cifar(tmp_path / "cifar-10-batches-py", per_batch=8)
    run = tmp_path / "run"
    assert main(["train", "--data", str(folder), "--out", str(run), "--arch", "alexnet_cifar", "--epochs", "1",
                 "--batch-size", "8", "--workers", "0", "--model-option", "widths=8,16,16,16,16",
                 "--model-option", "hidden=32", "--val-split", "0.25"]) == 0
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(folder),
                 "--workers", "0"]) == 0
    assert "[test, 8 images, centre crop]" in capsys.readouterr().out


def test_a_damaged_cifar_batch_is_a_one_line_error(tmp_path):
    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_2").write_bytes(b"\x80\x02garbage")
    with pytest.raises(Exception, match="data_batch_2: not a readable CIFAR batch"):
        open_source(str(folder), 32)


def test_train_without_val_folder_is_split(tmp_path):
    write_images(tmp_path / "d" / "train", 10)
    splits = open_source(str(tmp_path / "d"), 32, val_split=0.2)
    assert (len(splits.train), len(splits.val), splits.test) == (24, 6, None)
    with pytest.raises(DataError, match="--val-split must be between 0 and 1"):
        open_source(str(tmp_path / "d"), 32, val_split=0)


def test_a_cifar_file_without_its_keys_is_a_one_line_error(tmp_path):
    import pickle

    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8)}, f, protocol=2)  # no labels
    with pytest.raises(Exception, match="lacks the key 'labels'"):
        open_source(str(folder), 32)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump([1, 2, 3], f, protocol=2)
    with pytest.raises(Exception, match="data_batch_1: not a CIFAR batch"):
        open_source(str(folder), 32)


def _flat_val(folder, n=6):
    folder.mkdir(parents=True)
    for i in range(1, n + 1):
        (folder / f"ILSVRC2012_val_{i:08d}.JPEG").write_bytes(b"jpeg %d" % i)
    return folder


@pytest.mark.parametrize("form", ["kaggle csv", "caffe val.txt"])
@pytest.mark.parametrize("link", [False, True])
def test_prepare_imagenet_val_files_images_by_wnid(tmp_path, capsys, form, link):
    wnids = ["n01440764", "n01443537", "n01484850"]
    val = _flat_val(tmp_path / "imagenet" / "val")
    for w in wnids:  # train/<wnid>/ beside val/ gives the index order for val.txt
        (tmp_path / "imagenet" / "train" / w).mkdir(parents=True)
    if form == "kaggle csv":
        labels = tmp_path / "LOC_val_solution.csv"
        labels.write_text("ImageId,PredictionString\n" + "".join(
            f"ILSVRC2012_val_{i:08d},{wnids[i % 3]} 1 2 3 4\n" for i in range(1, 7)))
    else:
        labels = tmp_path / "val.txt"
        labels.write_text("".join(f"ILSVRC2012_val_{i:08d}.JPEG {i % 3}\n" for i in range(1, 7)))
    argv = ["prepare", "imagenet-val", "--val-dir", str(val), "--labels", str(labels)] + (["--link"] if link else [])
    assert main(argv) == 0
    assert f"{'linked' if link else 'moved'} 6, already in place 0, missing 0" in capsys.readouterr().out
    assert (val / "n01443537" / "ILSVRC2012_val_00000001.JPEG").read_bytes() == b"jpeg 1"
    assert sorted(p.name for p in val.iterdir() if p.is_dir()) == wnids
    assert main(argv) == 0  # again: nothing to do
    assert "moved 0, already in place 6" in capsys.readouterr().out.replace("linked", "moved")


def test_prepare_imagenet_val_needs_a_class_order_for_indices(tmp_path, capsys):
    val = _flat_val(tmp_path / "val", 2)
    labels = tmp_path / "val.txt"
    labels.write_text("ILSVRC2012_val_00000001.JPEG 1\nILSVRC2012_val_00000002.JPEG 0\n")
    assert main(["prepare", "imagenet-val", "--val-dir", str(val), "--labels", str(labels)]) == 1
    assert "--classes" in capsys.readouterr().err
    classes = tmp_path / "LOC_synset_mapping.txt"
    classes.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    assert main(["prepare", "imagenet-val", "--val-dir", str(val), "--labels", str(labels),
                 "--classes", str(classes)]) == 0
    assert (val / "n01443537" / "ILSVRC2012_val_00000001.JPEG").exists()
    labels.write_text("ILSVRC2012_val_00000003.JPEG 7\n")
    assert main(["prepare", "imagenet-val", "--val-dir", str(val), "--labels", str(labels),
                 "--classes", str(classes)]) == 1
    assert "0 <= INDEX < 2" in capsys.readouterr().err


def _modes(tmp_path):
    """One small image per awkward kind, all of a mid-grey-ish content."""
    from PIL import Image

    grey = np.full((12, 12), 128, np.uint8)
    rgb = np.dstack([grey, grey // 2, grey // 4])
    rgba = np.dstack([rgb, np.full((12, 12), 0, np.uint8)])  # fully transparent
    made = {
        "grey.png": Image.fromarray(grey, "L"),
        "palette.gif": Image.fromarray(rgb).convert("P"),
        "rgba.png": Image.fromarray(rgba, "RGBA"),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "sixteen bit.png": Image.fromarray(grey.astype(np.uint16) * 257),  # mode I;16
        "bitmap.bmp": Image.fromarray(rgb),
        "webp image.webp": Image.fromarray(rgb),
        "scan.tiff": Image.fromarray(rgb),
        "blüte 花.png": Image.fromarray(rgb),  # non-ASCII name
    }
    for name, image in made.items():
        image.save(tmp_path / name)
    return made


def test_every_image_mode_becomes_meaningful_rgb(tmp_path):
    from alexnet.data.images import load_rgb

    _modes(tmp_path)
    for path in tmp_path.iterdir():
        image = load_rgb(path)
        assert image.mode == "RGB" and image.size == (12, 12), path.name
    assert np.asarray(load_rgb(tmp_path / "sixteen bit.png")).max() == 128  # scaled, not clipped to white
    assert np.asarray(load_rgb(tmp_path / "rgba.png")).min() == 255  # transparent -> white background
    assert np.asarray(load_rgb(tmp_path / "grey.png"))[0, 0].tolist() == [128, 128, 128]
    cmyk = np.asarray(load_rgb(tmp_path / "cmyk.jpg")).astype(int)[6, 6]
    assert abs(cmyk[0] - 128) < 12 and abs(cmyk[2] - 32) < 12


def test_folders_with_any_mode_and_name_train(tmp_path, capsys):
    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
        _modes(tmp_path / "d" / cls)
    splits = open_source(str(tmp_path / "d"), 32, val_split=0.25)
    assert len(splits.train) + len(splits.val) == 18
    assert all(splits.train[i][0].mode == "RGB" for i in range(len(splits.train)))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d"), "--out", str(run), "--arch", "alexnet_cifar", "--epochs", "1",
                 "--batch-size", "4", "--workers", "0", "--model-option", "widths=8,16,16,16,16",
                 "--model-option", "hidden=32", "--val-split", "0.25"]) == 0
    assert main(["predict", "--checkpoint", str(run / "checkpoints" / "last.pt"),
                 str(tmp_path / "d" / "a" / "sixteen bit.png"), str(tmp_path / "d" / "a" / "blüte 花.png")]) == 0


def test_cifar_labels_beyond_the_meta_files_names_are_refused(tmp_path):
    import pickle

    folder = write_cifar(tmp_path / "cifar-10-batches-py")
    with open(folder / "batches.meta", "wb") as f:  # three names for labels 0..9
        pickle.dump({b"label_names": [b"a", b"b", b"c"]}, f, protocol=2)
    with pytest.raises(DataError, match="labels run from 0 to 9, but the meta file names 3 classes"):
        open_source(str(folder), 32)
    folder = write_cifar(tmp_path / "other" / "cifar-10-batches-py")
    for labels, message in ((["0"] * 20, "not one whole number per image"), ([0] * 21, r"\(20 images, labels of shape \(21,\)"),
                            ([1.7] * 20, "type float64")):
        with open(folder / "data_batch_2", "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        with open(folder / "data_batch_2", "wb") as f:
            pickle.dump({**batch, b"labels": labels}, f, protocol=2)
        with pytest.raises(DataError, match=message):
            open_source(str(folder), 32)


def test_the_val_images_a_run_held_out_stay_its_val_images_when_files_change(tmp_path, capsys, train_run):
    import json

    import torch

    from alexnet.data.datasets import file_id

    data, run = tmp_path / "flat", tmp_path / "run"
    write_images(data, 20, seed=3)  # one folder: val is split off by --val-split
    assert train_run(data, run, "--val-split", "0.25", "--schedule", "constant") == 0
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    held = set(ckpt["data"]["held_out"])
    before = open_source(str(data), 32, 0.25)
    assert {file_id(data, p) for p in before.val.paths} == held and len(held) == 15

    # The user removes a few files (some trained on, one held out) and adds new ones.
    for p in [*before.train.paths[:5], before.val.paths[0]]:
        Path(p).unlink()
    write_images(tmp_path / "more", 3, seed=9)
    for f in (tmp_path / "more").rglob("*.png"):
        f.rename(data / f.parent.name / f"new {f.name}")
    drawn_again = {file_id(data, p) for p in open_source(str(data), 32, 0.25).val.paths}
    assert drawn_again - held  # drawn afresh, val would now hold images the model trained on

    with pytest.warns(DataWarning, match="1 of the 15 images held out in training are gone"):
        reopened = open_source(str(data), 32, 0.25, held_out=sorted(held))
    assert {file_id(data, p) for p in reopened.val.paths} == held - {file_id(data, before.val.paths[0])}
    assert len(reopened.train) == 45 - 5 + 9  # new files count as training images
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(data), "--split", "val",
                 "--workers", "0", "--json", str(report)]) == 0
    assert json.loads(report.read_text())["images"] == 14
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2"]) == 0  # a resumed run keeps them too
    assert "the 14 images held out in training (1 of them gone since)" in capsys.readouterr().out
    assert set(torch.load(run / "checkpoints" / "last.pt", weights_only=False)["data"]["held_out"]) == held


def test_small_classes_get_a_val_split_that_says_what_would_work(tmp_path):
    from alexnet.data.datasets import split_off_val

    pairs = [c for c in range(300) for _ in range(2)]  # 300 classes of 2 images
    with pytest.raises(DataError, match=r"2 in the smallest class\); --val-split 0.5 holds out one of each"):
        split_off_val(pairs, 0.1, tmp_path)
    train, val = split_off_val(pairs, 0.5, tmp_path)
    assert len(train) == len(val) == 300
    names = ["big", "small"]
    with pytest.warns(DataWarning, match=r"1 class\(es\) with no val image \(small: too few images\)"):
        split_off_val([0] * 20 + [1] * 3, 0.1, tmp_path, names)


def test_folders_beside_train_are_never_dropped_silently(tmp_path):
    write_images(tmp_path / "vehicles", 4)  # classes red, green, blue ...
    write_images(tmp_path / "loose", 4)
    (tmp_path / "vehicles" / "train").mkdir()  # ... and a class of trains, its images loose
    for f in (tmp_path / "loose" / "red").iterdir():
        f.rename(tmp_path / "vehicles" / "train" / f.name)
    with pytest.raises(DataError, match=r"train/ is read as the training split, but it holds images, not class "
                                        r"folders, and blue/, green/, red/ beside it look like classes"):
        open_source(str(tmp_path / "vehicles"), 32)
    write_images(tmp_path / "split" / "train", 4)
    write_images(tmp_path / "split" / "extra", 2)
    with pytest.warns(DataWarning, match=r"extra/ beside train/ is not read"):
        assert len(open_source(str(tmp_path / "split"), 32, val_split=0.25).train) == 9


def test_held_out_files_follow_the_weights_and_never_block_another_folder(tmp_path, capsys, train_run):
    import torch

    data, run = tmp_path / "flat", tmp_path / "run"
    write_images(data, 8, seed=3)
    assert train_run(data, run, "--val-split", "0.25") == 0
    held = torch.load(run / "checkpoints" / "best.pt", weights_only=False)["data"]["held_out"]
    write_images(tmp_path / "more", 4, seed=9)  # photos added, then a new run from the weights
    for f in (tmp_path / "more").rglob("*.png"):
        f.rename(data / f.parent.name / f"new {f.name}")
    assert main(["train", "--weights", str(run / "checkpoints" / "best.pt"), "--data", str(data), "--out",
                 str(tmp_path / "next"), "--epochs", "1", "--batch-size", "8", "--workers", "0", "--val-split", "0.25"]) == 0
    assert torch.load(tmp_path / "next" / "checkpoints" / "best.pt", weights_only=False)["data"]["held_out"] == held

    other = tmp_path / "other"  # another folder with the same classes, in a train/ + test/ layout
    write_images(other / "train", 4, seed=5)
    write_images(other / "test", 2, seed=6)
    for f in (other / "train").rglob("*.png"):  # files are known by their path in the folder: other names here
        f.rename(f.with_name(f"o{f.name}"))
    for split in ("test", "all"):
        assert main(["evaluate", "--checkpoint", str(run / "checkpoints" / "best.pt"), "--data", str(other),
                     "--split", split, "--workers", "0"]) == 0
    with pytest.warns(DataWarning, match="none of the 6 images held out when the model trained is here"):
        assert len(open_source(str(other), 32, 0.25, held_out=held).val) == 3


def test_resize_with_weights_keeps_their_statistics_and_refuses_what_cannot_work(tmp_path, capsys, train_run):
    import torch

    data = tmp_path / "flat"
    write_images(data, 8, seed=3)
    assert train_run(data, tmp_path / "run", "--val-split", "0.25") == 0
    weights = str(tmp_path / "run" / "checkpoints" / "best.pt")
    assert train_run(data, tmp_path / "ft", "--weights", weights, "--resize", "48", "--val-split", "0.25") == 0
    mine, theirs = (torch.load(p, weights_only=False)["preprocess"] for p in (tmp_path / "ft" / "checkpoints" / "best.pt", weights))
    assert mine["resize"] == 48 and mine["eigvec"] == theirs["eigvec"] and mine["stats_from"] == theirs["stats_from"]
    assert train_run(data, tmp_path / "img", "--normalize", "image", "--val-split", "0.25") == 0
    assert train_run(data, tmp_path / "no", "--weights", str(tmp_path / "img" / "checkpoints" / "best.pt"),
                     "--resize", "48", "--val-split", "0.25") == 1
    assert "subtract a 37 px mean image" in capsys.readouterr().err
    assert train_run(data, tmp_path / "no", "--resize", "100000") == 1
    assert "over --max-image-pixels" in capsys.readouterr().err
