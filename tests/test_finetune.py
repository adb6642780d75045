"""Fine-tuning: pretrained weights in, a new fc8, frozen layers and layer-wise rounds."""

from __future__ import annotations

import pytest
import torch
import torchvision

from alexnet.cli import main
from alexnet.engine.config import ConfigError
from alexnet.engine.finetune import LAYERS, Plan, parse_layers, set_trainable
from alexnet.models import get_model
from alexnet.models.weights import from_torchvision

CONV = ("conv1", "conv2", "conv3", "conv4", "conv5")


@pytest.fixture(scope="module")
def tv_weights(tmp_path_factory):
    """A state dict in torchvision's own format and file name, made here (no download)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hub") / "alexnet-owt-7be5be79.pth"
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), path)
    return path


def _finetune(weights, data, out, *extra) -> int:
    return main(["finetune", "--weights", str(weights), "--data", str(data), "--out", str(out), "--image-size", "64",
                 "--batch-size", "8", "--workers", "0", "--deterministic", *extra])


def _state(run):
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)


def _changed(before: dict, after: dict) -> set[str]:
    return {k.split(".")[0] for k in after
            if k in before and before[k].shape == after[k].shape and not torch.equal(before[k], after[k])}


@pytest.mark.slow
def test_torchvision_state_dict_finetunes_with_a_new_head(tv_weights, split_folder, tmp_path, capsys):
    assert _finetune(tv_weights, split_folder, tmp_path / "run", "--epochs", "1") == 0
    out = capsys.readouterr().out
    assert "fc8 replaced for 3 classes" in out
    ckpt = _state(tmp_path / "run")
    assert ckpt["arch"] == "alexnet" and ckpt["model"]["fc8.weight"].shape == (3, 4096)
    assert ckpt["preprocess"]["mean"] == [0.485, 0.456, 0.406]  # the weights' normalisation, not the data's
    # lr 0.001 for fc8, 0.1 x that for the pretrained layers (the finetune defaults)
    lrs = {g.get("lr_scale", 1.0): g["lr"] for g in ckpt["optimizer"]["param_groups"]}
    assert lrs[1.0] == pytest.approx(10 * lrs[0.1])
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "best.pt"),
                 "--data", str(split_folder)]) == 0


@pytest.mark.slow
def test_freeze_keeps_the_named_layers_fixed(tv_weights, split_folder, tmp_path):
    before = from_torchvision(torch.load(tv_weights, weights_only=True))
    assert _finetune(tv_weights, split_folder, tmp_path / "run", "--epochs", "1", "--freeze", "features") == 0
    assert _changed(before, _state(tmp_path / "run")["model"]) == {"fc6", "fc7"}  # fc8 is new: not in before


@pytest.mark.slow
def test_unfreeze_schedule_trains_exactly_the_layers_of_each_round(tv_weights, split_folder, tmp_path, capsys):
    before = from_torchvision(torch.load(tv_weights, weights_only=True))
    run = tmp_path / "run"
    args = ["--unfreeze-schedule", "fc8:1,fc7:1,conv4-conv5:1", "--schedule", "constant"]
    assert _finetune(tv_weights, split_folder, run, "--epochs", "1", *args) == 0
    round1 = _state(run)["model"]
    assert _changed(before, round1) == set()  # only the new fc8 trained
    assert main(["finetune", "--resume", "--out", str(run), "--epochs", "2"]) == 0
    round2 = _state(run)["model"]
    assert _changed(before, round2) == {"fc7"} and not torch.equal(round1["fc8.weight"], round2["fc8.weight"])
    assert main(["finetune", "--resume", "--out", str(run), "--epochs", "3"]) == 0
    assert _changed(before, _state(run)["model"]) == {"fc7", "conv4", "conv5"}
    out = capsys.readouterr().out
    assert "epoch 1: training fc8" in out and "epoch 2: training fc7, fc8" in out
    assert "epoch 3: training conv4, conv5, fc7, fc8" in out


def test_unfreeze_schedule_sets_the_epochs_and_requires_grad():
    plan = Plan.from_config("conv1", "fc8:2,fc7+fc6:1,features:1")
    assert plan.scheduled_epochs == 4
    assert plan.trainable(1) == plan.trainable(2) == {"fc8"}
    assert plan.trainable(3) == {"fc6", "fc7", "fc8"}
    assert plan.trainable(4) == plan.trainable(9) == set(LAYERS) - {"conv1"}
    model = get_model("alexnet_bn", num_classes=3, bn_all=True)
    set_trainable(model, plan.trainable(3))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{l}.{w}" for l in ("fc6", "fc7", "fc8") for w in ("weight", "bias")}
    set_trainable(model, plan.trainable(4))
    assert not model.conv1.weight.requires_grad and not model.norm1.weight.requires_grad
    assert model.conv2.weight.requires_grad and model.norm2.weight.requires_grad  # a norm trains with its conv


@pytest.mark.parametrize("spec,message", [
    ("conv9", "unknown layer 'conv9'"),
    ("conv4-conv1", "is not a range of layers"),
])
def test_bad_layer_names_are_one_line(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_layers(spec)
    assert parse_layers("classifier,conv1-conv2") == ["conv1", "conv2", "fc6", "fc7", "fc8"]


def test_finetune_errors(tv_weights, split_folder, tmp_path, capsys):
    assert main(["finetune", "--data", str(split_folder), "--out", str(tmp_path / "a")]) == 1
    assert "finetune needs --weights" in capsys.readouterr().err
    assert _finetune(tv_weights, split_folder, tmp_path / "b", "--freeze", "all") == 1
    assert "leaves no layer to train" in capsys.readouterr().err
    assert _finetune(tv_weights, split_folder, tmp_path / "c", "--unfreeze-schedule", "fc8") == 1
    assert "should be LAYERS:EPOCHS" in capsys.readouterr().err
