"""The admin's "Sessions" pages in a real browser, on the running demo with sessions in Redis.

The demo runs with ``AIXYZ_DEMO_STORE=cache`` (``CacheSessionStore`` on the
Redis at 127.0.0.1:6379); two payers write through real paid calls, then
headless chromium (the ``driver`` fixture) logs in, finds payer A by part of
its address, pages through its keys, opens an entry, deletes a key and erases
the payer; payer B stays. Each step saves a screenshot in the test's tmp
folder and as ``/tmp/admin_<step>.png``. Without Redis or chromium the test
skips (fails under ``CI=true``).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser_helpers import wait_for
from tests.demo_server import ADMIN_PASSWORD, ADMIN_USER, DemoServer, demo_server
from tests.services import REDIS_HOST, REDIS_PORT, need_redis

pytestmark = pytest.mark.redis

#: More keys than the admin's default page size (100), so A's keys take two pages.
NOTES = 104


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, driver: Any) -> Iterator[DemoServer]:
    need_redis()
    env = {"AIXYZ_DEMO_STORE": "cache", "REDIS_URL": f"redis://{REDIS_HOST}:{REDIS_PORT}/0"}
    with demo_server(tmp_path_factory.mktemp("demo"), env=env) as running:
        yield running


class Shots:
    """Screenshots of the steps: in the test's tmp folder and as /tmp/admin_<name>.png."""

    def __init__(self, driver: Any, folder: Path) -> None:
        self.driver, self.folder = driver, folder

    def __call__(self, name: str) -> None:
        shot = self.folder / f"admin_{name}.png"
        assert self.driver.save_screenshot(str(shot)), name
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
        shutil.copyfile(shot, Path("/tmp") / shot.name)


def test_find_page_open_delete_and_erase_a_payer(
    driver: Any, server: DemoServer, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    notes = {f"note-{i:03d}": f"note number {i} from payer A" for i in range(NOTES)}
    notes["profile"] = '{"name": "A", "bio": "' + "lorem ipsum " * 40 + '"}'
    a_address = server.paid_puts(notes)
    b_address = server.paid_put("greeting", "hello from B")
    a, b = a_address.lower(), b_address.lower()
    shot = Shots(driver, tmp_path)

    def rows() -> list[str]:
        table = wait_for(driver, ec.presence_of_element_located((By.ID, "result_list")))
        return [row.text for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")]

    def message() -> str:
        found = wait_for(driver, ec.presence_of_element_located((By.CSS_SELECTOR, ".messagelist")))
        return str(found.text)

    try:
        # Log in; "Sessions" is in the index under the app.
        driver.get(f"{server.url}/admin/login/?next=/admin/")
        driver.find_element(By.ID, "id_username").send_keys(ADMIN_USER)
        driver.find_element(By.ID, "id_password").send_keys(ADMIN_PASSWORD)
        driver.find_element(By.CSS_SELECTOR, "input[type=submit], button[type=submit]").click()
        wait_for(driver, ec.presence_of_element_located((By.ID, "user-tools")))
        shot("index")
        driver.find_element(By.LINK_TEXT, "Sessions").click()
        wait_for(driver, ec.presence_of_element_located((By.ID, "searchbar")))
        assert "CacheSessionStore" in driver.find_element(By.ID, "content-main").text

        # Find A by the start of its (checksummed, mixed-case) address.
        search = driver.find_element(By.ID, "searchbar")
        search.send_keys(a_address[:12])
        search.submit()
        wait_for(driver, ec.url_contains("q="))
        assert rows() == [a + " Erase…"]
        assert "1 payer on this page" in driver.find_element(By.CLASS_NAME, "paginator").text
        shot("payers")

        # A's keys: two pages.
        driver.find_element(By.LINK_TEXT, a).click()
        wait_for(driver, ec.title_contains("Session of"))
        first_page = rows()
        assert len(first_page) == 100 and first_page[0].startswith("note-000 note number 0")
        paginator = driver.find_element(By.CLASS_NAME, "paginator")
        assert "100 entries on this page" in paginator.text
        shot("keys")
        driver.execute_script("arguments[0].scrollIntoView(false)", paginator)
        shot("keys_bottom")
        driver.find_element(By.ID, "next-page").click()
        wait_for(driver, ec.presence_of_element_located((By.ID, "first-page")))
        second_page = rows()
        assert [row.split(" ")[0] for row in second_page] == [
            "note-100",
            "note-101",
            "note-102",
            "note-103",
            "profile",
        ]
        assert "5 entries on this page" in driver.find_element(By.CLASS_NAME, "paginator").text
        assert not driver.find_elements(By.ID, "next-page")
        shot("keys_page2")

        # One entry, in full.
        driver.find_element(By.LINK_TEXT, "profile").click()
        value = wait_for(driver, ec.presence_of_element_located((By.ID, "entry-value")))
        assert value.text == notes["profile"].strip()
        ttl_left = driver.find_element(By.ID, "ttl-left").text  # Redis's PTTL, the 1 h default
        assert re.fullmatch(r"(59 min( \d+ s)?|1 h)", ttl_left), ttl_left
        shot("entry")

        # Delete it: the confirmation page, then yes.
        driver.find_element(By.ID, "delete-key").click()
        wait_for(driver, ec.title_contains("Are you sure"))
        shot("delete_confirm")
        driver.find_element(By.ID, "confirm").click()
        assert f"Deleted “profile” of {a}." in message()
        shot("deleted")
        driver.find_element(By.ID, "next-page").click()
        wait_for(driver, ec.presence_of_element_located((By.ID, "first-page")))
        assert "profile" not in " ".join(rows())

        # Erase A: the count, then yes.
        driver.find_element(By.ID, "erase-payer").click()
        count = wait_for(driver, ec.presence_of_element_located((By.ID, "erase-count")))
        assert count.text == f"{NOTES} entries"
        shot("erase_confirm")
        driver.find_element(By.ID, "confirm").click()
        assert f"Erased {NOTES} session entries of {a}." in message()
        shot("erased")
        search = driver.find_element(By.ID, "searchbar")
        search.send_keys(a)
        search.submit()
        wait_for(driver, ec.url_contains("q="))
        assert rows() == [f"No payer matches “{a}”."]

        # B untouched.
        search = driver.find_element(By.ID, "searchbar")
        search.clear()
        search.send_keys(b)
        search.submit()
        wait_for(driver, ec.text_to_be_present_in_element((By.ID, "result_list"), b))
        driver.find_element(By.LINK_TEXT, b).click()
        wait_for(driver, ec.title_contains("Session of"))
        assert rows() == ["greeting hello from B"]
        shot("payer_b")

        # The deletions are in the admin's recent actions.
        driver.get(f"{server.url}/admin/")
        recent = driver.find_element(By.ID, "recent-actions-module").text
        assert a in recent and f"{a} / profile" in recent
    finally:
        for payer in (a, b):
            server.manage("aixyz_sessions_erase", payer)
