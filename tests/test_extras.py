"""The core install: train, evaluate and predict with none of the optional libraries, and
each feature that needs one names the extra that installs it.

The commands run in a subprocess where every optional library is marked as not importable
(``None`` in ``sys.modules``: ``import`` raises ModuleNotFoundError and ``find_spec`` finds
nothing, as after ``pip install alexnet`` without extras): a module-level import of one of
them anywhere on the core path fails this test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import alexnet
from alexnet import extras
from alexnet.extras import EXTRAS, MissingExtra

# A narrow alexnet_cifar: the run takes seconds.
SMALL = ["--arch", "alexnet_cifar", "--image-size", "32", "--model-option", "widths=8,16,16,16,16",
         "--model-option", "hidden=32", "--batch-size", "8", "--workers", "0", "--device", "cpu"]

# argv[1]: the blocked top-level modules; argv[2]: the commands, each an argv for alexnet.cli.main.
# Prints one JSON list: each command's exit status, stdout and stderr, then what got imported anyway.
RUNNER = r"""
import contextlib, io, json, sys

BLOCKED = json.loads(sys.argv[1])
sys.modules.update(dict.fromkeys(BLOCKED))  # None: "import of X halted", as if not installed
from alexnet.cli import main

results = []
for argv in json.loads(sys.argv[2]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue()})
results.append(sorted(m for m, module in sys.modules.items() if module is not None and m.split(".")[0] in BLOCKED))
print(json.dumps(results))
"""


def run_without_extras(*commands: list[str]) -> tuple[list[dict], list[str]]:
    r = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(sorted(EXTRAS)), json.dumps(commands)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    *results, imported = json.loads(r.stdout.strip().splitlines()[-1])
    return results, imported


@pytest.mark.slow
def test_the_core_commands_need_no_extra_and_the_rest_name_theirs(split_folder, tmp_path):
    run, best = tmp_path / "run", tmp_path / "run" / "checkpoints" / "best.pt"
    image = next((split_folder / "val" / "red").iterdir())
    (version, train, evaluate, predict, onnx, digits, plot, report), imported = run_without_extras(
        ["--version"],
        ["train", "--data", str(split_folder), "--out", str(run), *SMALL, "--epochs", "1"],
        ["evaluate", "--checkpoint", str(best), "--data", str(split_folder), "--workers", "0"],
        ["predict", "--checkpoint", str(best), str(image)],
        ["export", str(best), "--format", "onnx", "--out", str(tmp_path / "model.onnx")],
        ["train", "--data", "digits", "--out", str(tmp_path / "digits"), *SMALL],
        ["plot", str(run)],
        ["report", str(run)],
    )
    assert imported == []
    assert version == {"code": 0, "out": f"alexnet {alexnet.__version__}\n", "err": ""}
    assert train["code"] == 0, train["err"]
    assert "note: no TensorBoard logs (tb/) and no curves.png in this run: " \
           "pip install 'alexnet[tensorboard,plots]'" in train["out"]
    assert (run / "metrics.csv").is_file() and best.is_file()
    assert not (run / "tb").exists() and not (run / "curves.png").exists()
    assert evaluate["code"] == 0, evaluate["err"]
    assert "[val, 12 images" in evaluate["out"] and "(ran with eager)" in evaluate["out"]
    assert predict["code"] == 0, predict["err"]
    assert predict["out"].splitlines()[0] == str(image)

    for result, extra in ((onnx, "onnx"), (digits, "sklearn"), (plot, "plots"), (report, "plots,sklearn")):
        assert result["code"] == 1
        assert result["err"].count("\n") == 1 and f"pip install 'alexnet[{extra}]'" in result["err"], result["err"]
    assert not (tmp_path / "model.onnx").exists()


def test_require_names_the_extra_and_keeps_other_import_errors(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name.split(".")[0])

    monkeypatch.setattr(extras.importlib, "import_module", missing)
    with pytest.raises(MissingExtra, match=r"^--format onnx needs onnxruntime, which is not installed: "
                                           r"pip install 'alexnet\[onnx\]'$"):
        extras.require("onnxruntime.quantization", "--format onnx")
    with pytest.raises(ModuleNotFoundError):  # not an optional library: a bug, with its traceback
        extras.require("nosuchthing", "anything")

    monkeypatch.setattr(extras, "available", lambda name: name == "sklearn")
    extras.check("a feature", "sklearn")
    with pytest.raises(MissingExtra, match=r"^a feature needs onnx and onnxruntime and matplotlib, which are not "
                                           r"installed: pip install 'alexnet\[onnx,plots\]'$"):
        extras.check("a feature", "onnx", "onnxruntime", "sklearn", "matplotlib")


def test_every_extra_is_declared_in_pyproject_and_in_all():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    extras_of_all = pyproject["project"]["optional-dependencies"]["all"]
    assert len(extras_of_all) == 1 and extras_of_all[0].startswith("alexnet[")
    assert set(extras_of_all[0][len("alexnet["):-1].split(",")) == set(EXTRAS.values())
