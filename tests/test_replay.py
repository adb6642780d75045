"""A run folder says how to make it again: --config replays it, --resume takes a checkpoint
path, and config.json and checkpoints record where the run came from."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

from alexnet.cli import main

# A narrow alexnet_cifar so that a step takes milliseconds.
SMALL = ["--arch", "alexnet_cifar", "--image-size", "32", "--model-option", "widths=8,16,16,16,16",
         "--model-option", "hidden=32", "--workers", "0", "--device", "cpu", "--batch-size", "4"]
TIMINGS = ("seconds", "img_per_s")


def _train(*argv: str) -> None:
    assert main(["train", *argv]) == 0


def _weights(run: Path, name: str = "last.pt") -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / name, weights_only=True)["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _rows(run: Path) -> list[dict[str, str]]:
    """metrics.csv without the timings, which differ from run to run."""
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in csv.DictReader(open(run / "metrics.csv"))]


def test_config_replays_a_run_exactly(split_folder, tmp_path):
    run, again = tmp_path / "run", tmp_path / "again"
    _train("--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1", "--deterministic")
    _train("--config", str(run / "config.json"), "--out", str(again))
    assert _rows(again) == _rows(run) and len(_rows(run)) == 1
    assert _same(_weights(again), _weights(run))  # bitwise
    replayed = json.loads((again / "config.json").read_text())
    original = json.loads((run / "config.json").read_text())
    assert {k: v for k, v in replayed.items() if k not in ("out", "provenance")} == \
        {k: v for k, v in original.items() if k not in ("out", "provenance")}


def test_flags_beside_config_override_it(split_folder, tmp_path):
    run, longer = tmp_path / "run", tmp_path / "longer"
    _train("--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1", "--schedule", "step")
    _train("--config", str(run / "config.json"), "--out", str(longer), "--epochs", "2")
    assert [r["epoch"] for r in _rows(longer)] == ["1", "2"]
    cfg = json.loads((longer / "config.json").read_text())
    assert cfg["epochs"] == 2 and cfg["schedule"] == "step" and cfg["model_option"] == ["widths=8,16,16,16,16", "hidden=32"]


def test_config_file_errors_are_one_line(split_folder, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    for text, message in [("{", "not valid JSON"), ('{"epochs": 2, "learning_rate": 1}', "unknown option learning_rate"),
                          ('{"epochs": "two"}', "epochs must be int, got 'two'"), ("[1]", "expected option names")]:
        bad.write_text(text)
        assert main(["train", "--config", str(bad), "--out", str(tmp_path / "run")]) == 1
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert main(["train", "--config", str(tmp_path / "none.json")]) == 1
    assert "cannot read it" in capsys.readouterr().err
    bad.write_text("{}")
    assert main(["train", "--config", str(bad), "--resume", "--out", str(tmp_path / "run")]) == 1
    assert "drop --config" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_yaml_config(split_folder, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(f"data: {split_folder}\narch: alexnet_cifar\nimage-size: 32\nepochs: 1\nbatch_size: 4\n"
                      "workers: 0\ndevice: cpu\nlr: 1e-3  # YAML 1.1 reads this as text\n"
                      'model_option: ["widths=8,16,16,16,16", "hidden=32"]\n')
    try:
        import yaml  # noqa: F401
    except ImportError:
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 1
        err = capsys.readouterr().err
        assert "pip install 'alexnet[yaml]'" in err and len(err.strip().splitlines()) == 1
        return
    _train("--config", str(config), "--out", str(tmp_path / "run"))
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["lr"] == 0.001 and cfg["image_size"] == 32 and cfg["model_option"] == ["widths=8,16,16,16,16", "hidden=32"]


def test_provenance_is_recorded_and_not_replayed(split_folder, tmp_path):
    import alexnet

    run = tmp_path / "run"
    _train("--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1", "--schedule", "step")
    records = json.loads((run / "config.json").read_text())["provenance"]
    ckpt = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["provenance"] == records and len(records) == 1
    p = records[0]
    assert p["alexnet"] == alexnet.__version__ and p["torch"] == torch.__version__ and p["python"].count(".") == 2
    assert p["command"][:2] == ["alexnet", "train"] and p["device"] == "cpu" and "torchvision" in p
    assert p["data"]["path"] == str(split_folder.resolve()) and p["data"]["fingerprint"].startswith("sha256:")
    assert p["git"] is None or len(p["git"].removesuffix("-dirty")) == 40
    # the same files give the same fingerprint; a changed file another one
    _train("--config", str(run / "config.json"), "--out", str(tmp_path / "again"))
    again = json.loads((tmp_path / "again" / "config.json").read_text())["provenance"]
    assert len(again) == 1 and again[0]["data"]["fingerprint"] == p["data"]["fingerprint"]
    os.utime(next((split_folder / "train" / "red").iterdir()), ns=(10**18, 10**18))  # a file rewritten since
    # a resume adds its own record to the run's
    _train("--resume", str(run), "--epochs", "2")
    records = json.loads((run / "config.json").read_text())["provenance"]
    assert len(records) == 2 and records[0] == p and records[1]["command"][2:4] == ["--resume", str(run)]
    assert records[1]["data"]["fingerprint"] != p["data"]["fingerprint"]


@pytest.mark.slow
def test_resume_takes_a_checkpoint_path(split_folder, tmp_path, capsys):
    run, branch = tmp_path / "run", tmp_path / "branch"
    _train("--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "2", "--schedule", "step",
           "--deterministic", "--seed", "3")
    # last.pt into a new folder: the run goes on there, and the original is left as it was
    _train("--resume", str(run / "checkpoints" / "last.pt"), "--out", str(branch), "--epochs", "3")
    assert [r["epoch"] for r in _rows(branch)] == ["1", "2", "3"] and len(_rows(run)) == 2
    # a run folder: its own last.pt, in place; it ends where the branch did, bitwise
    _train("--resume", str(run), "--epochs", "3")
    assert _rows(run) == _rows(branch) and _same(_weights(run), _weights(branch))
    assert json.loads((run / "config.json").read_text())["resume"] == str(run / "checkpoints" / "last.pt")

    # best.pt would rewind the run and overwrite its later epochs: only into a new folder
    assert main(["train", "--resume", str(run / "checkpoints" / "best.pt")]) == 1
    err = capsys.readouterr().err
    assert "--out NEW_DIR" in err and len(err.strip().splitlines()) == 1
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)["epoch"]
    rewound = tmp_path / "rewound"
    _train("--resume", str(run / "checkpoints" / "best.pt"), "--out", str(rewound), "--epochs", "4")
    assert [r["epoch"] for r in _rows(rewound)] == ["1", "2", "3", "4"]
    assert _rows(rewound)[:best] == _rows(run)[:best]
    # a folder that holds another run is not written over
    assert main(["train", "--resume", str(run / "checkpoints" / "last.pt"), "--out", str(branch)]) == 1
    assert "already holds an earlier run" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err
