"""Django signals for what happens to payments, sent once per event by the paid-call core.

Every transport (HTTP views and tools, the WebSocket, MCP, the A2A agent) runs
its paid calls through :class:`~aixyz_sessions.payments.paid_call.PaidCall`,
which sends these; the sender is ``PaidCall``. Connect a receiver as usual::

    from django.dispatch import receiver
    from aixyz_sessions.signals import payment_settled

    @receiver(payment_settled)
    def count_revenue(sender, *, payer, resource, scheme, network, asset, amount, **kwargs):
        ...

Arguments (all keyword; accept ``**kwargs`` for those added later):

* ``payment_verified``: the payment was verified and taken for this call, the
  work is about to run. ``payer`` (EIP-55 address, as verified), ``resource``
  (the route or tool), ``scheme`` (``exact``, ``upto``, ``batch-settlement``),
  ``network`` (CAIP-2), ``asset`` (token address), ``amount`` (atomic units
  authorized: an ``upto`` payment's maximum).
* ``payment_settled``: the call's payment settled. The same, with ``amount``
  what the call was charged (what a metered call used; a channel call's
  charge, not its deposit) and ``transaction`` (the on-chain transaction,
  ``""`` for a channel voucher, which is claimed later).
* ``payment_settle_failed``: the work ran but its payment did not settle
  (nothing is stored, no result is delivered). ``payer``, ``resource``,
  ``scheme``, ``network``, ``reason``.
* ``payment_refused``: the facilitator (or the scheme, or the payer check)
  refused a payment, or the replay guard found it used, before any work:
  ``resource``, ``reason`` (the most telling words known, or ``None``);
  ``replayed`` is true when this server's replay guard found the
  authorization already taken (a facilitator that finds it spent on chain
  says so in ``reason``). A header that is no x402 payment at all is
  answered 400 by the transport before this.
* ``payment_replayed``: a retry with a payment identifier got the answer its
  first call kept (no work, nothing settled): ``payer``, ``resource``.
* ``answer_kept``: a settled call's answer was kept for retries of its payment
  identifier: ``payer``, ``resource``.
* ``sign_in_accepted``: a returning payer's sign-in proved the payer (no
  payment): ``payer``, ``resource``.
* ``agent_turn_finished`` (sender ``ToolLoopAgent``): a model turn of the A2A
  agent answered: ``payer``, ``input_tokens`` and ``output_tokens`` (what the
  model reported, summed over the turn's steps), ``measured`` (every step
  reported its usage), ``tools`` (dollars of the tools the model called,
  each at its own price). Its payment's signals follow it. An agent of your
  own (``AIXYZ_AGENT["AGENT"]``) sends it itself if it wants to.

Receivers run synchronously on the request's event loop: keep them quick and
free of blocking I/O (hand slow work to a queue). A receiver that raises is
logged and does not change the call (``send_robust``).
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

__all__ = [
    "agent_turn_finished",
    "answer_kept",
    "payment_refused",
    "payment_replayed",
    "payment_settle_failed",
    "payment_settled",
    "payment_verified",
    "send",
    "sign_in_accepted",
]

logger = logging.getLogger("aixyz_sessions.signals")

payment_verified = Signal()
payment_settled = Signal()
payment_settle_failed = Signal()
payment_refused = Signal()
payment_replayed = Signal()
answer_kept = Signal()
sign_in_accepted = Signal()
agent_turn_finished = Signal()


def send(signal: Signal, sender: Any, **arguments: Any) -> None:
    """Send ``signal``; a receiver's exception is logged, never the call's failure."""
    if not signal.has_listeners(sender):
        return  # the common case: no work at all
    for receiver, result in signal.send_robust(sender, **arguments):
        if isinstance(result, Exception):
            logger.error(
                "aixyz_sessions: a receiver of a payment signal failed: %r: %s",
                receiver,
                result,
                exc_info=result,
            )
