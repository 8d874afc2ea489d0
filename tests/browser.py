"""Headless Chromium for tests of pages (the leaderboard's report, the web UI): Debian's ``chromium`` and
``chromedriver`` driven by Selenium, started with the flags this closed network needs. Nothing downloads a browser.

Without the browser a test is skipped, unless ``TALKINGFACE_REQUIRE_BROWSER=1`` (set by ``.ci/run``, which installs
it) turns that into a failure."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

CHROMIUM = os.environ.get("TALKINGFACE_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TALKINGFACE_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--allow-file-access-from-files", "--window-size=1280,1600")


def require_browser() -> None:
    """Skip (or fail under CI) when Chromium, ChromeDriver or Selenium is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not (Path(path).is_file() or shutil.which(path))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        message = f"needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("TALKINGFACE_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@contextlib.contextmanager
def chromium() -> Iterator["object"]:
    """A headless Chromium WebDriver with a fresh profile, quit at the end."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="talkingface-chromium-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            driver.set_page_load_timeout(60)
            yield driver
        finally:
            driver.quit()


PLAY_SCRIPT = """
const video = arguments[0], done = arguments[arguments.length - 1];
video.muted = true;
const finish = () => done({currentTime: video.currentTime, duration: video.duration, error: video.error && video.error.code,
                            readyState: video.readyState, width: video.videoWidth, height: video.videoHeight});
const timer = setTimeout(finish, 8000);
video.addEventListener('timeupdate', () => { if (video.currentTime > 0.1) { clearTimeout(timer); finish(); } });
video.addEventListener('error', () => { clearTimeout(timer); finish(); });
video.play().catch(() => { clearTimeout(timer); finish(); });
"""


def play(driver, element) -> dict:
    """Play a ``<video>`` muted until it has advanced (or 8 s passed); its state then."""
    driver.set_script_timeout(15)
    return driver.execute_async_script(PLAY_SCRIPT, element)
