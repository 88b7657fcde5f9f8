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

import numpy as np
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
CELL = 3  # screen pixels per feature-map cell (playground.js)


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


# The explain view. Numbers on the page are rounded: 4 decimals in the equations, 2 in the
# grids; "equal" below means within half a unit of the last decimal shown.
EQUATION_TOLERANCE = 5e-5 + 1e-9
GRID_TOLERANCE = 5e-3 + 1e-9
KOREAN = ("합성곱", "필터 / 커널", "특성 맵", "패딩", "밸리드 패딩", "세임 패딩", "스트라이드", "최대 풀링", "밀집층", "절편",
          "소프트맥스", "로짓")


def api(port: int, path: str, png: bytes) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=png, headers={"Content-Type": "image/png"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())


def shown_number(driver, key: str) -> float:
    from selenium.webdriver.common.by import By

    return float(driver.find_element(By.CSS_SELECTOR, f"#explain [data-k='{key}']").text.replace("−", "-"))


def grids(driver) -> list[list[list[float]]]:
    """The first term row's grids as the page shows them (window, kernel, products; or the pooling window)."""
    texts = driver.execute_script("""
        return [...document.querySelector('#explain .term-row').querySelectorAll('table.grid')].map(
          (t) => [...t.rows].map((r) => [...r.cells].map((c) => c.textContent)))""")
    return [[[float(v.replace("−", "-")) for v in row] for row in grid] for grid in texts]


def click_value(driver, layer: int, channel: int, y: int, x: int) -> None:
    """Click cell (y, x) of a map: Selenium's offsets are from the canvas's centre, 1 px border included."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_elements(By.CSS_SELECTOR, "#features .layer")[layer].find_elements(By.TAG_NAME, "canvas")[channel]
    size = canvas.size
    ActionChains(driver).move_to_element_with_offset(
        canvas, round(1 + (x + 0.5) * CELL - size["width"] / 2), round(1 + (y + 0.5) * CELL - size["height"] / 2)).click().perform()


def explained(driver, count: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, TIMEOUT).until(lambda d: d.execute_script(
        f"return Number(document.body.dataset.explained || 0) >= {count} && !explainBusy && !explainAgain"))


def strongest(layer: dict) -> tuple[int, int, int]:
    """The (channel, y, x) of a layer's largest value: a place where the drawing is."""
    data = np.array(layer["data"]).reshape(layer["shape"])[0]
    return tuple(int(i) for i in np.unravel_index(np.argmax(data), data.shape))


def panel_shot(driver, element_id: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.execute_script(f"document.getElementById('{element_id}').scrollIntoView()")
    assert driver.find_element(By.ID, element_id).screenshot(str(path))


def test_explain_values(browser, models_dir, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    out = artifacts_dir(tmp_path)
    browser.set_window_size(1280, 1500)
    try:
        with running_both(models_dir) as (_, _, port):
            browser.get(f"http://127.0.0.1:{port}/")
            wait = WebDriverWait(browser, TIMEOUT)
            wait.until(lambda d: d.find_element(By.ID, "model").get_attribute("value") == "lenet5-mnist")
            wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#architecture tbody tr"))
            draw(browser, browser.find_element(By.ID, "pad"), SEVEN)
            wait.until(lambda d: d.execute_script("return Number(document.body.dataset.answered) > 0 && !inFlight && !again"))
            png = base64.b64decode(browser.execute_script(
                "return document.getElementById('pad').toDataURL('image/png')").split(",", 1)[1])
            maps = api(port, "/v2/models/lenet5-mnist/features", png)
            layers = {layer["name"]: np.array(layer["data"]).reshape(layer["shape"])[0] for layer in maps["layers"]}
            conv1, pool1 = maps["layers"][0], maps["layers"][1]

            # conv1: the numbers shown are the API's, and the value is the map's
            c, y, x = strongest(conv1)
            click_value(browser, 0, c, y, x)
            explained(browser, 1)
            answer = api(port, f"/v2/models/lenet5-mnist/explain?layer=conv1&channel={c}&y={y}&x={x}", png)
            heading = browser.find_element(By.CSS_SELECTOR, "#explain h3").text
            assert heading.startswith("conv1 — convolution") and f"row {y}, column {x}" in heading
            for key in ("sum", "value", "bias", "activation"):
                expected = answer["activation"]["value"] if key == "activation" else answer[key]
                assert abs(shown_number(browser, key) - expected) <= EQUATION_TOLERANCE, key
            assert abs(shown_number(browser, "value") - layers[conv1["name"]][c, y, x]) <= EQUATION_TOLERANCE
            drawn = browser.execute_script(  # the value of the map the page drew, from its own /features answer
                f"const l = shown.maps.layers[0]; return l.data[(({c} * l.shape[2]) + {y}) * l.shape[3] + {x}]")
            assert abs(shown_number(browser, "value") - drawn) <= EQUATION_TOLERANCE
            window, kernel, products = grids(browser)
            np.testing.assert_allclose(window, answer["window"]["values"][0], rtol=0, atol=GRID_TOLERANCE)
            np.testing.assert_allclose(kernel, answer["kernel"][0], rtol=0, atol=GRID_TOLERANCE)
            np.testing.assert_allclose(products, answer["products"][0], rtol=0, atol=GRID_TOLERANCE)
            below = browser.find_element(By.CSS_SELECTOR, "#explain canvas.below")
            cell = int(below.get_attribute("data-cell"))
            assert int(below.get_attribute("width")) == (28 + 2 + 2) * cell  # the input image with its padding drawn
            assert browser.find_elements(By.CSS_SELECTOR, "#features .marker")
            panel_shot(browser, "explain-panel", out / "explain-conv.png")

            # an arrow key moves the value explained
            browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_LEFT)
            explained(browser, 2)
            assert f"row {y}, column {x - 1}" in browser.find_element(By.CSS_SELECTOR, "#explain h3").text
            assert abs(shown_number(browser, "value") - layers[conv1["name"]][c, y, x - 1]) <= EQUATION_TOLERANCE

            # pool1: the window and its winner
            c, y, x = strongest(pool1)
            click_value(browser, 1, c, y, x)
            explained(browser, 3)
            answer = api(port, f"/v2/models/lenet5-mnist/explain?layer=pool1&channel={c}&y={y}&x={x}", png)
            assert browser.find_element(By.CSS_SELECTOR, "#explain h3").text.startswith("pool1 — max pooling")
            assert abs(shown_number(browser, "max") - answer["maximum"]) <= EQUATION_TOLERANCE
            assert abs(shown_number(browser, "value") - layers[pool1["name"]][c, y, x]) <= EQUATION_TOLERANCE
            (window,) = grids(browser)
            np.testing.assert_allclose(window, answer["window"]["values"][0], rtol=0, atol=GRID_TOLERANCE)
            winner = browser.execute_script("""
                const cells = [...document.querySelectorAll('#explain table.grid td')];
                return cells.findIndex((td) => td.classList.contains('winner'))""")
            assert divmod(winner, len(answer["window"]["cols"])) == tuple(answer["winner"])
            panel_shot(browser, "explain-panel", out / "explain-pool.png")

            # the softmax of the answer, the architecture, the sandbox
            rows = browser.find_elements(By.CSS_SELECTOR, "#softmax tbody tr")
            prediction = api(port, "/v2/models/lenet5-mnist/predict?top_k=10", png)["predictions"][0]
            shown = [float(r.find_elements(By.TAG_NAME, "td")[3].text.split()[0].replace("−", "-")) for r in rows]
            np.testing.assert_allclose(shown, prediction["probabilities"], rtol=0, atol=5e-5 + 1e-9)
            architecture = browser.execute_script(
                "return [...document.querySelectorAll('#architecture tbody tr')].map((r) => r.cells[0].textContent)")
            assert architecture[:4] == ["input", "conv1", "relu1", "pool1"] and architecture[-1] == "fc3"
            assert "(5 × 5 × 1 + 1) × 6 = 156" in browser.find_element(By.ID, "architecture").text
            assert browser.find_element(By.ID, "sb-formula").text == "⌊(7 + 2·1 − 3) / 2⌋ + 1 = 4"
            stride = browser.find_element(By.ID, "sb-s")
            stride.send_keys(Keys.CONTROL, "a")
            stride.send_keys("4")
            assert browser.find_element(By.ID, "sb-formula").text == "⌊(7 + 2·1 − 3) / 4⌋ + 1 = 2"
            assert "not a multiple" in browser.find_element(By.ID, "sb-fit").text
            stride.send_keys(Keys.CONTROL, "a")
            stride.send_keys("2")
            for _ in range(5):  # the window slides: output (0, 0), (0, 1), ... (1, 1)
                browser.find_element(By.ID, "sb-step").click()
            assert "window at output row 1, column 1" in browser.find_element(By.ID, "sb-fit").text
            for name in ("softmax", "architecture", "sandbox"):
                panel_shot(browser, f"{name}-panel", out / f"{name}.png")

            # the link: model, value, language and drawing; opened in Korean, it shows the same value
            link = browser.current_url
            assert f"layer=pool1&channel={c}&y={y}&x={x}" in link and "model=lenet5-mnist" in link and "#draw=" in link
            value = shown_number(browser, "value")
            timings = browser.execute_script("return explainTimings")
            browser.get(link.replace("?", "?lang=ko&", 1))
            explained(browser, 1)
            assert browser.find_element(By.CSS_SELECTOR, "#explain h3").text.startswith("pool1 — 최대 풀링")
            assert shown_number(browser, "value") == value
            c, y, x = strongest(conv1)
            click_value(browser, 0, c, y, x)
            explained(browser, 2)
            text = browser.find_element(By.TAG_NAME, "body").text
            assert not [word for word in KOREAN if word not in text], [word for word in KOREAN if word not in text]
            assert "lang=ko" in browser.current_url
            panel_shot(browser, "explain-panel", out / "explain-ko.png")
            timings += browser.execute_script("return explainTimings")
            Select(browser.find_element(By.ID, "lang")).select_by_value("en")
            assert browser.find_element(By.CSS_SELECTOR, "#explain h3").text.startswith("conv1 — convolution")
            assert "lang=" not in browser.current_url
            seven = browser.find_element(By.CSS_SELECTOR, "#softmax tr[data-index='7']")
            seven.find_element(By.CSS_SELECTOR, "button").click()  # the logit explained: fc3's unit 7
            explained(browser, 3)
            assert browser.find_element(By.CSS_SELECTOR, "#explain h3").text.startswith("fc3 — dense layer")
            assert abs(shown_number(browser, "value") - prediction["logits"][7]) <= EQUATION_TOLERANCE
            assert abs(shown_number(browser, "sum") - prediction["logits"][7]) <= EQUATION_TOLERANCE
            panel_shot(browser, "explain-panel", out / "explain-dense.png")
    finally:
        browser.set_window_size(1280, 1180)
    (out / "explain-timings.json").write_text(json.dumps({"click_to_panel_ms": timings}))
    print(f"click to panel: {', '.join(f'{ms:.0f}' for ms in timings)} ms (median {np.median(timings):.0f})")
