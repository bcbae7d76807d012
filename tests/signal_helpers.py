"""The payment signals as a test hears them: every one sent, in order, with its arguments.

``heard_signals()`` is the block form; the ``heard`` fixture (``tests/conftest.py``)
wraps it for a test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aixyz_sessions import signals
from aixyz_sessions.payments.paid_call import PaidCall

ALL = {
    "payment_verified": signals.payment_verified,
    "payment_settled": signals.payment_settled,
    "payment_settle_failed": signals.payment_settle_failed,
    "payment_refused": signals.payment_refused,
    "payment_replayed": signals.payment_replayed,
    "answer_kept": signals.answer_kept,
    "sign_in_accepted": signals.sign_in_accepted,
}

Heard = list[tuple[str, dict[str, Any]]]


@contextmanager
def heard_signals() -> Iterator[Heard]:
    """Every payment signal sent while the block runs: ``(name, arguments)``."""
    events: Heard = []
    receivers = []
    for name, signal in ALL.items():

        def receive(sender: Any, _name: str = name, **arguments: Any) -> None:
            assert sender is PaidCall
            arguments.pop("signal")
            events.append((_name, arguments))

        signal.connect(receive, weak=False)
        receivers.append((signal, receive))
    try:
        yield events
    finally:
        for signal, receive in receivers:
            signal.disconnect(receive)


def names(events: Heard) -> list[str]:
    return [name for name, _ in events]
