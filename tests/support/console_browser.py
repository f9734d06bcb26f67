"""A real headless Chromium for the operator console's browser tests (Selenium 4, Debian's chromium + driver).

The browser and its driver are Debian's (``/usr/bin/chromium``, ``/usr/bin/chromedriver``, installed by the
bootstrap for the test extra): both paths are given to Selenium, so Selenium Manager never looks for or
downloads anything. Each browser gets a fresh profile directory, removed afterwards, and never talks to the
network on its own (no sync, component updates, background networking or QUIC).

:func:`chromium` yields a driver and always quits it; :func:`screens_on_failure` saves a screenshot and the
page source when the test fails; the ``by_testid``/``click``/``text_of`` helpers find elements by the page's
``data-testid`` attributes and survive the re-rendering of the page's refresh loops.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1400, 1000)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")

try:  # selenium is part of the test extra; without it the browser tests skip, they do not error
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.chrome.webdriver import WebDriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webelement import WebElement
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None  # type: ignore[assignment]


def require_chromium() -> None:
    """Skip the calling test, saying what is missing, unless Chromium, its driver and Selenium are there."""
    if webdriver is None:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.skip(f"no headless browser: {', '.join(missing)} missing (Debian: apt-get install chromium "
                    "chromium-driver; the bootstrap installs them for the test extra)")


def chromium_options(profile: Path) -> Options:
    """Options of a headless Chromium with its own ``profile`` directory and no network of its own."""
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.add_argument("--lang=ja")
    return options


@contextmanager
def chromium() -> Iterator[WebDriver]:
    """A headless Chromium driven through Debian's chromedriver; quit and its profile removed on exit."""
    require_chromium()
    profile = Path(tempfile.mkdtemp(prefix="platsync-chromium-"))
    driver = None
    try:
        service = Service(executable_path=str(CHROMEDRIVER))
        driver = webdriver.Chrome(service=service, options=chromium_options(profile))
        driver.set_window_size(*WINDOW)
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        if driver is not None:
            with suppress(Exception):
                driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def save_screen(driver: WebDriver, directory: Path, name: str) -> Path:
    """Save a screenshot (``name``.png) and the page source (``name``.html) under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120] or "screen"
    shot = directory / f"{safe}.png"
    with suppress(Exception):
        driver.save_screenshot(str(shot))
    with suppress(Exception):
        (directory / f"{safe}.html").write_text(driver.page_source, encoding="utf-8")
    return shot


@contextmanager
def screens_on_failure(driver: WebDriver, request: pytest.FixtureRequest, directory: Path) -> Iterator[Path]:
    """Save a screenshot and the page source under ``directory`` if the test fails.

    Works around a test body (an exception raised inside the block) and as a fixture's teardown: a fixture
    does not see the test's exception, so a failure is also read from the session's failure count, which
    pytest raises before it tears the fixtures down.
    """
    failed_before = request.session.testsfailed
    failed = False
    try:
        yield directory
    except BaseException:
        failed = True
        raise
    finally:
        if failed or request.session.testsfailed > failed_before:
            shot = save_screen(driver, directory, f"failure-{request.node.name}")
            print(f"\n[console-browser] screenshot and page source of the failure saved in {directory} ({shot.name})")


# ---- finding things on the page by data-testid ---------------------------------------------------

def selector(testid: str) -> str:
    """CSS selector of the element with ``data-testid`` ``testid`` (ids may hold '/' and ':')."""
    return '[data-testid="' + testid.replace("\\", "\\\\").replace('"', '\\"') + '"]'


def by_testid(driver: WebDriver, testid: str) -> WebElement | None:
    """The element with that ``data-testid``, or None."""
    found = driver.find_elements(By.CSS_SELECTOR, selector(testid))
    return found[0] if found else None


def text_of(driver: WebDriver, testid: str) -> str | None:
    """The visible text of the element with that ``data-testid`` (None: absent or re-rendered meanwhile)."""
    try:
        element = by_testid(driver, testid)
        return None if element is None else element.text
    except WebDriverException:
        return None


def attribute_of(driver: WebDriver, testid: str, name: str) -> str | None:
    """An attribute of the element with that ``data-testid`` (None: absent or re-rendered meanwhile)."""
    try:
        element = by_testid(driver, testid)
        return None if element is None else element.get_attribute(name)
    except WebDriverException:
        return None


def clicked(driver: WebDriver, testid: str) -> bool:
    """Click the element with that ``data-testid`` if it is shown and enabled now; False otherwise."""
    try:
        element = by_testid(driver, testid)
        if element is None or not element.is_displayed() or not element.is_enabled():
            return False
        element.click()
        return True
    except WebDriverException:
        return False


def checked(driver: WebDriver, testid: str) -> bool:
    """Tick the checkbox with that ``data-testid`` (clicking it if it is not ticked yet); True once ticked."""
    try:
        box = by_testid(driver, testid)
        if box is None or not box.is_enabled():
            return False
        if not box.is_selected():
            box.click()
        return box.is_selected()
    except WebDriverException:
        return False


def displayed(driver: WebDriver, testid: str) -> bool:
    """True if the element with that ``data-testid`` is on the page and shown."""
    try:
        element = by_testid(driver, testid)
        return element is not None and element.is_displayed()
    except WebDriverException:
        return False
