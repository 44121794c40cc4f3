"""The explorer's page in a real browser: headless Chromium driven by Selenium loads the page,
chooses a sample, clicks a channel, and finds the four maps, the enlarged channel, the backprop
inspector, the top patches and an uploaded image drawn, with no JavaScript error logged.

Needs Debian's ``chromium`` and ``chromium-driver`` and ``pip install selenium``; skips where
they are absent. With ``EXPLORER_SCREENSHOT=path.png`` the first test saves its screenshot there
(README's docs/explorer.png was taken so).
"""

import os
import shutil
import tempfile
import time

import numpy as np
import pytest

from methods.explore.explorer import Explorer
from methods.explore.server import running

webdriver = pytest.importorskip("selenium.webdriver")
Image = pytest.importorskip("PIL.Image")
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs chromium and "
                                                   "chromium-driver (apt-get install chromium chromium-driver)")]

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1250"]


@pytest.fixture(scope="module")
def server():
    explorer = Explorer("fashion-vgg", dataset_limit=64)
    with running(explorer) as served:
        yield served
    explorer.close()


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="explorer-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(check, limit=120.0):
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"still waiting after {limit} s")


def done(driver, selector, count):
    """Whether ``count`` elements match and all are drawn (checked in the page, in one go)."""
    return driver.execute_script("const cards = [...document.querySelectorAll(arguments[0])];"
                                 "return cards.length === arguments[1] && cards.every((c) => c.dataset.state === 'done');",
                                 selector, count)


def pictures_loaded(driver, selector):
    return driver.execute_script("const images = [...document.querySelectorAll(arguments[0])];"
                                 "return images.length > 0 && images.every((i) => i.complete && i.naturalWidth > 0);",
                                 selector)


def errors(driver):
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_choose_a_sample_click_a_channel_and_see_the_maps(server, browser, tmp_path):
    browser.get(server.url)
    until(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#grid .tile")) == 128)  # relu3_1 of fashion-vgg
    until(lambda: done(browser, "#maps .card", 4))

    trouser = until(lambda: [b for b in browser.find_elements(By.CSS_SELECTOR, "#samples button")
                             if b.text.startswith("Trouser")])
    trouser[0].click()
    image = trouser[0].get_attribute("data-image")
    until(lambda: browser.find_elements(By.CSS_SELECTOR, f'#grid[data-image="{image}"] .tile'))
    assert browser.find_element(By.CSS_SELECTOR, "#prediction li").text.startswith("Trouser (1)")
    assert "chosen" in trouser[0].get_attribute("class") and pictures_loaded(browser, "#input")

    tile = browser.find_element(By.CSS_SELECTOR, '#grid .tile[data-channel="5"]')
    tile.click()
    assert "relu3_1, unit 5" in browser.find_element(By.ID, "selection").text
    until(lambda: done(browser, "#maps .card", 4))
    until(lambda: pictures_loaded(browser, "#maps img"))
    titles = [c.find_element(By.TAG_NAME, "h3").text for c in browser.find_elements(By.CSS_SELECTOR, "#maps .card")]
    assert [t.split(" (")[0] for t in titles] == ["Saliency", "Deconvnet", "Guided backpropagation", "Grad-CAM"]
    subtitles = [s.text for s in browser.find_elements(By.CSS_SELECTOR, "#maps .subtitle")]
    assert subtitles[0].startswith("Trouser (1)") and subtitles[1] == "relu3_1, unit 5"
    assert len(browser.find_elements(By.CSS_SELECTOR, "#maps .colorbar")) >= 4

    ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, '#grid .tile[data-channel="7"]')).perform()
    until(lambda: pictures_loaded(browser, "#hover img"))
    assert browser.execute_script("return document.querySelector('#hover img').naturalWidth") == 7  # native 7 x 7
    assert "channel 7" in browser.find_element(By.ID, "hover").text

    browser.find_element(By.ID, "inspect-button").click()
    until(lambda: browser.find_element(By.ID, "inspector").get_attribute("data-state") == "done")
    rows = browser.find_elements(By.CSS_SELECTOR, "#inspector table tr")
    assert len(rows) == 1 + 9  # a header; relu3_1 conv3_1 pool2 relu2_1 conv2_1 pool1 relu1_1 conv1_1 image
    browser.find_element(By.ID, "patches-button").click()
    until(lambda: done(browser, "#unit-cards .card", 1))
    until(lambda: pictures_loaded(browser, "#unit-cards img"))

    browser.set_window_size(1400, 1650)  # the grid and the maps
    browser.execute_script("window.scrollTo(0, 0)")
    ActionChains(browser).move_to_element(browser.find_element(By.CSS_SELECTOR, '#grid .tile[data-channel="5"]')).perform()
    until(lambda: "channel 5" in browser.find_element(By.ID, "hover").text and pictures_loaded(browser, "#hover img"))
    shot = os.environ.get("EXPLORER_SCREENSHOT") or str(tmp_path / "explorer.png")
    browser.save_screenshot(str(tmp_path / "full.png"))
    with Image.open(tmp_path / "full.png") as im:
        pixels = np.asarray(im.convert("RGB"))
        assert pixels.std() > 20  # a drawn page, not a blank one
        im.convert("RGB").quantize(colors=256).save(shot, optimize=True)
    assert errors(browser) == []


def test_an_uploaded_image_is_explained(server, browser, tmp_path):
    pixels = np.zeros((90, 60), np.uint8)
    pixels[10:80, 15:45] = 220
    path = tmp_path / "garment.png"
    Image.fromarray(pixels).save(path)
    browser.get(server.url)
    until(lambda: done(browser, "#maps .card", 4))
    browser.find_element(By.ID, "upload").send_keys(str(path))
    until(lambda: browser.find_elements(By.CSS_SELECTOR, '#samples button[data-image^="upload:"]'))
    until(lambda: "resized" in browser.find_element(By.ID, "notes").text)
    until(lambda: done(browser, "#maps .card", 4) and pictures_loaded(browser, "#maps img"))
    assert browser.find_element(By.ID, "error").text == ""
    assert errors(browser) == []
