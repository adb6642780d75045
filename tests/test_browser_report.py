"""The report page in a real browser: headless Chromium (Debian's `chromium` package) opens
report.html from disk, offline, and takes a screenshot.

Also a script, for the screenshot in the docs:
    python tests/test_browser_report.py RUN/report.html docs/images/report.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
WINDOW = (1280, 2400)


def screenshot(page: Path, out: Path, window: tuple[int, int] = WINDOW) -> Path:
    """Open ``page`` (file://) in headless Chromium with the network off and save a PNG."""
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}",
             "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",  # nothing may come from the network
             f"--window-size={window[0]},{window[1]}", f"--screenshot={out.resolve()}", page.resolve().as_uri()],
            check=True, capture_output=True, timeout=120)
    return out


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install -y chromium)")
def test_report_opens_offline_in_chromium(tmp_path):
    from conftest import write_images

    from alexnet.cli import main

    data = tmp_path / "data"
    write_images(data / "train", 4, seed=1)
    write_images(data / "val", 2, seed=2)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--epochs", "1", "--arch", "alexnet_cifar",
                 "--image-size", "32", "--batch-size", "4", "--workers", "0", "--device", "cpu"]) == 0
    assert main(["report", str(run), "--workers", "0", "--device", "cpu"]) == 0
    shot = screenshot(run / "report.html", tmp_path / "shot.png", (1000, 1800))
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.float32)
    assert pixels.shape == (1800, 1000, 3)
    # Drawn, not blank: text and the embedded curves put dark and coloured pixels on the page.
    assert (pixels.min(axis=2) < 80).mean() > 0.001
    assert (pixels.max(axis=2) - pixels.min(axis=2) > 60).mean() > 0.001  # colour: the plots, not just text


if __name__ == "__main__":
    if CHROMIUM is None:
        sys.exit("Chromium is not installed (Debian: apt-get install -y chromium)")
    print(screenshot(Path(sys.argv[1]), Path(sys.argv[2])))
