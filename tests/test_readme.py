"""Every `alexnet` command and Python snippet in README.md runs, on tiny data the test makes.

The commands run as written, from a folder holding what they name (`photos/` of class
folders, `cat.jpg`, torchvision's weights file in the hub cache, made with random values),
with two changes that keep them short: training commands run one epoch per round, and
`serve` (which runs until stopped; tests/test_serve.py covers it) is left out.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import write_images
from PIL import Image

from alexnet.cli import main
from alexnet.models.pretrained import HUB_FILES

README = Path(__file__).resolve().parent.parent / "README.md"
LONG_RUNNING = {"serve"}


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def commands(text: str) -> list[list[str]]:
    out = []
    for lang, body in blocks(text):
        if lang == "python":
            continue
        for line in body.splitlines():
            if line.startswith("alexnet "):
                argv = shlex.split(line, comments=True)[1:]
                if argv and argv[0] not in LONG_RUNNING and argv[0] != "--help":
                    out.append(argv)
    return out


def shortened(argv: list[str]) -> list[str]:
    """One epoch per training round, and no worker processes."""
    if argv[0] not in ("train", "finetune"):
        return argv
    argv = [re.sub(r":\d+\b", ":1", a) if a.count(":") and "," in a else a for a in argv]
    if "--unfreeze-schedule" not in argv:
        argv = [*argv, "--epochs", "1"]
    return [*argv, "--workers", "0"]


def test_the_readme_names_its_commands():
    found = {argv[0] for argv in commands(README.read_text())}
    assert {"train", "evaluate", "predict", "report", "finetune", "features", "export"} <= found


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path, monkeypatch):
    write_images(tmp_path / "photos", 6, size=40, seed=1)
    Image.new("RGB", (48, 40), (200, 30, 30)).save(tmp_path / "cat.jpg")
    hub = tmp_path / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), hub / HUB_FILES[0])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.chdir(tmp_path)

    text = README.read_text()
    ran = []
    for argv in commands(text):
        assert main(shortened(argv)) == 0, f"alexnet {shlex.join(argv)}"
        ran.append(argv[0])
    assert ran.count("train") >= 1 and Path("runs/pets/checkpoints/best.pt").is_file()

    snippets = [body for lang, body in blocks(text) if lang == "python"]
    assert snippets
    for body in snippets:
        exec(compile(body, "README.md", "exec"), {"__name__": "readme"})
    assert os.getcwd() == str(tmp_path)
