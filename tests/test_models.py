"""The model zoo, driven by the registry; golden numbers asserted exactly."""

from __future__ import annotations

import pickle

import pytest
import torch
import torchvision
from torch import nn

import alexnet
from alexnet.checkpoint import CheckpointError
from alexnet.models import TAPS, WeightsError, get_model, list_models, model_info
from alexnet.models.weights import to_torchvision


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_get_model_keeps_each_variants_own_number_of_classes():
    assert get_model("alexnet_cifar").config.num_classes == 10
    assert get_model("alexnet").config.num_classes == 1000
    assert get_model("alexnet_cifar", num_classes=3).config.num_classes == 3


def test_registry_lists_every_variant():
    assert list_models() == ["alexnet", "alexnet2012", "alexnet_bn", "alexnet_cifar"]
    assert alexnet.list_models() == list_models()
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        get_model("vgg")


def test_duplicate_registration_is_refused():
    from alexnet.models import register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model("alexnet", image_size=224, summary="")(lambda **kw: None)


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_at_supported_sizes(name):
    model = get_model(name, num_classes=7)
    sizes = {model.min_input_size, model_info(name).image_size}
    for size in sorted(sizes):
        x = torch.randn(2, 3, size, size)
        out = model(x)
        assert out.shape == (2, 7)
        assert torch.isfinite(out).all()
    model.zero_grad()
    model(torch.randn(2, 3, model_info(name).image_size, model_info(name).image_size)).sum().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []


@pytest.mark.parametrize("name", list_models())
def test_below_minimum_size_is_a_clear_error(name):
    model = get_model(name)
    s = model.min_input_size - 1
    with pytest.raises(ValueError, match=f"smaller than this variant's minimum {s + 1}x{s + 1}"):
        model(torch.randn(1, 3, s, s))


@pytest.mark.parametrize("name", list_models())
def test_common_interface(name):
    model = get_model(name, num_classes=5).eval()
    size = model_info(name).image_size
    x = torch.randn(2, 3, size, size)
    feats = model.forward_features(x)
    assert feats.shape[:2] == (2, model.config.widths[-1])
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, model.config.hidden)
    assert torch.equal(model.forward_head(feats), model(x))
    acts = model.activations(x, ["conv1", "pool5", "fc7", "fc8"])
    assert torch.allclose(acts["fc7"], pre) and torch.allclose(acts["fc8"], model(x))
    assert torch.equal(acts["pool5"], feats)
    assert (acts["conv1"] >= 0).all()  # taken after the ReLU
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.config.num_classes == 3
    assert model.get_classifier() is model.fc8
    assert [n for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8") if not hasattr(model, n)] == []


def test_activations_reject_unknown_layers_and_cover_every_tap():
    model = get_model("alexnet2012").eval()
    acts = model.activations(torch.randn(1, 3, 224, 224), TAPS)
    assert acts["conv1"].shape == (1, 96, 55, 55)
    assert acts["pool5"].flatten(1).shape == (1, 9216)
    assert acts["fc6"].shape == acts["fc7"].shape == (1, 4096)
    with pytest.raises(ValueError, match="unknown layer"):
        model.activations(torch.randn(1, 3, 224, 224), ["fc9"])


@pytest.mark.slow
def test_parameter_counts_are_exact():
    assert _params(get_model("alexnet2012")) == 60_965_224
    assert _params(get_model("alexnet")) == 61_100_840
    bn = get_model("alexnet_bn")
    assert _params(bn) == 62_379_048
    assert sum(b.numel() for n, b in bn.named_buffers() if "running" in n) == 704
    assert _params(get_model("alexnet_bn", bn_all=True)) == 62_381_096
    assert _params(get_model("alexnet")) == _params(torchvision.models.alexnet())


@pytest.mark.parametrize("size", [224, 227])
def test_paper_conv1_gives_55(size):
    model = get_model("alexnet2012").eval()
    assert model.activations(torch.randn(1, 3, size, size), ["conv1"])["conv1"].shape[-2:] == (55, 55)


def test_options_override_the_variant():
    model = get_model("alexnet", dropout=0.3)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.3, 0.3]
    assert not any(isinstance(m, nn.Dropout) for m in get_model("alexnet", dropout=0.0).modules())
    paper = get_model("alexnet2012")
    assert paper.drop5.__class__ is nn.Identity and isinstance(paper.drop6, nn.Dropout) and isinstance(paper.drop7, nn.Dropout)
    assert isinstance(get_model("alexnet_cifar", norm="bn", norm_after=("conv1",)).norm1, nn.BatchNorm2d)
    with pytest.raises(ValueError, match="unknown model option"):
        get_model("alexnet", colour="red")
    with pytest.raises(ValueError, match="dropout must be"):
        get_model("alexnet", dropout=1.5)


def test_paper_initialisation():
    torch.manual_seed(0)
    model = get_model("alexnet2012")
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        w = getattr(model, name).weight
        assert abs(w.std().item() - 0.01) < 0.001 and abs(w.mean().item()) < 0.001, name
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(getattr(model, name).bias == expected_bias), name


def test_lrn_matches_the_formula():
    """b_c = a_c / (k + alpha/n * sum_{|c'-c| <= n/2} a_c'^2)^beta, n=5, k=2, alpha=1e-4, beta=0.75."""
    lrn = get_model("alexnet2012").norm1
    a = torch.rand(2, 96, 5, 5) * 40  # ReLU outputs; large enough for the normalisation to matter
    n, k, alpha, beta = 5, 2.0, 1e-4, 0.75
    expected = torch.empty_like(a)
    for c in range(96):
        lo, hi = max(0, c - n // 2), min(95, c + n // 2)
        expected[:, c] = a[:, c] / (k + alpha / n * (a[:, lo : hi + 1] ** 2).sum(1)) ** beta
    assert torch.allclose(lrn(a), expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(lrn(a), a / k**beta)  # the neighbourhood sum is not negligible here


@pytest.mark.parametrize(
    "layer,in_half,out_changed",
    [("conv2", 48, "tower"), ("conv3", 128, "both"), ("conv4", 192, "tower"), ("conv5", 192, "tower")],
)
def test_two_tower_connectivity(layer, in_half, out_changed):
    """Perturbing one tower's input maps reaches only that tower's outputs, except at conv3."""
    conv = getattr(get_model("alexnet2012"), layer)
    x = torch.randn(1, conv.in_channels, 13, 13)
    y = x.clone()
    y[:, :in_half] += torch.randn_like(y[:, :in_half])  # tower 0's input maps only
    diff = (conv(x) - conv(y)).abs().amax(dim=(0, 2, 3))
    half = conv.out_channels // 2
    assert (diff[:half] > 0).all()
    if out_changed == "tower":
        assert torch.all(diff[half:] == 0)
    else:
        assert (diff[half:] > 0).all()


def test_torchvision_weights_load_and_match(tmp_path):
    tv = torchvision.models.alexnet().eval()
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(tv.state_dict(), path)
    ours = get_model("alexnet", weights=path).eval()
    x = torch.randn(4, 3, 224, 224)
    with torch.no_grad():
        assert (ours(x) - tv(x)).abs().max().item() < 1e-5
        assert (ours(x[:, :, :100, :120]) - tv(x[:, :, :100, :120])).abs().max().item() < 1e-5
    # and back: our weights in torchvision's names
    tv2 = torchvision.models.alexnet()
    tv2.load_state_dict(to_torchvision(ours.state_dict()))
    assert torch.equal(tv2.features[0].weight, ours.conv1.weight)


def test_weights_that_do_not_fit_name_the_mismatch(tmp_path):
    path = tmp_path / "tv.pth"
    torch.save(torchvision.models.alexnet(num_classes=10).state_dict(), path)
    with pytest.raises(WeightsError, match=r"fc8.weight \(10, 4096\) vs model \(1000, 4096\)"):
        get_model("alexnet", weights=path)
    with pytest.raises(WeightsError, match="missing"):
        get_model("alexnet_bn", weights={k: v for k, v in get_model("alexnet_bn").state_dict().items() if "norm" not in k})
    wrapped = {"module." + k: v for k, v in get_model("alexnet_cifar").state_dict().items()}
    get_model("alexnet_cifar", weights=wrapped)  # DDP prefixes are stripped


class _Evil:
    def __reduce__(self):
        return (print, ("this code ran on load",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"conv1.weight": _Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="refused"):
        get_model("alexnet", weights=path)
    assert "this code ran" not in capsys.readouterr().out


def test_truncated_file_is_a_one_line_error(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(get_model("alexnet_cifar").state_dict(), path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        get_model("alexnet_cifar", weights=path)
    assert "\n" not in str(e.value)
