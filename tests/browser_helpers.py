"""A real browser for the tests: Debian's chromium, headless, driven by Selenium.

``make test`` installs chromium and chromium-driver (``scripts/browser.sh``)
when it can; without them (or without selenium) :func:`chromium` skips the
test with a reason, or fails it under ``CI=true``. Selenium never downloads
anything: the driver path is given explicitly. The ``driver`` fixture
(``tests/conftest.py``) gives one browser per test module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1440,900",
)
WAIT = 20


def unavailable(reason: str) -> NoReturn:
    """Skip for want of the browser; fail instead under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (required under CI=true; `make test` installs it with apt-get)")
    pytest.skip(reason)


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless chromium WebDriver using ``profile`` as its user data folder; quit after."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        unavailable("selenium is not installed (pip install -e '.[dev]')")
    for program in (CHROMIUM, CHROMEDRIVER):
        if not os.access(program, os.X_OK):
            unavailable(f"{program} is missing (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    browser.set_page_load_timeout(WAIT)
    try:
        yield browser
    finally:
        browser.quit()


def wait_for(driver: Any, condition: Any) -> Any:
    """Wait up to :data:`WAIT` seconds for a Selenium ``expected_conditions`` condition."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT).until(condition)
