"""The command line: help for every subcommand, summaries, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from alexnet.cli import build_parser, main

SUBCOMMANDS = ["models", "summary", "train", "finetune", "evaluate", "predict", "features", "neighbors", "bench", "plot", "report", "prepare",
               "export", "serve", "convert"]


def test_subcommands_are_all_tested():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: alexnet {command}")


def test_train_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for flag in ("--data", "--arch", "--epochs", "--batch-size", "--lr", "--momentum", "--weight-decay",
                 "--dropout", "--val-split", "--image-size", "--seed", "--workers", "--device", "--out"):
        assert flag in out
    assert "alexnet_cifar" in out and "(default: 0.0005)" in out


@pytest.mark.slow
def test_python_m_alexnet():
    r = subprocess.run([sys.executable, "-m", "alexnet", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "summary" in r.stdout and "train" in r.stdout


@pytest.mark.parametrize(
    "arch,size,total,trainable,non_trainable",
    [
        ("alexnet2012", None, "60,965,224", "60,965,224", "0"),
        ("alexnet", None, "61,100,840", "61,100,840", "0"),
        ("alexnet_bn", 227, "62,379,752", "62,379,048", "704"),
    ],
)
def test_summary_totals(arch, size, total, trainable, non_trainable, capsys):
    argv = ["summary", "--arch", arch] + (["--image-size", str(size)] if size else [])
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"Total params: {total}" in lines
    assert f"Trainable params: {trainable}" in lines
    assert f"Non-trainable params: {non_trainable}" in lines


def test_summary_table_rows_and_macs(capsys):
    main(["summary", "--arch", "alexnet2012"])
    out = capsys.readouterr().out
    conv1 = next(line for line in out.splitlines() if line.startswith("conv1 "))
    assert "(N, 96, 55, 55)" in conv1 and "34,944" in conv1 and "105,415,200" in conv1
    assert "Total MACs: 724,406,816 (0.724 G per 224x224 image)" in out
    main(["summary", "--arch", "alexnet"])
    assert "Total MACs: 714,188,480" in capsys.readouterr().out


def test_summary_num_classes_and_too_small(capsys):
    main(["summary", "--arch", "alexnet_cifar", "--num-classes", "10"])
    assert "Total params: 5,871,434" in capsys.readouterr().out
    assert main(["summary", "--arch", "alexnet", "--image-size", "32"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "alexnet summary: error: --image-size 32 is below alexnet's minimum of 63"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--data", "/no/such/folder", "--epochs", "1"], "/no/such/folder: no such data source"),
        (["evaluate", "--checkpoint", "/no/such.pt", "--data", "digits"], "/no/such.pt: no such file"),
        (["predict", "--checkpoint", "/no/such.pt", "x.png"], "/no/such.pt: no such file"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_folder_without_classes_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "run")]) == 1
    assert "expected" in capsys.readouterr().err


def test_model_options_reach_the_model(capsys):
    assert main(["summary", "--arch", "alexnet_bn", "--image-size", "227", "--model-option", "bn_all=true"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 62,383,848" in out and "Non-trainable params: 2,752" in out  # 62,381,096 + 2,752 stats
    assert main(["summary", "--arch", "alexnet_cifar", "--model-option", "norm=lrn",
                 "--model-option", "norm_after=conv1,conv2"]) == 0
    assert "LocalResponseNorm" in capsys.readouterr().out
    assert main(["summary", "--arch", "alexnet", "--model-option", "widths=1"]) == 1
    assert "one entry per conv layer" in capsys.readouterr().err
    assert main(["summary", "--arch", "alexnet", "--model-option", "bogus"]) == 1
    assert "not KEY=VALUE" in capsys.readouterr().err
