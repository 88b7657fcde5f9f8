"""The playground in a real browser: the system's headless Chromium (Debian's `chromium`
and `chromium-driver`; .ci/run installs them), driven by Selenium. It draws a 7 stroke by
stroke with mouse events, waits for the answer, checks it against the HTTP API's answer for
the canvas's own pixels, checks the feature maps are drawn, and saves a screenshot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from tests.http_serving import running_both
from tests.serving import TIMEOUT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="no system Chromium (apt-get install chromium chromium-driver)")

# A 7 on the 280 x 280 pad, as strokes of (x, y) points: the bar, then the stem.
SEVEN = [[(70, 60), (110, 58), (150, 58), (210, 60)], [(210, 60), (185, 110), (160, 160), (135, 215), (120, 245)]]
FEATURE_MAPS = 6 + 6 + 16 + 16  # lenet5's conv1, pool1, conv2, pool2 channels


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1180",
                 "--disable-gpu"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(TIMEOUT)
    yield driver
    driver.quit()


def artifacts_dir(tmp_path: Path) -> Path:
    """$ZOO_TEST_ARTIFACTS when set (CI keeps it), else the test's own temporary directory."""
    out = Path(os.environ.get("ZOO_TEST_ARTIFACTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def draw(driver, pad, strokes) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    width = pad.size["width"]
    for points in strokes:  # offsets are from the pad's centre
        to_pad = [(round((x - 140) * width / 280), round((y - 140) * width / 280)) for x, y in points]
        actions = ActionChains(driver, duration=20)
        actions.move_to_element_with_offset(pad, *to_pad[0]).click_and_hold()
        for (x0, y0), (x1, y1) in zip(to_pad, to_pad[1:]):
            actions.move_by_offset(x1 - x0, y1 - y0)
        actions.release().perform()


def test_draw_a_seven(browser, models_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with running_both(models_dir) as (_, _, port):
        browser.get(f"http://127.0.0.1:{port}/")
        wait = WebDriverWait(browser, TIMEOUT)
        wait.until(lambda d: d.find_element(By.ID, "model").get_attribute("value") == "lenet5-mnist")
        pad = browser.find_element(By.ID, "pad")
        draw(browser, pad, SEVEN)
        # Answered after the last stroke, nothing in flight or queued: the answer is the drawing's.
        wait.until(lambda d: d.execute_script(
            "return Number(document.body.dataset.answered) > 0 && !inFlight && !again"))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#features canvas")) == FEATURE_MAPS)
        shown = int(browser.find_element(By.CSS_SELECTOR, "#top-k li").get_attribute("data-index"))
        note = browser.find_element(By.ID, "note").text

        png = base64.b64decode(browser.execute_script(
            "return document.getElementById('pad').toDataURL('image/png')").split(",", 1)[1])
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/models/lenet5-mnist/predict?top_k=1",
                                         data=png, headers={"Content-Type": "image/png"})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            answer = json.loads(response.read())["predictions"][0]
        assert shown == answer["top_k"][0]["index"]
        assert answer["top_k"][0]["label"] == "7"
        assert answer["inverted"] and "inverted" in note  # black on white, said on the page

        coloured = browser.execute_script("""
            return [...document.querySelectorAll('#features canvas')].filter((c) => {
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i + 1] !== 255 || d[i + 2] !== 255) return true;
              return false;
            }).length""")
        assert coloured >= FEATURE_MAPS // 2  # drawn, not blank (a map can be all 0 for a given image)
        sizes = browser.execute_script(
            "return [...document.querySelectorAll('#features .layer')].map((l) => l.querySelector('canvas').width)")
        assert sizes == [28, 14, 10, 5]  # each layer at its own size
        shot = artifacts_dir(tmp_path) / "playground.png"
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
