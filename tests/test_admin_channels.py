"""The admin's "Payment channels": list, payer filter, detail, links, permissions, outages.

Channels are written straight into the configured storage (the payment
runtime's, ``get_runtime().channel_scheme.channel_storage``), the one the
admin reads, on the database storage and on Redis (database 15). Redis tests
skip without Redis (fail under ``CI=true``); their channels have random ids
and payers, the assertions look only at those, and each is deleted afterwards.
"""

from __future__ import annotations

import html
import re
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.test import Client, override_settings
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.timezone import localtime
from x402.mechanisms.evm.batch_settlement.server.storage import Channel, PendingRequest
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig

from aixyz_sessions.admin.channels import ChannelAdmin
from aixyz_sessions.channels.models import Channel as ChannelRow
from aixyz_sessions.channels.storage import DatabaseChannelStorage, RedisChannelStorage
from aixyz_sessions.payments.runtime import get_runtime, reset_runtime
from tests.payments_helpers import LOCAL, PAY_TO
from tests.services import need_redis

pytestmark = pytest.mark.django_db

CHANNELS_URL = reverse("admin:aixyz_sessions_channel_changelist")
INDEX_URL = reverse("admin:index")
REDIS_STORAGE = "redis://127.0.0.1:6379/15"
DEAD_REDIS_STORAGE = "redis://127.0.0.1:1/0"  # nothing listens on port 1
#: Base Sepolia USDC (6 decimals): amounts show their dollar value too.
USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
#: A token the SDK does not know: amounts show in base units only.
OTHER_TOKEN = "0x" + "7e" * 20
NOW_MS = int(time.time() * 1000)
HOUR_MS = 3_600_000


def channel_url(channel_id: str) -> str:
    return reverse("admin:aixyz_sessions_channel_detail", args=[channel_id])


def session_url(payer: str) -> str:
    return reverse("admin:aixyz_sessions_storedsession_payer", args=[payer])


def new_address() -> str:
    return "0x" + secrets.token_hex(20)


def checksum_like(address: str) -> str:
    """The address with mixed case, as a wallet would write it (the admin lower-cases)."""
    return "0x" + "".join(c.upper() if i % 2 else c for i, c in enumerate(address[2:]))


def make_channel(
    payer: str,
    *,
    balance: int,
    charged: int,
    claimed: int,
    last_ms: int,
    token: str = USDC,
    withdraw_at: int = 0,
    pending: PendingRequest | None = None,
) -> Channel:
    config = ChannelConfig(
        payer=checksum_like(payer),
        payer_authorizer=new_address(),
        receiver=PAY_TO,
        receiver_authorizer=new_address(),
        token=token,
        withdraw_delay=900,
        salt="0x" + secrets.token_hex(32),
    )
    return Channel(
        channel_id="0x" + secrets.token_hex(32),
        channel_config=config,
        charged_cumulative_amount=str(charged),
        signed_max_claimable=str(charged + 10_000),
        signature="0x" + secrets.token_hex(65),
        balance=str(balance),
        total_claimed=str(claimed),
        withdraw_requested_at=withdraw_at,
        refund_nonce=2,
        onchain_synced_at=last_ms - 1000,
        last_request_timestamp=last_ms,
        pending_request=pending,
    )


# -- the configured storage, two ways ----------------------------------------------------------


def replace_with(channel: Channel) -> Callable[[Channel | None], Channel]:
    """An ``update`` for ``update_channel`` that writes ``channel`` whatever is stored."""
    return lambda _current: channel


class Channels:
    """The configured channel storage, and the channels a test wrote into it."""

    def __init__(self) -> None:
        scheme = get_runtime().channel_scheme
        assert scheme is not None
        self.storage: Any = scheme.channel_storage
        self.written: list[str] = []

    def put(self, *channels: Channel) -> None:
        for channel in channels:
            result = self.storage.update_channel(channel.channel_id, replace_with(channel))
            assert result.status == "updated"
            self.written.append(channel.channel_id)

    def drop_written(self) -> None:
        for channel_id in self.written:
            self.storage.update_channel(channel_id, lambda _current: None)


def x402_setting(storage: str | None) -> dict[str, Any]:
    """The local facilitator's ``AIXYZ_X402``, with channels on ``storage`` (None: off)."""
    return {**LOCAL, "BATCH_SETTLEMENT": {"STORAGE": storage}} if storage else dict(LOCAL)


@pytest.fixture
def configured() -> Callable[[str | None], AbstractContextManager[None]]:
    """``configured(storage)``: a context with ``AIXYZ_X402`` set, the runtime rebuilt for it."""

    @contextmanager
    def use(storage: str | None) -> Iterator[None]:
        reset_runtime()
        try:
            with override_settings(AIXYZ_X402=x402_setting(storage)):
                yield
        finally:
            reset_runtime()

    return use


@pytest.fixture(params=["database", pytest.param("redis", marks=pytest.mark.redis)])
def channels(request: pytest.FixtureRequest, configured: Any) -> Iterator[Channels]:
    """Channels configured on each storage; what the test writes is removed afterwards."""
    if request.param == "redis":
        need_redis()
    with configured("database" if request.param == "database" else REDIS_STORAGE):
        chosen = Channels()
        expected = DatabaseChannelStorage if request.param == "database" else RedisChannelStorage
        assert isinstance(chosen.storage, expected)
        try:
            yield chosen
        finally:
            chosen.drop_written()
            if isinstance(chosen.storage, RedisChannelStorage):
                chosen.storage.close()


@pytest.fixture
def database_channels(configured: Any) -> Iterator[Channels]:
    with configured("database"):
        yield Channels()


# -- reading the pages --------------------------------------------------------------------------


def text(response: Any) -> str:
    return str(response.content.decode())


def row(response: Any, channel_id: str) -> dict[str, str] | None:
    """``{cell class: its text}`` of the channel's row in the list; ``None`` if not listed."""
    found = re.search(rf'<tr id="channel-{channel_id}">(.*?)</tr>', text(response), re.S)
    if found is None:
        return None
    cells = re.findall(r'<t[hd] class="field-(\w+)[^"]*">(.*?)</t[hd]>', found.group(1), re.S)
    return {
        name: " ".join(html.unescape(re.sub(r"<[^>]+>", "", body)).split()) for name, body in cells
    }


def main(response: Any) -> str:
    """The page's own content, without the admin's header and sidebar."""
    return text(response).split('<div id="content-main">', 1)[1]


def listed_ids(response: Any) -> list[str]:
    return re.findall(r'<tr id="channel-(0x[0-9a-f]{64})">', text(response))


def link(response: Any, element_id: str) -> str | None:
    tag = re.search(rf'<a [^>]*id="{element_id}"[^>]*>', text(response))
    href = re.search(r'href="([^"]*)"', tag.group(0)) if tag else None
    return html.unescape(href.group(1)) if href else None


def shown_time(epoch_ms: int, fmt: str = "Y-m-d H:i:s") -> str:
    return date_format(localtime(datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)), fmt)


# -- the list --------------------------------------------------------------------------------------


def test_list_shows_each_channel_with_its_figures(admin_client: Client, channels: Channels) -> None:
    alice, bob = new_address(), new_address()
    older = make_channel(
        alice, balance=2_000_000, charged=750_000, claimed=250_000, last_ms=NOW_MS - 2 * HOUR_MS
    )
    busy = make_channel(
        alice,
        balance=1_000_000,
        charged=300_000,
        claimed=0,
        last_ms=NOW_MS - 1000,
        pending=PendingRequest("req-1", "310000", NOW_MS + 60_000),
    )
    withdrawing = make_channel(
        bob,
        balance=5_000,
        charged=4_000,
        claimed=1_500,
        last_ms=NOW_MS - HOUR_MS,
        token=OTHER_TOKEN,
        withdraw_at=NOW_MS // 1000 - 600,
        pending=PendingRequest("req-old", "4100", NOW_MS - 60_000),  # expired: not busy
    )
    channels.put(older, busy, withdrawing)

    response = admin_client.get(CHANNELS_URL)
    assert response.status_code == 200

    first = row(response, older.channel_id)
    assert first == {
        "channel": older.channel_id[:10] + "…" + older.channel_id[-6:],
        "payer": alice,
        "balance": "2000000 ($2.00)",
        "charged": "750000 ($0.75)",
        "claimed": "250000 ($0.25)",
        "pending": "500000 ($0.50)",
        "activity": shown_time(older.last_request_timestamp),
        "withdraw": "no",
        "busy": "",
    }
    assert f'title="{older.channel_id}"' in text(response)  # the full id, on hover
    assert row(response, busy.channel_id) == {
        **first,
        "channel": busy.channel_id[:10] + "…" + busy.channel_id[-6:],
        "balance": "1000000 ($1.00)",
        "charged": "300000 ($0.30)",
        "claimed": "0 ($0.00)",
        "pending": "300000 ($0.30)",
        "activity": shown_time(busy.last_request_timestamp),
        "busy": "busy",
    }
    other = row(response, withdrawing.channel_id)
    assert other is not None
    # Not a known 6-decimal stablecoin: base units only.
    assert (other["balance"], other["charged"], other["claimed"], other["pending"]) == (
        "5000",
        "4000",
        "1500",
        "2500",
    )
    assert other["withdraw"] == "yes, " + shown_time(
        withdrawing.withdraw_requested_at * 1000, "Y-m-d H:i"
    )
    assert other["busy"] == ""

    # Newest activity first.
    ids = listed_ids(response)
    mine = [i for i in ids if i in {older.channel_id, busy.channel_id, withdrawing.channel_id}]
    assert mine == [busy.channel_id, withdrawing.channel_id, older.channel_id]

    # Each channel links to its page, each payer to their session.
    assert f'href="{channel_url(older.channel_id)}"' in text(response)
    assert f'href="{session_url(bob)}"' in text(response)


def test_payer_filter_any_case_and_prefix(admin_client: Client, channels: Channels) -> None:
    alice, bob = new_address(), new_address()
    a1 = make_channel(alice, balance=10, charged=5, claimed=0, last_ms=NOW_MS - 5000)
    a2 = make_channel(alice, balance=20, charged=5, claimed=5, last_ms=NOW_MS - 1000)
    b1 = make_channel(bob, balance=30, charged=0, claimed=0, last_ms=NOW_MS)
    channels.put(a1, a2, b1)

    upper = admin_client.get(CHANNELS_URL, {"payer": " " + alice.upper().replace("0X", "0x") + " "})
    assert upper.status_code == 200
    assert listed_ids(upper) == [a2.channel_id, a1.channel_id]
    assert "2 channels" in text(upper)
    assert f'value="{alice}"' in text(upper)
    # A whole address: the payer's session is one click away.
    assert link(upper, "payer-sessions") == session_url(alice)

    prefix = admin_client.get(CHANNELS_URL, {"payer": bob[:12].upper()})
    assert b1.channel_id in listed_ids(prefix)
    assert a1.channel_id not in listed_ids(prefix)
    assert link(prefix, "payer-sessions") is None

    nobody = new_address()
    empty = admin_client.get(CHANNELS_URL, {"payer": nobody})
    assert listed_ids(empty) == []
    assert f"No channel of a payer starting “{nobody}”." in text(empty)


def test_list_pages(admin_client: Client, channels: Channels, settings: Any) -> None:
    settings.AIXYZ_SESSIONS_ADMIN_PAGE_SIZE = 2
    alice = new_address()
    made = [
        make_channel(alice, balance=1, charged=0, claimed=0, last_ms=NOW_MS - i * 1000)
        for i in range(3)
    ]
    channels.put(*made)
    first = admin_client.get(CHANNELS_URL, {"payer": alice})
    assert listed_ids(first) == [made[0].channel_id, made[1].channel_id]
    assert "3 channels, page 1 of 2" in text(first)
    next_url = link(first, "next-page")
    assert next_url == f"{CHANNELS_URL}?payer={alice}&p=2"
    second = admin_client.get(next_url)
    assert listed_ids(second) == [made[2].channel_id]
    assert link(second, "previous-page") == f"{CHANNELS_URL}?payer={alice}&p=1"
    assert link(second, "next-page") is None


# -- one channel -------------------------------------------------------------------------------


def test_detail_shows_the_whole_record(admin_client: Client, channels: Channels) -> None:
    alice = new_address()
    channel = make_channel(
        alice,
        balance=2_000_000,
        charged=750_000,
        claimed=250_000,
        last_ms=NOW_MS - 1000,
        withdraw_at=NOW_MS // 1000 - 60,
        pending=PendingRequest("req-42", "760000", NOW_MS + 30_000),
    )
    channels.put(channel)

    # Any case in the URL finds it (the storages file ids in lower case).
    response = admin_client.get(channel_url(channel.channel_id.upper().replace("0X", "0x")))
    assert response.status_code == 200
    page = html.unescape(text(response))
    config = channel.channel_config
    assert f'<span class="sessions-mono">{channel.channel_id}</span>' in page
    for value in (
        config.payer,
        config.payer_authorizer,
        config.receiver,
        config.receiver_authorizer,
        config.token,
        config.salt,
    ):
        assert f'<div class="readonly sessions-mono">{value}</div>' in page
    assert "900 s (15 min 0 s)" in page
    assert 'Deposit (balance):</label><div class="readonly">2000000 <span' in page
    assert 'Pending (charged - claimed):</label><div class="readonly">500000' in page
    assert "760000" in page and "$0.76" in page  # the signed maximum
    # The voucher signature, shortened.
    assert f"{channel.signature[:12]}…{channel.signature[-10:]} (65 bytes)" in page
    assert channel.signature not in page
    assert shown_time(channel.last_request_timestamp, "Y-m-d H:i:s T") in page
    assert shown_time(channel.withdraw_requested_at * 1000, "Y-m-d H:i:s T") in page
    assert "req-42, up to 760000, holds the channel until" in page
    assert 'Refund nonce:</label><div class="readonly">2</div>' in page
    # The payer's session and other channels are linked.
    assert link(response, "payer-sessions") == session_url(alice)
    assert link(response, "payer-channels") == f"{CHANNELS_URL}?payer={alice}"


def test_unknown_or_malformed_channel(admin_client: Client, database_channels: Channels) -> None:
    missing = "0x" + "0" * 64
    response = admin_client.get(channel_url(missing), follow=True)
    assert response.redirect_chain == [(CHANNELS_URL, 302)]
    assert f"There is no channel {missing}" in text(response)
    assert admin_client.get(channel_url("0x1234")).status_code == 404
    assert admin_client.get(channel_url("not-a-channel")).status_code == 404


# -- read-only, permissions, the index ------------------------------------------------------------


def test_nothing_can_be_added_changed_or_deleted(
    admin_client: Client, database_channels: Channels
) -> None:
    channel = make_channel(new_address(), balance=100, charged=10, claimed=0, last_ms=NOW_MS)
    database_channels.put(channel)
    model_admin = ChannelAdmin(ChannelRow, admin.site)
    request = admin_client.get(CHANNELS_URL).wsgi_request
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request)
    assert not model_admin.has_delete_permission(request)

    # The pages themselves (the sidebar lists other models' add links) offer no change.
    listing = main(admin_client.get(CHANNELS_URL))
    assert channel.channel_id in listing
    assert "addlink" not in listing and "deletelink" not in listing
    assert 'name="action"' not in listing  # no bulk actions
    detail = main(admin_client.get(channel_url(channel.channel_id)))
    assert "<form" not in detail and "deletelink" not in detail and "closelink" in detail

    assert admin_client.get(CHANNELS_URL + "add/").status_code == 404
    for url in (CHANNELS_URL, channel_url(channel.channel_id)):
        assert admin_client.post(url, {"balance": "0"}).status_code == 405
    assert admin_client.get(channel_url(channel.channel_id) + "delete/").status_code == 404
    assert admin_client.get(channel_url(channel.channel_id) + "change/").status_code == 404
    stored = database_channels.storage.get(channel.channel_id)
    assert stored is not None and stored.balance == "100"


def test_not_staff_is_sent_to_the_login(database_channels: Channels) -> None:
    channel = make_channel(new_address(), balance=1, charged=0, claimed=0, last_ms=NOW_MS)
    database_channels.put(channel)
    User.objects.create_user("someone", password="pw")
    client = Client()
    client.login(username="someone", password="pw")
    for url in (CHANNELS_URL, channel_url(channel.channel_id)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
        assert channel.channel_id not in text(response)


def test_staff_needs_the_view_permission(database_channels: Channels) -> None:
    channel = make_channel(new_address(), balance=1, charged=0, claimed=0, last_ms=NOW_MS)
    database_channels.put(channel)
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    assert client.get(CHANNELS_URL).status_code == 403
    assert client.get(channel_url(channel.channel_id)).status_code == 403
    assert "Payment channels" not in text(client.get(INDEX_URL))

    user.user_permissions.set(Permission.objects.filter(codename="view_channel"))
    client.force_login(User.objects.get(pk=user.pk))
    listing = client.get(CHANNELS_URL)
    assert listing.status_code == 200 and channel.channel_id in text(listing)
    # Without the sessions permission the payer is shown, not linked.
    assert row(listing, channel.channel_id) is not None
    assert f'href="{session_url(channel.channel_config.payer.lower())}"' not in text(listing)
    assert f'<a href="{CHANNELS_URL}">Payment channels</a>' in text(client.get(INDEX_URL))


def test_index_lists_channels_only_when_configured(admin_client: Client, configured: Any) -> None:
    entry = f'<a href="{CHANNELS_URL}">Payment channels</a>'
    with configured(None):
        index = admin_client.get(INDEX_URL)
        assert index.status_code == 200
        assert entry not in text(index)
        assert f'<a href="{reverse("admin:aixyz_sessions_storedsession_changelist")}">' in text(
            index
        )
        off = admin_client.get(CHANNELS_URL)
        assert off.status_code == 404
        assert 'id="channels-off"' in text(off) and "not configured" in text(off)
    with configured("database"):
        assert entry in text(admin_client.get(INDEX_URL))
    # No AIXYZ_X402 at all (the test settings): hidden too.
    reset_runtime()
    assert entry not in text(admin_client.get(INDEX_URL))


# -- sessions and channels link to each other ------------------------------------------------------


def test_session_page_links_to_the_payers_channels(
    admin_client: Client, channels: Channels, configured: Any
) -> None:
    alice = new_address()
    channel = make_channel(alice, balance=7, charged=3, claimed=1, last_ms=NOW_MS)
    channels.put(channel)
    session = admin_client.get(session_url(alice))
    assert session.status_code == 200
    target = link(session, "payer-channels")
    assert target == f"{CHANNELS_URL}?payer={alice}"
    assert ">Payment channels</a>" in text(session)
    listing = admin_client.get(target)
    assert listed_ids(listing) == [channel.channel_id]
    assert row(listing, channel.channel_id)["pending"] == "2 ($0.000002)"  # type: ignore[index]

    with configured(None):
        assert link(admin_client.get(session_url(alice)), "payer-channels") is None


# -- the storage down ------------------------------------------------------------------------------


def test_unreachable_redis_gives_a_clear_page(admin_client: Client, configured: Any) -> None:
    with configured(DEAD_REDIS_STORAGE):
        for url in (CHANNELS_URL, channel_url("0x" + "ab" * 32)):
            response = admin_client.get(url)
            assert response.status_code == 503
            assert 'id="storage-unavailable"' in text(response)
            assert "cannot answer right now" in text(response)
            assert "RedisChannelStorage is unavailable" in text(response)
            assert response["Retry-After"] == "5"
        # The session page does not read the channel storage: it still works, and links.
        payer = new_address()
        session = admin_client.get(session_url(payer))
        assert session.status_code == 200
        assert link(session, "payer-channels") == f"{CHANNELS_URL}?payer={payer}"
