"""The page of `alexnet serve` in a real browser: headless Chromium (Debian's package) opens it on
127.0.0.1, uploads an image, and the predicted class on the page is the one /predict answers.

Run with `make test-browser` (installs chromium and chromium-driver). Skipped, with the reason,
where Selenium, Chromium or its driver is missing. ALEXNET_BROWSER_SOURCE and
ALEXNET_BROWSER_IMAGE serve another model and upload another image (for the docs' screenshot).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from model_files import make_checkpoint
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "images" / "serve.png"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium here: `make test-browser` installs Debian's chromium"),
    pytest.mark.skipif(DRIVER is None, reason="no chromedriver here: `make test-browser` installs chromium-driver"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(source: str, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "alexnet", "serve", source, "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"alexnet serve exited: {proc.stderr.read()[-500:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail("alexnet serve did not answer /health within 180 s")


def _api_top1(port: int, image: Path) -> str:
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{image.name}\"\r\n\r\n"
            ).encode() + image.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("POST", "/predict", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return json.loads(conn.getresponse().read())["predictions"][0]["top"][0]["class"]


def test_page_predicts_an_uploaded_image(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: pip install 'alexnet[browser]'")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    source = os.environ.get("ALEXNET_BROWSER_SOURCE") or str(make_checkpoint(tmp_path / "best.pt"))
    image = Path(os.environ.get("ALEXNET_BROWSER_IMAGE") or tmp_path / "red.png")
    if not image.exists():
        pixels = np.clip(np.array([200, 30, 30]) + np.random.default_rng(0).normal(0, 30, (96, 96, 3)), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(image)
    port = _free_port()
    server = _serve(source, port)
    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=980,640"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 30).until(lambda d: "classes" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(str(image.resolve()))
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "top1").text.strip())
        shown = driver.find_element(By.ID, "top1").text.strip()
        bars = driver.find_elements(By.CSS_SELECTOR, "#bars .bar")
        assert driver.find_element(By.ID, "preview").get_attribute("src").startswith("blob:")
        # The docs' picture only when asked for (with the docs' model); otherwise beside the test's files.
        shot = SCREENSHOT if os.environ.get("ALEXNET_BROWSER_SOURCE") else tmp_path / "serve.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(shot))
    finally:
        driver.quit()
        try:
            expected = _api_top1(port, image)
        finally:
            server.terminate()
            server.wait(10)
    assert shown == expected
    assert 1 <= len(bars) <= 5
