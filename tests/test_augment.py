"""Augmentation and regularisation: the tensors they make, their seeds, the cache path, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alexnet.cli import main
from alexnet.data import open_source
from alexnet.data.augment import Augment
from alexnet.data.cache import cache_split
from alexnet.data.fast import CachedLoader, _CropBatches
from alexnet.data.loading import Transformed, sample_seed
from alexnet.data.mixing import Mixing
from alexnet.data.transforms import Preprocess, square_train_transform, train_transform
from alexnet.engine.config import TrainConfig, apply_recipe
from alexnet.engine.scratch import DataSurvey, scratch_settings

SMALL = ["--arch", "alexnet_cifar", "--image-size", "32", "--model-option", "widths=8,16,16,16,16",
         "--model-option", "hidden=32", "--workers", "0", "--device", "cpu", "--deterministic"]
EVERYTHING = ["--crop-scale", "0.3", "--color-jitter", "0.4", "--auto-augment", "trivialaugment",
              "--random-erasing", "0.5", "--mixup", "0.2", "--cutmix", "1.0", "--ema", "0.9",
              "--accumulate", "2", "--nesterov", "--label-smoothing", "0.1", "--model-option", "norm=bn",
              "--model-option", "norm_after=conv1,conv2,conv3,conv4,conv5"]


def _square(seed: int = 0, size: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (3, size, size), dtype=torch.uint8, generator=g)


def _run(transform, x: torch.Tensor, seed: int) -> torch.Tensor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(x)


P = Preprocess(crop=32, resize=40, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.mark.parametrize("aug", [Augment(crop_scale=0.2), Augment(color_jitter=0.5), Augment(auto_augment="trivialaugment"),
                                 Augment(auto_augment="randaugment"), Augment(auto_augment="autoaugment"),
                                 Augment(random_erasing=1.0)])
def test_each_augmentation_makes_a_crop_sized_input_that_depends_on_the_seed_alone(aug):
    t = square_train_transform(P, aug)
    x = _square()
    a, b = _run(t, x, 1), _run(t, x, 1)
    assert a.shape == (3, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert any(not torch.equal(a, _run(t, x, s)) for s in range(2, 6))


def test_scale_crops_zoom_in_and_erasing_zeroes_a_rectangle():
    # A square that is one colour left of the middle and another right of it: a crop that
    # covers 20% of the area or less often shows one colour only, the fixed crop never does.
    x = torch.zeros(3, 40, 40, dtype=torch.uint8)
    x[:, :, 20:] = 255
    plain, zoom = square_train_transform(P), square_train_transform(P, Augment(crop_scale=0.05))
    one_colour = lambda t: sum(bool(_run(t, x, s).std() < 1e-6) for s in range(40))
    assert one_colour(plain) == 0 and one_colour(zoom) > 3
    erased = _run(square_train_transform(P, Augment(random_erasing=1.0)), _square(), 3)
    zero_rows = (erased == 0).all(dim=0).any(dim=1).sum()
    assert zero_rows > 0  # RandomErasing's value 0 is the mean after normalisation


def test_photos_used_whole_shift_by_reflected_padding_and_symbols_do_not():
    # CIFAR at 32 px: every training view is the image (or its mirror) shifted by at most
    # 4 px, the border filled with the image's own reflection; digits keep the affine jitter.
    x = _square(7, 32)
    t = square_train_transform(Preprocess(crop=32, resize=32, mean=(0, 0, 0), std=(1, 1, 1)))
    padded = [torch.nn.functional.pad(v.float()[None], (4, 4, 4, 4), mode="reflect")[0] / 255 for v in (x, x.flip(-1))]
    views = {(m, dy, dx): padded[m][:, dy:dy + 32, dx:dx + 32] for m in (0, 1) for dy in range(9) for dx in range(9)}
    seen = set()
    for seed in range(30):
        out = _run(t, x, seed)
        seen |= {k for k, v in views.items() if torch.allclose(out, v)}
        assert any(torch.allclose(out, v) for v in views.values())
    assert len(seen) > 10 and {m for m, _, _ in seen} == {0, 1}
    digits = square_train_transform(Preprocess(crop=32, resize=32, flip=False, mean=(0, 0, 0), std=(1, 1, 1)))
    assert not any(torch.allclose(_run(digits, x, seed), v) for seed in range(5) for v in views.values())


def test_colour_jitter_changes_colour_and_not_geometry():
    x = _square(4)
    t = square_train_transform(Preprocess(crop=40, resize=40, flip=False), Augment(color_jitter=0.8, crop_scale=1.0))
    # resize == crop: whole images get a small affine jitter; compare against the same seed without colour
    base = square_train_transform(Preprocess(crop=40, resize=40, flip=False))
    a, b = _run(t, x, 7), _run(base, x, 7)
    assert not torch.allclose(a, b)


def test_mixup_blends_images_and_cutmix_pastes_a_box_with_labels_by_area():
    images = torch.arange(8 * 3 * 16 * 16, dtype=torch.float32).view(8, 3, 16, 16)
    target = torch.arange(8)
    mixed, partner, lam = Mixing(mixup=0.4)(images, target, seed=11)
    perm = partner  # targets are 0..7, so the partner targets are the permutation
    assert 0 <= lam <= 1 and torch.allclose(mixed, lam * images + (1 - lam) * images[perm])
    cut, partner, lam = Mixing(cutmix=1.0)(images, target, seed=12)
    from_partner = (cut == images[partner]) & (cut != images)
    area = from_partner[:, 0].float().mean(dim=(1, 2))
    moved = area[partner != target]
    assert torch.allclose(moved, torch.full_like(moved, 1 - lam))  # the label share is the pasted area
    again = Mixing(cutmix=1.0)(images, target, seed=12)
    assert torch.equal(again[0], cut) and again[2] == lam
    both = {Mixing(mixup=0.4, cutmix=1.0)(images, target, seed=s)[0].eq(images).any().item() for s in range(20)}
    assert both == {True, False}  # some batches cut (pixels kept), some blended


def test_cache_path_gives_the_plain_paths_tensors(split_folder, tmp_path):
    aug = Augment(crop_scale=0.3, color_jitter=0.3, auto_augment="trivialaugment", random_erasing=0.5)
    splits = open_source(str(split_folder), 32)
    p = splits.preprocess
    cache = cache_split(splits.train, p.resize, "t-train", tmp_path / "cache")
    plain = Transformed(splits.train, train_transform(p, aug))
    batch = [(i, sample_seed(3, 1, i)) for i in (0, 5, 9, 17)]
    cached, labels, _ = _CropBatches(cache, p, True, augment=aug)[batch]
    expected = torch.stack([plain[item][0] for item in batch])
    assert torch.equal(cached, expected)
    loader = CachedLoader(cache, p, [batch], train=True, device=torch.device("cpu"), workers=0, augment=aug)
    assert torch.equal(next(iter(loader)).images, expected)


def _weights(run: Path, key: str = "model") -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)[key]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", [[], ["--optimizer", "adamw", "--weight-decay", "0.05"]])
def test_every_augmentation_and_the_ema_resume_bitwise(split_folder, tmp_path, optimizer):
    extra = [*SMALL, *EVERYTHING, *optimizer, "--batch-size", "4", "--schedule", "constant", "--seed", "3"]
    if optimizer:
        extra.remove("--nesterov")
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert main(["train", "--data", str(split_folder), "--out", str(whole), "--epochs", "2", *extra]) == 0
    assert main(["train", "--data", str(split_folder), "--out", str(part), "--epochs", "1", *extra]) == 0
    assert main(["train", "--resume", "--out", str(part), "--epochs", "2"]) == 0
    for key in ("raw_model", "ema", "optimizer"):
        a, b = _weights(whole, key), _weights(part, key)
        if key == "optimizer":
            a, b = {k: v for k, v in a["state"].items()}, {k: v for k, v in b["state"].items()}
            assert all(torch.equal(a[k][n], b[k][n]) for k in a for n in a[k] if torch.is_tensor(a[k][n]))
        else:
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_ema_is_evaluated_and_best_holds_the_better_weights(split_folder, tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "2", "--batch-size", "4",
                 "--ema", "0.5"]) == 0
    import csv

    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert all(r["ema_val_top1"] != "" for r in rows)
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    key = "ema" if best["best_from_ema"] else "raw_model"
    expected = best[key] if key == "raw_model" else {k.removeprefix("module."): v for k, v in best["ema"].items()
                                                      if k.startswith("module.")}
    assert all(torch.equal(best["model"][k], expected[k]) for k in best["model"])


def test_accumulated_chunks_give_the_whole_batchs_gradient():
    from alexnet.engine.loop import Knobs, _forward_backward
    from alexnet.models import get_model

    torch.manual_seed(0)
    model = get_model("alexnet_cifar", num_classes=3, widths=(8, 16, 16, 16, 16), hidden=32, dropout=0.0)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 3, (8,))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    grads = []
    for n in (1, 4):
        model.zero_grad()
        loss, correct = _forward_backward(model, x, y, scaler, torch.device("cpu"), Knobs(accumulate=n), 0)
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_bad_augmentation_values_are_one_line_errors(split_folder, tmp_path, capsys):
    for flags in (["--crop-scale", "0"], ["--crop-scale", "1.5"], ["--random-erasing", "2"], ["--ema", "1"],
                  ["--accumulate", "3", "--batch-size", "4"], ["--mixup", "-1"], ["--nesterov", "--optimizer", "adamw"]):
        assert main(["train", "--data", str(split_folder), "--out", str(tmp_path / "x"), *SMALL, *flags]) == 1
        assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("survey, arch, size, batch", [
    (DataSurvey(10, 45_000, 32), "alexnet_cifar", 32, 128),
    (DataSurvey(10, 1_617, 8), "alexnet_cifar", 32, 64),  # digits
    (DataSurvey(5, 3_453, 128), "alexnet", 112, 64),  # flowers_128
    (DataSurvey(2, 2_000, 400), "alexnet", 128, 64),  # cats vs dogs photos
    (DataSurvey(2, 245, 500), "alexnet", 128, 32),
    (DataSurvey(3, 15, 40), "alexnet_cifar", 32, 4),  # a handful of photos: still several steps
    (DataSurvey(1000, 1_281_167, 400), "alexnet", 224, 128),
])
def test_scratch_recipe_follows_the_data(survey, arch, size, batch):
    values, why = scratch_settings(survey)
    assert (values["arch"], values["image_size"], values["batch_size"]) == (arch, size, batch)
    assert "norm=bn" in values["model_option"]
    assert survey.train_images // values["batch_size"] * values["epochs"] >= 100  # never one step per epoch
    assert f"{survey.classes} classes" in why


def test_scratch_is_the_default_unless_a_network_is_chosen():
    assert apply_recipe(TrainConfig(data="x"), {"data"}).recipe == "scratch"
    assert apply_recipe(TrainConfig(data="x", arch="alexnet"), {"data", "arch"}).recipe is None
    assert apply_recipe(TrainConfig(data="x", recipe="none"), {"data", "recipe"}).crop_scale == 1.0


@pytest.mark.slow
def test_evaluate_tta_averages_the_softmax_of_each_image_and_its_mirror(split_folder, tmp_path, train_run):
    from alexnet import checkpoint
    from alexnet.data.images import load_rgb
    from alexnet.data.transforms import eval_transform
    from alexnet.models import model_from_checkpoint
    from alexnet.tasks.evaluate import evaluate_checkpoint

    assert train_run(split_folder, tmp_path / "run") == 0
    path = tmp_path / "run" / "checkpoints" / "best.pt"
    ev = evaluate_checkpoint(path, str(split_folder), torch.device("cpu"), split="val", workers=0, tta=True)
    assert ev.views == "centre crop + mirror" and ev.result.images == 12

    ckpt = checkpoint.load(path)
    model = model_from_checkpoint(ckpt).eval()
    transform = eval_transform(Preprocess.from_dict(ckpt["preprocess"]))
    val = open_source(str(split_folder), 32, 0.1).val
    x = torch.stack([transform(load_rgb(p)) for p in val.paths])
    with torch.no_grad():
        probs = (model(x).softmax(1) + model(x.flip(-1)).softmax(1)) / 2
    loss = torch.nn.functional.nll_loss(probs.log(), torch.tensor(val.targets))
    assert ev.result.loss == pytest.approx(loss.item(), rel=1e-4)
    plain = evaluate_checkpoint(path, str(split_folder), torch.device("cpu"), split="val", workers=0)
    assert plain.result.loss != pytest.approx(ev.result.loss, rel=1e-6)  # the mirror changed the answer
    assert main(["evaluate", "--checkpoint", str(path), "--data", str(split_folder), "--tta", "--ten-crop"]) == 1


def test_a_default_batch_larger_than_the_data_shrinks_and_a_chosen_one_is_kept(split_folder, tmp_path, capsys):
    import json

    base = ["train", "--data", str(split_folder), "--arch", "alexnet_cifar", "--image-size", "32", "--epochs", "1",
            "--workers", "0", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0  # 24 training images, default batch 128
    assert json.loads((tmp_path / "a" / "config.json").read_text())["batch_size"] == 8
    assert "batch 128 is more than the 24 training images: batch 8" in capsys.readouterr().out
    assert main([*base, "--out", str(tmp_path / "b"), "--batch-size", "64"]) == 1
