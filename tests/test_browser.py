"""A real browser on the running demo: Debian's chromium, headless, driven by Selenium.

Logs into the admin, opens the session entries, searches by a payer written
by a real paid call and saves a screenshot; opens a paid tool's URL and sees
the x402 paywall page. The browser is the ``driver`` fixture
(``tests/browser_helpers.py``): without chromium, chromium-driver or selenium
these tests skip with a reason, or fail under ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_helpers import wait_for
from tests.demo_server import ADMIN_PASSWORD, ADMIN_USER, DemoServer, demo_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, driver: Any) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("demo")) as running:
        yield running


def test_admin_shows_the_entries_of_a_payer(
    driver: Any, server: DemoServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    payer = server.paid_put("greeting", "hello from the browser test").lower()
    other = server.paid_put("greeting", "someone else").lower()

    driver.get(f"{server.url}/admin/login/?next=/admin/")
    driver.find_element(By.ID, "id_username").send_keys(ADMIN_USER)
    driver.find_element(By.ID, "id_password").send_keys(ADMIN_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
    wait_for(driver, ec.presence_of_element_located((By.ID, "user-tools")))

    driver.get(f"{server.url}/admin/")
    driver.find_element(By.LINK_TEXT, "Session entries").click()
    wait_for(driver, ec.presence_of_element_located((By.ID, "result_list")))
    assert other in driver.find_element(By.ID, "result_list").text

    search = driver.find_element(By.ID, "searchbar")
    search.send_keys(payer)
    search.submit()
    wait_for(driver, ec.url_contains("q="))
    table = wait_for(driver, ec.presence_of_element_located((By.ID, "result_list")))
    rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(rows) == 1, table.text
    assert payer in rows[0].text and "greeting" in rows[0].text
    assert "hello from the browser test" in rows[0].text
    assert other not in table.text

    shot = tmp_path / "admin-session-entries.png"
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000


def test_session_entries_fit_a_1280_pixel_window(
    driver: Any, server: DemoServer, tmp_path: Path
) -> None:
    """A 500-character key once pushed the table off the right edge of the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    server.paid_put("k" * 500, "v" * 200)
    driver.set_window_size(1280, 900)
    driver.get(f"{server.url}/admin/login/?next=/admin/")
    if driver.find_elements(By.ID, "id_username"):  # not yet logged in by another test
        driver.find_element(By.ID, "id_username").send_keys(ADMIN_USER)
        driver.find_element(By.ID, "id_password").send_keys(ADMIN_PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
        wait_for(driver, ec.presence_of_element_located((By.ID, "user-tools")))
    driver.get(f"{server.url}/admin/aixyz_sessions/sessionentry/")
    wait_for(driver, ec.presence_of_element_located((By.ID, "result_list")))
    page, window, table, box = driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth,"
        " document.querySelector('#result_list').getBoundingClientRect().right,"
        " document.querySelector('#changelist .results').getBoundingClientRect().right]"
    )
    assert page <= window and table <= box + 1, (page, window, table, box)
    assert driver.save_screenshot(str(tmp_path / "session-entries-1280.png"))


def test_paid_tool_url_renders_the_x402_paywall(driver: Any, server: DemoServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(f"{server.url}/tools/get-content?key=greeting")
    wait_for(driver, ec.title_is("Payment Required"))
    heading = wait_for(driver, ec.visibility_of_element_located((By.CSS_SELECTOR, "h1.title")))
    assert heading.text == "Payment Required"
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "$0.001" in body  # get-content's price
    assert "Connect wallet" in body  # the SDK paywall's wallet step
    assert "next page). To access" in body and ".." not in body  # one period, not two


def test_paywall_logs_no_console_errors(driver: Any, server: DemoServer, tmp_path: Path) -> None:
    """The paywall's own checks pass: HEAD on its URL, the opener policy, the icon."""
    import time

    from selenium.webdriver.support import expected_conditions as ec

    driver.get_log("browser")  # drop what earlier pages logged
    url = f"{server.url}/tools/get-content?key=greeting"
    driver.get(url)
    wait_for(driver, ec.title_is("Payment Required"))
    time.sleep(2)  # the wallet SDK checks the opener policy after the page loads
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    # The page itself is served with status 402: that is x402, and chromium logs it.
    expected = f"{url} - Failed to load resource: the server responded with a status of 402"
    errors = [e["message"] for e in severe if not e["message"].startswith(expected)]
    assert errors == [], errors
    shot = tmp_path / "paywall.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
