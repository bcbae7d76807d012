"""Redis round trips per paid call, counted on the wire (issue 21, "Round trips").

    .venv/bin/python -m benchmarks.redis_round_trips [--calls 5] [--url redis://127.0.0.1:6379/0]

Django is set up with ``RedisSessionStore`` (a random ``key_prefix``, deleted
afterwards), the store's own replay guard (``RedisReplayGuard``) and the
in-process ``LocalFacilitator``; requests go through ``X402Middleware`` with
Django's ``AsyncClient`` (the ASGI handler on this event loop), each paid with
a real x402 payment signed by the SDK (``PayingClient``'s signer). Payments and
sign-ins are signed before counting starts; only the measured request counts.

redis-py's asyncio ``AbstractConnection.send_packed_command`` is wrapped: each
call is one request written to Redis and its replies read, i.e. one network
round trip (a pipeline is one call, so one round trip). The packed bytes are
decoded to name the commands, and every round trip is attributed to a step by
its command, its key and when it happened (before, inside or after the view):

* ``tool``: the view's/tool's own session reads (and, for a signed-in call,
  its writes, which go straight through);
* ``commit``: the staged writes stored after settlement (the tool's own
  writes, deferred): ``EVALSHA commit`` (one script that also carries the
  payment's records and, on a plain Redis, the payers index; before issue 21
  ``EVALSHA set_many`` / ``delete_many`` and separate commands for the rest);
  a ``commit`` without session writes (a paid read's records) is overhead;
* overhead, everything else: ``claim`` (``SET replay:..:<nonce> NX``),
  ``ready`` (the pre-settlement probe, ``EVALSHA get_many`` of one pending
  key), ``payers index`` (``ZADD`` on the ``{~payers}`` index after a payer's
  first write), ``payment record`` (``SET replay:..:paid:..`` for sign-in),
  ``pid take`` (``EVALSHA take``; before: ``SET NX``, then ``pid running``),
  ``kept answer``/``pid read`` (payment identifier), ``sign-in check``/``sign-in
  nonce`` (a returning payer).

Each case runs ``--calls`` times; the counts must be the same every time (a
range is printed otherwise). The connection is opened and the scripts loaded
(``EVALSHA`` -> ``NOSCRIPT`` -> ``EVAL``) in a warm-up first, so the table shows
the steady state; the warm-up's own count is printed below it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import secrets
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django
from django.conf import settings

PAY_TO = "0x" + "ab" * 20
NETWORK = "eip155:84532"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
PREFIX = f"bench-rt-{secrets.token_hex(4)}"


def configure(url: str) -> None:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark-only",
        ALLOWED_HOSTS=["testserver"],  # not "*": a sign-in must name a host we own
        INSTALLED_APPS=["aixyz_sessions"],
        MIDDLEWARE=["aixyz_sessions.payments.middleware.X402Middleware"],
        ROOT_URLCONF="benchmarks.redis_round_trips",
        DATABASES={},
        USE_TZ=True,
        AIXYZ_SESSION_STORE={
            "BACKEND": "aixyz_sessions.stores.redis.RedisSessionStore",
            "OPTIONS": {"url": url, "key_prefix": PREFIX},
        },
        AIXYZ_X402={"PAY_TO": PAY_TO, "NETWORK": NETWORK, "FACILITATOR": "local"},
    )
    django.setup()


# -- counting round trips ---------------------------------------------------------------


def _resp_commands(packed: bytes) -> list[list[str]]:
    """The commands in a packed RESP request (arrays of bulk strings), arguments as text."""
    commands: list[list[str]] = []
    pos = 0
    while pos < len(packed):
        assert packed[pos : pos + 1] == b"*", packed[pos : pos + 20]
        end = packed.index(b"\r\n", pos)
        count = int(packed[pos + 1 : end])
        pos = end + 2
        args: list[str] = []
        for _ in range(count):
            assert packed[pos : pos + 1] == b"$"
            end = packed.index(b"\r\n", pos)
            size = int(packed[pos + 1 : end])
            args.append(packed[end + 2 : end + 2 + size].decode("utf-8", "replace"))
            pos = end + 2 + size + 2
        commands.append(args)
    return commands


@dataclass
class Trip:
    """One round trip: the phase it happened in and the commands it carried."""

    phase: str
    commands: list[list[str]]


@dataclass
class Recorder:
    """Collects round trips while ``on``; ``phase`` is set by the views (before/tool/after)."""

    on: bool = False
    phase: str = "before"
    trips: list[Trip] = field(default_factory=list)

    def start(self) -> None:
        self.trips, self.phase, self.on = [], "before", True

    def stop(self) -> list[Trip]:
        self.on = False
        return self.trips


RECORDER = Recorder()


def instrument() -> None:
    """Wrap redis-py's asyncio ``send_packed_command``: one call is one round trip."""
    from redis.asyncio.connection import AbstractConnection

    original = AbstractConnection.send_packed_command

    async def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        if RECORDER.on:
            if isinstance(command, str):
                data = command.encode()
            elif isinstance(command, bytes | bytearray | memoryview):
                data = bytes(command)
            else:
                data = b"".join(bytes(chunk) for chunk in command)
            RECORDER.trips.append(Trip(RECORDER.phase, _resp_commands(data)))
        await original(self, command, check_health)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]


def _script_names() -> dict[str, str]:
    """SHA1 and source of each store script -> its name (``set_many``, ``get``, ...)."""
    from aixyz_sessions.stores import redis_scripts

    names: dict[str, str] = {}
    for value in vars(redis_scripts).values():
        if isinstance(value, redis_scripts.LuaScript):
            names[value.sha] = names[value.source] = value.name
    return names


SCRIPTS: dict[str, str] = {}
OVERHEAD_ORDER = [
    "pid take",
    "pid take (token check)",
    "pid read",
    "pid running",
    "sign-in check",
    "sign-in nonce",
    "claim",
    "ready",
    "payers index",
    "payment record",
    "kept answer",
    "release",
]


def step_of(phase: str, args: list[str]) -> tuple[str, str]:
    """``(step, label)`` of one command: which part of the paid call sent it, and what it was."""
    name = args[0].upper()
    key = args[1] if len(args) > 1 else ""
    if name in ("EVALSHA", "EVAL"):
        script = SCRIPTS.get(args[1], "?script")
        label = f"{name} {script}"
        if phase == "tool":
            return "tool", label
        if script == "take":
            return "pid take", label
        if script == "commit":
            return _commit_step(args, label)
        if script == "get_many" and phase == "after":
            return "ready", label
        if script in ("set", "set_many", "delete", "delete_many") and phase == "after":
            return "commit", label
        return f"other ({phase})", label
    replay = f"{PREFIX}:replay:"
    nx = any(a.upper() == "NX" for a in args[3:])
    label = f"{name}{' NX' if nx else ''} {_short(key)}"
    if name in ("ZADD", "ZREM") and key.endswith("{~payers}:index"):
        return "payers index", label
    if key.startswith(replay):
        rest = key.rsplit("}:", 1)[-1]
        if name == "DEL":
            return "release", label
        if rest.startswith("pid:"):
            if name == "GET":
                return "pid read", label
            if nx:
                return "pid take", label
            return ("pid running" if phase == "before" else "kept answer"), label
        if rest.startswith("paid:"):
            return ("sign-in check" if name == "GET" else "payment record"), label
        if rest.startswith("siwx:"):
            return "sign-in nonce", label
        if nx:
            return "claim", label
    if phase == "tool":
        return "tool", label
    return f"other ({phase})", label


def _commit_step(args: list[str], label: str) -> tuple[str, str]:
    """The ``commit`` script: the staged writes (``commit``) and what rides along.

    ARGV starts with the number of sets, deletes and records, then the payer
    (given on a plain Redis, where the script also updates the payers index).
    A commit without session writes (a paid read's records) is overhead.
    """
    numkeys = int(args[2])
    keys, argv = args[3 : 3 + numkeys], args[3 + numkeys :]
    n_set, n_del, n_rec = int(argv[0]), int(argv[1]), int(argv[2])
    records = [k.rsplit("}:", 1)[-1] for k in keys[1 + n_set + n_del : 1 + n_set + n_del + n_rec]]
    kinds = ["kept answer" if r.startswith("pid:") else "payment record" for r in records]
    parts = [f"set x{n_set}"] if n_set else []
    parts += [f"delete x{n_del}"] if n_del else []
    parts += kinds
    if argv[3] and n_set:
        parts.append("payers index if new")
    label = f"{label} ({', '.join(parts)})"
    if n_set or n_del:
        return "commit", label
    return ("+".join(dict.fromkeys(kinds)) or "other (after)"), label


def _short(key: str) -> str:
    """A key without the random prefix and with the payer's tag shortened."""
    key = key.removeprefix(PREFIX + ":")
    head, brace, rest = key.partition("{")
    if brace:
        tag, _, tail = rest.partition("}")
        if not tag.startswith("~payers"):
            tag = "payer"
        tail = tail if len(tail) < 20 else tail[:17] + "..."
        return f"{head}{{{tag}}}{tail}"
    return key


@dataclass
class Count:
    """One measured call: its round trips split into steps."""

    trips: list[Trip]

    def steps(self) -> list[str]:
        """The step of each round trip (a pipeline's commands joined with ``+``).

        A ``GET`` right after a refused ``SET NX`` of the same key is the guard's
        own check of its claim token (``RedisReplayGuard.claim``): that step's.
        """
        steps: list[str] = []
        for number, trip in enumerate(self.trips):
            step = "+".join(dict.fromkeys(step_of(trip.phase, c)[0] for c in trip.commands))
            before = self.trips[number - 1].commands if number else []
            if (
                len(trip.commands) == 1
                and trip.commands[0][0].upper() == "GET"
                and len(before) == 1
                and before[0][0].upper() == "SET"
                and before[0][1] == trip.commands[0][1]
                and "NX" in (a.upper() for a in before[0][3:])
            ):
                step = steps[-1] + " (token check)"
            steps.append(step)
        return steps

    def labels(self) -> list[str]:
        return [" | ".join(step_of(t.phase, c)[1] for c in t.commands) for t in self.trips]

    def shape(self) -> tuple[tuple[str, str], ...]:
        """Steps and command names, without keys and values (what must repeat exactly)."""
        names = ("+".join(c[0].upper() for c in t.commands) for t in self.trips)
        return tuple(zip(self.steps(), names, strict=True))

    @property
    def total(self) -> int:
        return len(self.trips)

    def of(self, step: str) -> int:
        return sum(1 for s in self.steps() if s == step)

    @property
    def overhead(self) -> int:
        return self.total - self.of("tool") - self.of("commit")


# -- the app: views and a tool -----------------------------------------------------------

from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import include, path  # noqa: E402


def _views() -> list[Any]:
    from aixyz_sessions import get_session
    from aixyz_sessions.payments import paid
    from aixyz_sessions.tools import tool

    def session() -> Any:
        found = get_session()
        assert found is not None
        return found

    def timed(view: Callable[[HttpRequest], Awaitable[JsonResponse]]) -> Any:
        async def wrapper(request: HttpRequest) -> JsonResponse:
            RECORDER.phase = "tool"
            try:
                return await view(request)
            finally:
                RECORDER.phase = "after"

        wrapper.__name__ = view.__name__
        return wrapper

    @timed
    async def read(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"value": await session().get("k")})

    @timed
    async def write(request: HttpRequest) -> JsonResponse:
        await session().set("k", secrets.token_hex(8))
        return JsonResponse({"ok": True})

    @tool(name="bench_rt_put", price="$0.01")
    async def put(key: str, value: str) -> dict[str, Any]:
        """Store ``value`` under ``key`` (the benchmark's paid tool)."""
        RECORDER.phase = "tool"
        try:
            await session().set(key, value)
            return {"ok": True}
        finally:
            RECORDER.phase = "after"

    WRITE.append(write)
    return [
        path("read/", paid("$0.01")(read)),
        path("write/", paid("$0.01")(write)),
        path("signin-write/", paid("$0.01", sign_in="after_payment")(write)),
        path("signin-read/", paid("$0.01", sign_in="after_payment")(read)),
        path("tools/", include("aixyz_sessions.tools.urls")),
    ]


urlpatterns: list[Any] = []
WRITE: list[Any] = []  # the write view, for the route declared last


# -- the cases ---------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    counts: list[Count] = field(default_factory=list)


class Bench:
    def __init__(self) -> None:
        from django.test import AsyncClient

        from aixyz_sessions.testing import PayingClient

        self.http = AsyncClient()
        self.returning = PayingClient()  # a payer whose session already exists
        self._paying = PayingClient

    async def measure(self, send: Callable[[], Awaitable[Any]], status: int = 200) -> Count:
        RECORDER.start()
        try:
            response = await send()
        finally:
            trips = RECORDER.stop()
        assert response.status_code == status, (response.status_code, response.content[:300])
        return Count(trips)

    async def get(self, url: str, headers: dict[str, str], status: int = 200) -> Count:
        """Count one ``GET`` of ``url`` with ``headers``."""
        return await self.measure(functools.partial(self.http.get, url, headers=headers), status)

    async def payment(
        self,
        client: Any,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        payment_id: str | None = None,
    ) -> dict[str, str]:
        """A fresh ``PAYMENT-SIGNATURE`` for ``url`` signed by ``client`` (with an id if given)."""
        from x402.extensions.payment_identifier import append_payment_identifier_to_extensions
        from x402.http import decode_payment_required_header, encode_payment_signature_header

        asked = await self._send(method, url, body, {})
        assert asked.status_code == 402, asked.content[:300]
        required = decode_payment_required_header(asked["PAYMENT-REQUIRED"])
        extensions: dict[str, Any] = dict(required.extensions or {})
        if payment_id is not None:
            append_payment_identifier_to_extensions(extensions, payment_id)
        payload = await client.signer.create_payment_payload(required, extensions=extensions)
        return {"PAYMENT-SIGNATURE": encode_payment_signature_header(payload)}

    async def _send(
        self, method: str, url: str, body: dict[str, Any] | None, headers: dict[str, str]
    ) -> Any:
        if method == "POST":
            return await self.http.post(
                url, json.dumps(body or {}), content_type="application/json", headers=headers
            )
        return await self.http.get(url, headers=headers)

    async def paid(
        self,
        method: str,
        url: str,
        *,
        client: Any = None,
        body: dict[str, Any] | None = None,
        payment_id: str | None = None,
    ) -> Count:
        client = client or self.returning
        headers = await self.payment(client, method, url, body, payment_id)
        return await self.measure(lambda: self._send(method, url, body, headers))

    async def run(self, calls: int) -> tuple[list[Case], Count]:
        from x402.extensions.payment_identifier import generate_payment_id

        from aixyz_sessions.testing.paying import sign_in_header

        # Warm-up: the connection, the scripts (NOSCRIPT -> EVAL), the startup checks,
        # the challenge cache; the returning payer's session and sign-in record exist after.
        RECORDER.start()
        for url in ("/read/", "/write/", "/signin-write/", "/signin-read/"):
            await self.http.get(url)
            await self.http.get(url, headers=await self.payment(self.returning, "GET", url))
        put = {"key": "k", "value": "v"}
        headers = await self.payment(self.returning, "POST", "/tools/bench_rt_put", put)
        await self._send("POST", "/tools/bench_rt_put", put, headers)
        headers = await self.payment(
            self.returning, "GET", "/write/", payment_id=generate_payment_id()
        )
        await self.http.get("/write/", headers=headers)  # the payment-identifier script
        warm = Count(RECORDER.stop())

        cases = [
            Case("402 (no payment)"),
            Case("paid read (1 get)"),
            Case("paid write (1 set)"),
            Case("paid write, first write of a new payer"),
            Case("paid tool put over HTTP (1 set)"),
            Case("paid write, sign-in declared (after_payment)"),
            Case("paid read, sign-in declared (after_payment)"),
            Case("paid write with payment-identifier"),
            Case("retry of it: kept answer served"),
            Case("signed-in write (SIGN-IN-WITH-X, no payment)"),
        ]
        for _ in range(calls):
            cases[0].counts.append(await self.get("/write/", {}, status=402))
            cases[1].counts.append(await self.paid("GET", "/read/"))
            cases[2].counts.append(await self.paid("GET", "/write/"))
            cases[3].counts.append(await self.paid("GET", "/write/", client=self._paying()))
            cases[4].counts.append(await self.paid("POST", "/tools/bench_rt_put", body=put))
            cases[5].counts.append(await self.paid("GET", "/signin-write/"))
            cases[6].counts.append(await self.paid("GET", "/signin-read/"))
            pid = generate_payment_id()
            headers = await self.payment(self.returning, "GET", "/write/", payment_id=pid)
            cases[7].counts.append(await self.get("/write/", headers))
            cases[8].counts.append(await self.get("/write/", headers))
            asked = await self.http.get("/signin-write/")
            signed = await sign_in_header(
                self.returning.account,
                asked["PAYMENT-REQUIRED"],
                "http://testserver/signin-write/",
            )
            cases[9].counts.append(await self.get("/signin-write/", {"SIGN-IN-WITH-X": signed}))
        # Last, as it changes the whole process: once any route declares
        # "after_any_payment", every settlement also records "paid for anything here".
        from django.urls import clear_url_caches

        from aixyz_sessions.payments import paid

        urlpatterns.append(path("any-write/", paid("$0.01", sign_in="after_any_payment")(WRITE[0])))
        clear_url_caches()
        later = [
            Case("paid write, after_any_payment declared elsewhere"),
            Case("paid write (after_payment) + after_any_payment"),
        ]
        for _ in range(calls):
            later[0].counts.append(await self.paid("GET", "/write/"))
            later[1].counts.append(await self.paid("GET", "/signin-write/"))
        return cases + later, warm


# -- the report --------------------------------------------------------------------------


def _span(values: Iterable[int]) -> str:
    values = list(values)
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def report(cases: list[Case], warm: Count, calls: int) -> None:
    print(f"Redis round trips per call ({calls} calls per case; RedisSessionStore +")
    print("RedisReplayGuard, LocalFacilitator, X402Middleware via Django AsyncClient;")
    print("steady state after a warm-up)")
    print("tool = the view's own session reads (and direct writes); commit = its staged writes")
    print("stored after settlement; overhead = total - tool - commit (target <= 2)\n")
    header = f"{'call':<50} {'total':>5} {'tool':>5} {'commit':>6} {'overhead':>8}  overhead steps"
    print(header)
    print("-" * (len(header) + 30))
    for case in cases:
        counts = case.counts
        steps = Counter(s for s in counts[0].steps() if s not in ("tool", "commit"))
        detail = ", ".join(
            f"{s} x{n}" if n > 1 else s
            for s, n in sorted(
                steps.items(),
                key=lambda kv: OVERHEAD_ORDER.index(kv[0]) if kv[0] in OVERHEAD_ORDER else 99,
            )
        )
        print(
            f"{case.name:<50} {_span(c.total for c in counts):>5} "
            f"{_span(c.of('tool') for c in counts):>5} {_span(c.of('commit') for c in counts):>6} "
            f"{_span(c.overhead for c in counts):>8}  {detail or '-'}"
        )
        if len({c.shape() for c in counts}) > 1:
            print(f"{'':<50} (the command lists differed between calls)")
    print("\nCommands of each case (first call), one line per round trip:")
    for case in cases:
        count = case.counts[0]
        print(f"\n  {case.name}: {count.total} round trip(s)")
        for number, (step, label) in enumerate(zip(count.steps(), count.labels(), strict=True), 1):
            print(f"    {number}. [{step}] {label}")
    per_command = Counter(c[0].upper() for t in warm.trips for c in t.commands)
    print(
        f"\nWarm-up (6 paid calls + their 402s, first in this process): {warm.total} round trips "
        f"({', '.join(f'{k} x{v}' for k, v in per_command.most_common())})"
    )


async def drop(url: str) -> int:
    from redis.asyncio import Redis

    raw = Redis.from_url(url, decode_responses=True)
    removed = 0
    try:
        batch: list[str] = []
        async for key in raw.scan_iter(match=f"{PREFIX}:*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                removed += await raw.delete(*batch)
                batch.clear()
        if batch:
            removed += await raw.delete(*batch)
    finally:
        await raw.aclose()
    return removed


async def main(calls: int, url: str) -> None:
    from aixyz_sessions import get_store
    from aixyz_sessions.payments.runtime import get_runtime
    from aixyz_sessions.stores.redis import RedisReplayGuard, RedisSessionStore

    logging.getLogger("django.request").setLevel(logging.ERROR)  # the 402s
    assert isinstance(get_store(), RedisSessionStore)
    guard = get_runtime().replay_guard
    assert isinstance(guard, RedisReplayGuard), guard
    try:
        cases, warm = await Bench().run(calls)
    finally:
        RECORDER.on = False
        await drop(url)
        await get_store().close()
    report(cases, warm, calls)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5, help="measured calls per case")
    parser.add_argument("--url", default=DEFAULT_URL, help="the Redis to use (a random prefix)")
    args = parser.parse_args()
    # Run as __main__: ROOT_URLCONF must find this very module (its urlpatterns, RECORDER).
    sys.modules.setdefault("benchmarks.redis_round_trips", sys.modules[__name__])
    configure(args.url)
    SCRIPTS.update(_script_names())
    instrument()
    urlpatterns.extend(_views())
    asyncio.run(main(args.calls, args.url))


if __name__ == "__main__":
    cli()
