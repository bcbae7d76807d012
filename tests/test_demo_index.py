"""The demo's index ``/``: JSON for agents, an HTML landing page for browsers.

In process (Django's test client) for the negotiation, the escaping and the
agent-card link; then a real headless chromium on the demo served by uvicorn
(skipped, like ``tests/test_browser.py``, when chromium or selenium is
missing, failed under ``CI=true``), which saves a screenshot of the page.
"""

from __future__ import annotations

import html
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import AsyncClient, override_settings

from aixyz_sessions.tools import Tool, registry
from demo_project.urls import urlpatterns as demo_urlpatterns
from tests.browser_helpers import wait_for
from tests.demo_server import DemoServer, demo_server

SCREENSHOT = Path("/tmp/demo_index.png")
SCREENSHOT_NARROW = Path("/tmp/demo_index_narrow.png")
AGENT_CARD = "/.well-known/agent-card.json"

CHROME_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"
)
FIREFOX_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


#: This module is also a URLconf: the demo's URLs without the agent (card and /agent).
urlpatterns = [p for p in demo_urlpatterns if "agent" not in str(getattr(p, "urlconf_name", ""))]


#: What each demo tool costs, as the index shows it (``Tool.price_label``).
PRICES = {
    "get-content": "$0.001",
    "list-keys": "$0.001 on eip155:84532 or $0.001 on eip155:8453",
    "put-content": "$0.01",
    "summarize-content": "up to $0.05",
}


async def get_index(accept: str | None) -> Any:
    headers = {} if accept is None else {"Accept": accept}
    return await AsyncClient().get("/", headers=headers)


def vary(response: Any) -> set[str]:
    return {part.strip().lower() for part in response.get("Vary", "").split(",")}


# --- content negotiation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "*/*",
        "application/json",
        "application/json, text/html",  # a tie goes to JSON
        "text/html;q=0.5, application/json",
        "text/plain",  # neither: JSON rather than a 406
    ],
)
async def test_agents_get_the_json_map(
    demo_urls: None, demo_tools: dict[str, Tool], accept: str | None
) -> None:
    response = await get_index(accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "accept" in vary(response)
    index = json.loads(response.content)
    assert index["tools"]["get-content"] == {
        "price": "$0.001",
        "description": demo_tools["get-content"].description,
        "sign_in": "after_any_payment",  # a recent payer reads by signing in
    }
    assert {name: tool["price"] for name, tool in index["tools"].items()} == PRICES
    assert index["endpoints"]["mcp"] == "http://testserver/mcp"
    assert index["endpoints"]["websocket"] == "ws://testserver/ws/tools/"
    assert index["store"] == "DatabaseSessionStore"
    assert any("demo_call" in line for line in index["try"])
    assert any("--transport ws" in line and "a2a" in line for line in index["try"])


@pytest.mark.parametrize(
    "accept", [CHROME_ACCEPT, FIREFOX_ACCEPT, "text/html", "application/json;q=0.5, text/html"]
)
async def test_a_browser_gets_the_landing_page(
    demo_urls: None, demo_tools: dict[str, Tool], accept: str
) -> None:
    response = await get_index(accept)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "accept" in vary(response)
    page = response.content.decode()
    assert "<title>aixyz-sessions demo" in page
    assert "x402" in page and "never see each other" in page
    for item in demo_tools.values():
        assert f"<h3>{html.escape(item.name)}</h3>" in page
        assert html.escape(item.description) in page
        for argument in item.input_schema["properties"]:
            assert f"<code>{argument}</code>" in page
    for price in ("$0.001", "$0.01", "up to $0.05"):
        assert f'<span class="price"><span>{price}</span> <small>per call</small>' in page
    assert (  # one span per option: the pill wraps between them, not inside one
        '<span class="price"><span>$0.001 on eip155:84532</span> <small>or</small> '
        "<span>$0.001 on eip155:8453</span> <small>per call</small></span>"
    ) in page
    assert 'class="price free"' not in page  # metered or on two networks: not "free"
    assert "<code>string | null</code>" in page  # put-content's value
    assert "min 1 · max 100 · default 20" in page  # get-content's limit
    for endpoint in (
        "POST http://testserver/tools/&lt;name&gt;",
        "GET http://testserver/tools/",
        "http://testserver/mcp",
        "ws://testserver/ws/tools/",
    ):
        assert f"<code>{endpoint}</code>" in page
    assert "DatabaseSessionStore" in page and "no money moves" in page
    assert '<a class="btn ghost" href="http://testserver/admin/">Admin</a>' in page
    assert "python manage.py demo_call --transport ws" in page
    assert '<a href="http://testserver/tools/get-content">' in page  # an "open ..." step
    for external in ("<script", "https://", "@import", "url("):
        assert external not in page, external


async def test_the_page_escapes_what_tools_declare(demo_urls: None) -> None:
    async def noop() -> None:
        return None

    hostile = Tool(
        name="x<b>&y",
        description='<script>alert("d")</script> & more',
        func=noop,
        price="$1",  # a price is a dollar amount: markup cannot get that far (see the registry)
        input_schema={
            "type": "object",
            "properties": {"<arg>": {"type": "string", "description": "<img src=x>"}},
            "required": ["<arg>"],
        },
    )
    registry.register(hostile)
    try:
        page = (await get_index(CHROME_ACCEPT)).content.decode()
    finally:
        registry.unregister(hostile.name)
    for raw in ("x<b>&y", "<script>alert", "<arg>", "<img src=x>"):
        assert raw not in page, raw
    assert "<h3>x&lt;b&gt;&amp;y</h3>" in page
    assert "&lt;script&gt;alert(&quot;d&quot;)&lt;/script&gt; &amp; more" in page
    assert '<span class="price"><span>$1</span> <small>' in page
    assert "<code>&lt;arg&gt;</code>" in page and "&lt;img src=x&gt;" in page
    assert 'href="/tools/x%3Cb%3E%26y"' in page


async def test_no_agent_card_link_when_its_url_does_not_resolve(demo_urls: None) -> None:
    with override_settings(ROOT_URLCONF=__name__):
        page = (await get_index(CHROME_ACCEPT)).content.decode()
    assert "agent-card" not in page and "Agent card" not in page and "/agent" not in page


async def test_agent_card_link_when_its_url_resolves(demo_urls: None) -> None:
    card = await AsyncClient().get(AGENT_CARD)
    page = (await get_index(CHROME_ACCEPT)).content.decode()
    assert card.status_code == 200 and card.json()["name"] == "Session Content Agent"
    assert "POST http://testserver/agent" in page
    link = f'href="http://testserver{AGENT_CARD}"'
    assert page.count(link) == 2  # the hero's button and the footer
    assert "Agent card" in page


# --- a real browser on the real demo -----------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, driver: Any) -> Iterator[DemoServer]:
    with demo_server(tmp_path_factory.mktemp("demo")) as running:
        yield running


def _overflows(driver: Any) -> bool:
    return bool(
        driver.execute_script(
            "return document.documentElement.scrollWidth > document.documentElement.clientWidth"
        )
    )


def _whole_page(driver: Any, width: int) -> None:
    """Make the window as tall as the page, so one screenshot shows all of it."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, int(height) + 140)  # the window's frame is not page
    height = driver.execute_script("return document.documentElement.scrollHeight")
    inner = driver.execute_script("return window.innerHeight")
    driver.set_window_size(width, driver.get_window_size()["height"] + max(0, height - inner))


def test_the_landing_page_in_chromium(driver: Any, server: DemoServer, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(f"{server.url}/")
    wait_for(driver, ec.title_contains("aixyz-sessions demo"))
    heading = wait_for(driver, ec.visibility_of_element_located((By.TAG_NAME, "h1")))
    assert "x402" in heading.text

    cards = driver.find_elements(By.CSS_SELECTOR, "article.card")
    names = [card.find_element(By.TAG_NAME, "h3") for card in cards]
    assert all(name.is_displayed() for name in names)
    assert [name.text for name in names] == list(PRICES)
    prices = [card.find_element(By.CSS_SELECTOR, ".price").text for card in cards]
    assert [" ".join(price.split()) for price in prices] == [
        f"{price} per call" for price in PRICES.values()
    ]
    # A long price (two networks) goes under the tool's name; it never squeezes the name.
    heights = {name.text: name.size["height"] for name in names}
    assert len(set(heights.values())) == 1, heights
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "no money moves" in body.lower()
    assert f"{server.url.replace('http', 'ws', 1)}/ws/tools/" in body
    assert "Agent card" in body and f"POST {server.url}/agent" in body  # the A2A agent

    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == [], severe
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(url.startswith(server.url) for url in resources), resources  # nothing external
    assert not _overflows(driver)

    size = driver.get_window_size()
    try:
        shot = tmp_path / "demo-index.png"
        _whole_page(driver, size["width"])
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
        shutil.copyfile(shot, SCREENSHOT)

        driver.set_window_size(420, 900)
        assert not _overflows(driver)  # a phone-sized window scrolls only downwards
        _whole_page(driver, 420)
        narrow = tmp_path / "demo-index-narrow.png"
        assert driver.save_screenshot(str(narrow))
        shutil.copyfile(narrow, SCREENSHOT_NARROW)
    finally:
        driver.set_window_size(size["width"], size["height"])
