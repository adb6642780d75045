"""The paper's recipe: optimizer, schedule, PCA lighting, ten-crop testing."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from alexnet.cli import build_parser
from alexnet.data.augment import Lighting, compute_stats, pca_of_covariance
from alexnet.data.transforms import Preprocess, ten_crop_transform
from alexnet.engine.config import RECIPES, TrainConfig, apply_recipe, from_namespace
from alexnet.engine.loop import evaluate
from alexnet.engine.optim import PaperSGD, Schedule, build_optimizer, param_groups
from alexnet.models import get_model


def _train_config(*argv: str) -> TrainConfig:
    cfg, explicit = from_namespace(TrainConfig, build_parser().parse_args(["train", *argv]))
    return apply_recipe(cfg, explicit)


def test_paper_recipe_fills_what_the_user_did_not_set():
    cfg = _train_config("--data", "d", "--recipe", "paper", "--epochs", "3")
    assert cfg.epochs == 3  # given on the command line: kept
    for key, value in RECIPES["paper"].items():
        if key != "epochs":
            assert getattr(cfg, key) == value, key
    assert (cfg.arch, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batch_size) == ("alexnet2012", 0.01, 0.9, 5e-4, 128)
    assert cfg.schedule == "plateau" and cfg.paper_momentum and cfg.lighting == 0.1
    assert _train_config("--data", "d").arch == "alexnet" and not _train_config("--data", "d").paper_momentum


def test_paper_sgd_follows_the_papers_update():
    torch.manual_seed(0)
    w0 = torch.randn(5)
    grads = [torch.randn(5) for _ in range(4)]
    lrs = [0.01, 0.01, 0.001, 0.001]  # a drop after two steps
    w = nn.Parameter(w0.clone())
    opt = PaperSGD([w], lr=0.01, momentum=0.9, weight_decay=5e-4)
    v, ref = torch.zeros(5), w0.clone()
    for g, lr in zip(grads, lrs):
        opt.param_groups[0]["lr"] = lr
        w.grad = g.clone()
        opt.step()
        v = 0.9 * v - 0.0005 * lr * ref - lr * g  # section 5 of the paper
        ref = ref + v
    assert torch.allclose(w.detach(), ref, atol=1e-7)

    # Same as torch.optim.SGD while lr is constant; different after the drop.
    def run(make, steps):
        p = nn.Parameter(w0.clone())
        o = make([p])
        for g, lr in zip(grads[:steps], lrs[:steps]):
            o.param_groups[0]["lr"] = lr
            p.grad = g.clone()
            o.step()
        return p.detach()

    paper = lambda ps: PaperSGD(ps, lr=0.01, momentum=0.9, weight_decay=5e-4)  # noqa: E731
    torch_sgd = lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=5e-4)  # noqa: E731
    assert torch.allclose(run(paper, 2), run(torch_sgd, 2), atol=1e-7)
    assert not torch.allclose(run(paper, 4), run(torch_sgd, 4), atol=1e-7)


def test_no_weight_decay_on_biases_and_norms():
    model = get_model("alexnet_bn", num_classes=10)
    decay, exempt = param_groups(model, 5e-4, decay_bias_norm=False)
    assert exempt["weight_decay"] == 0 and decay["weight_decay"] == 5e-4
    exempt_ids = {id(p) for p in exempt["params"]}
    assert id(model.conv1.bias) in exempt_ids and id(model.norm1.weight) in exempt_ids
    assert id(model.conv1.weight) not in exempt_ids and id(model.fc6.weight) not in exempt_ids
    assert len(decay["params"]) + len(exempt["params"]) == len(list(model.parameters()))
    opt = build_optimizer(model, 0.01, 0.9, 5e-4, device=torch.device("cpu"))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["fused"]  # fused on the CPU too


def test_plateau_schedule_divides_by_ten_at_most_three_times():
    s = Schedule("plateau", 0.01, total_steps=900, steps_per_epoch=10, patience=2)
    lrs = []
    for error in [0.9, 0.8] + [0.8] * 20:  # improves twice, then never again
        s.epoch_end(error)
        lrs.append(s.lr(0))
    assert lrs[:3] == [0.01, 0.01, 0.01]
    assert sorted(set(lrs), reverse=True) == pytest.approx([0.01, 0.001, 0.0001, 0.00001])
    assert s.reductions == 3
    restored = Schedule("plateau", 0.01, total_steps=900, steps_per_epoch=10)
    restored.load_state_dict(s.state_dict())
    assert restored.lr(5) == s.lr(5)


def test_other_schedules_and_warmup():
    cos = Schedule("cosine", 0.1, total_steps=100, steps_per_epoch=10, warmup_steps=10)
    assert cos.lr(0) == pytest.approx(0.01) and cos.lr(9) == pytest.approx(0.1)  # linear warmup
    assert cos.lr(10) == pytest.approx(0.1) and cos.lr(100) == pytest.approx(0.0, abs=1e-12)
    assert cos.lr(55) == pytest.approx(0.05)
    step = Schedule("step", 0.1, total_steps=100, steps_per_epoch=10, step_epochs=3, gamma=0.5)
    assert [step.lr(e * 10) for e in (0, 2, 3, 6)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    one = Schedule("onecycle", 1.0, total_steps=100, steps_per_epoch=10)
    assert one.lr(0) == pytest.approx(0.04) and one.lr(30) == pytest.approx(1.0) and one.lr(100) == pytest.approx(0.0)
    assert max(one.lr(s) for s in range(100)) == pytest.approx(1.0)
    assert Schedule("constant", 0.1, 100, 10).lr(77) == 0.1


def test_pca_of_a_known_covariance():
    q, _ = torch.linalg.qr(torch.tensor([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0], [2.0, 0.1, -0.7]]))
    eigval = torch.tensor([0.3, 0.02, 0.004])
    cov = q @ torch.diag(eigval) @ q.T
    values, vectors = pca_of_covariance(cov)
    assert torch.allclose(values, eigval, atol=1e-6)
    for i in range(3):  # columns, up to sign
        assert torch.allclose(vectors[:, i].abs(), q[:, i].abs(), atol=1e-5)
        assert torch.allclose(cov @ vectors[:, i], eigval[i] * vectors[:, i], atol=1e-6)


def test_stats_recover_a_known_pixel_distribution():
    torch.manual_seed(0)
    mix = torch.tensor([[0.2, 0.0, 0.0], [0.1, 0.1, 0.0], [0.05, 0.05, 0.05]])
    mean = torch.tensor([0.5, 0.4, 0.3])
    images = [(mean[:, None, None] + torch.einsum("ij,jhw->ihw", mix, torch.randn(3, 16, 16)), 0) for _ in range(200)]
    stats = compute_stats(images)
    cov = mix @ mix.T
    assert torch.allclose(torch.tensor(stats.mean), mean, atol=0.01)
    assert torch.allclose(torch.tensor(stats.std), cov.diagonal().sqrt(), atol=0.01)
    assert torch.allclose(torch.tensor(stats.eigval), torch.linalg.eigvalsh(cov).flip(0), atol=2e-3)
    assert stats.images == 200


def test_lighting_adds_one_pca_shift_to_every_pixel():
    eigval = (0.2175, 0.0188, 0.0045)
    eigvec = torch.linalg.qr(torch.randn(3, 3))[0]
    image = torch.rand(3, 8, 8)
    torch.manual_seed(3)
    out = Lighting(0.1, eigval, eigvec)(image)
    torch.manual_seed(3)
    alpha = torch.randn(3) * 0.1
    expected = eigvec @ (alpha * torch.tensor(eigval))  # sum_i alpha_i lambda_i p_i, p_i the columns
    shift = out - image
    assert torch.allclose(shift, expected[:, None, None].expand_as(shift), atol=1e-6)
    assert torch.equal(Lighting(0.0, eigval, eigvec)(image), image)
    shifts = torch.stack([(Lighting(0.1, eigval, eigvec)(image) - image)[:, 0, 0] for _ in range(4000)])
    assert shifts.mean(0).abs().max() < 0.002  # zero-mean noise
    # its covariance is 0.01 * sum_i lambda_i^2 p_i p_i^T
    expected_cov = 0.01 * eigvec @ torch.diag(torch.tensor(eigval) ** 2) @ eigvec.T
    assert torch.allclose(torch.cov(shifts.T), expected_cov, atol=5e-5)


def test_ten_crop_views_and_averaging():
    p = Preprocess(crop=8, resize=12, mean=(0.0,) * 3, std=(1.0,) * 3)
    image = torch.rand(3, 12, 12)
    views = ten_crop_transform(p)(image)
    assert views.shape == (10, 3, 8, 8)
    assert torch.equal(views[0], image[:, :8, :8]) and torch.equal(views[4], image[:, 2:10, 2:10])
    # the mirrors: the same five crops of the flipped image (its top-left is the top-right, mirrored)
    assert torch.equal(views[5:], views[[1, 0, 3, 2, 4]].flip(-1))

    class ByMean(nn.Module):  # logits that differ from view to view
        def forward(self, x):
            m = x.mean(dim=(1, 2, 3))
            return torch.stack([m * 10, -m * 10, m * m], dim=1)

    batch = torch.stack([ten_crop_transform(p)(torch.rand(3, 12, 12)) for _ in range(4)])
    target = torch.tensor([0, 1, 2, 0])
    result = evaluate(ByMean(), [(batch, target)], torch.device("cpu"))
    probs = ByMean()(batch.flatten(0, 1)).softmax(1).view(4, 10, 3).mean(1)
    expected_loss = -probs[torch.arange(4), target].log().mean().item()
    assert result.loss == pytest.approx(expected_loss, rel=1e-6)
    assert result.top1 == pytest.approx((probs.argmax(1) == target).float().mean().item())
    assert math.isfinite(result.loss) and result.images == 4


def test_mean_image_normalisation_follows_the_paper():
    from alexnet.data.augment import DataStats
    from alexnet.data.transforms import eval_transform, stats_transform, train_transform

    base = Preprocess(crop=8, resize=10, normalize="image")
    images = [(torch.rand(3, 10, 14), 0) for _ in range(6)]  # not square: cut to the central 10x10
    squares = [stats_transform(base)(img) for img, _ in images]
    assert squares[0].shape == (3, 10, 10) and torch.equal(squares[0], images[0][0][:, :, 2:12])
    stats = compute_stats([(s, 0) for s in squares])
    assert torch.allclose(stats.mean_image, torch.stack(squares).mean(0), atol=1e-6)
    p = base.with_stats(stats)
    assert p.mean_image.shape == (3, 10, 10)
    out = eval_transform(p)(images[0][0])
    std = torch.tensor(stats.std)[:, None, None]
    expected = ((squares[0] - stats.mean_image) / std)[:, 1:9, 1:9]  # subtract, then the centre crop
    assert torch.allclose(out, expected, atol=1e-5)
    assert train_transform(p)(images[0][0]).shape == (3, 8, 8)
    assert ten_crop_transform(p)(images[0][0]).shape == (10, 3, 8, 8)
    with pytest.raises(ValueError, match="mean image"):
        base.with_stats(DataStats(stats.mean, stats.std, stats.eigval, stats.eigvec, 6, None))


def test_paper_normalisation_is_the_mean_image_off_0_255_pixels():
    from alexnet.data.transforms import eval_transform, stats_transform

    base = Preprocess(crop=8, resize=10, normalize="paper")
    squares = [stats_transform(base)(torch.rand(3, 10, 10)) for _ in range(5)]
    stats = compute_stats([(s, 0) for s in squares])
    p = base.with_stats(stats)
    out = eval_transform(p)(squares[0])
    assert torch.allclose(out, (255 * (squares[0] - stats.mean_image))[:, 1:9, 1:9], atol=1e-3)
    assert _train_config("--data", "d", "--recipe", "paper").normalize == "paper"


def test_fast_recipe_trains_a_batchnorm_net_with_amp_settled_for_the_device(tmp_path, monkeypatch):
    import json

    from alexnet.cli import main
    from conftest import write_images

    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    cfg = _train_config("--data", "d", "--recipe", "fast", "--lr", "0.3")
    assert cfg.lr == 0.3 and (cfg.arch, cfg.image_size, cfg.val_split, cfg.cache, cfg.amp, cfg.schedule) == \
        ("alexnet_cifar", 64, 0.2, True, "auto", "onecycle")
    write_images(tmp_path / "d", 6, size=60, fmt="jpg")
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "d"), "--recipe", "fast", "--epochs", "1", "--batch-size", "4",
                 "--image-size", "32", "--workers", "0", "--stats-images", "8", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["amp"] == "off"  # bf16 on CUDA only
    weights = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert sum(k.endswith("running_mean") for k in weights) == 5  # BatchNorm after each of the five convs
