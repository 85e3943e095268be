"""nmt-serve's web page in headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium through the system chromedriver: nothing is downloaded). Type a sentence, click
Translate, see the translation and its attention heatmap; click the second translation, see
its heatmap. Skipped without the browser unless NMT_REQUIRE_BROWSER=1 (CI sets it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import make_checkpoint

WAIT_S = 60
SENTENCE = "Two young men are playing football on a green field."


def require(what: str) -> None:
    """Skip for a missing browser part, or fail when NMT_REQUIRE_BROWSER=1."""
    message = f"{what}: apt-get install chromium chromium-driver (and the serve + dev extras)"
    if os.environ.get("NMT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"NMT_REQUIRE_BROWSER=1 but {message}")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser_paths() -> tuple[str, str]:
    for module in ("selenium", "fastapi", "uvicorn", "httpx"):
        try:
            __import__(module)
        except ImportError:
            require(f"the Python package {module} is missing")
    driver = shutil.which("chromedriver")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not driver or not browser:
        require("chromium or chromedriver is not on PATH")
    return browser, driver


@pytest.fixture(scope="module")
def server_url(browser_paths, tiny_tokenizer, tmp_path_factory):
    """nmt-serve's app on a free port of 127.0.0.1 in a thread, stopped after the module."""
    from nmt.serve.app import create_app
    from nmt.serve.model import load_served_model
    from nmt.serve.server import background_server

    folder = tmp_path_factory.mktemp("browser_run")
    make_checkpoint(folder / "best.pt", tiny_tokenizer, tiny_tokenizer)
    with background_server(create_app(load_served_model(folder, "cpu")), timeout_s=WAIT_S) as url:
        yield url


@pytest.fixture()
def driver(browser_paths, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, chromedriver = browser_paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",  # containers run it as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    chrome.set_page_load_timeout(WAIT_S)
    try:
        yield chrome
    finally:
        chrome.quit()


def test_translate_and_see_the_attention_heatmap(server_url, driver, tmp_path: Path):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    body = {"sentences": [SENTENCE], "beam": 3, "n_best": 2, "alignments": True}
    expected = httpx.post(f"{server_url}/translate", json=body, timeout=WAIT_S).json()
    nbest = expected["translations"][0]
    wait = WebDriverWait(driver, WAIT_S)

    driver.get(f"{server_url}/")
    wait.until(lambda d: "browser_run" in d.find_element(By.ID, "model-info").text)
    driver.find_element(By.ID, "source").send_keys(SENTENCE)
    for field, value in (("beam", "3"), ("nbest", "2")):
        box = driver.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    driver.find_element(By.ID, "translate").click()

    cells = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#heatmap rect.cell"))
    best = driver.find_element(By.CSS_SELECTOR, "#hyp-0-0 .text").get_attribute("textContent")
    assert best == nbest[0]["text"]
    assert len(driver.find_elements(By.CSS_SELECTOR, "#sentence-0 .hyp")) == 2
    rows, cols = len(nbest[0]["attention"]), len(nbest[0]["source_pieces"])
    assert rows >= 1 and cols >= 5 and len(cells) == rows * cols
    svg = driver.find_element(By.CSS_SELECTOR, "#heatmap svg")
    assert (svg.get_attribute("data-rows"), svg.get_attribute("data-cols")) == (
        str(rows),
        str(cols),
    )
    labels = [t.get_attribute("textContent") for t in svg.find_elements(By.TAG_NAME, "text")]
    assert labels[:cols] == nbest[0]["source_pieces"]  # the source pieces across the top
    shown = driver.find_element(By.ID, "heatmap").screenshot_as_png
    assert len(shown) > 1000  # the heatmap was drawn, not an empty box

    driver.find_element(By.ID, "hyp-0-1").click()
    wait.until(lambda d: "translation 2" in d.find_element(By.ID, "heatmap-caption").text)
    assert driver.find_element(By.ID, "hyp-0-1").get_attribute("aria-pressed") == "true"
    second = driver.find_elements(By.CSS_SELECTOR, "#heatmap rect.cell")
    assert len(second) == len(nbest[1]["attention"]) * cols
    shot = tmp_path / "nmt_serve_page.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 1000
