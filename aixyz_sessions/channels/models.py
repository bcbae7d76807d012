"""``Channel``: one x402 ``batch-settlement`` channel, the table behind ``DatabaseChannelStorage``.

The SDK's channel record is kept whole in ``data`` (its ``to_dict()``), the
only source of truth. A few of its fields are copied into columns on every
write so the admin can list, sort and filter channels without parsing JSON:
they are never read back by the storage. The amounts (uint256, in token base
units) are exact on PostgreSQL; SQLite keeps about 15 significant digits.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

from django.db import models

__all__ = ["Channel"]

#: uint256 amounts have at most 78 decimal digits.
AMOUNT_DIGITS = 78


def _amount(verbose_name: str, help_text: str) -> models.DecimalField[Decimal, Decimal]:
    return models.DecimalField(
        verbose_name,
        max_digits=AMOUNT_DIGITS,
        decimal_places=0,
        default=Decimal(0),
        help_text=help_text,
    )


class Channel(models.Model):
    """A payment channel's server-side state, keyed by its lower-case ``0x`` channel id."""

    channel_id: models.CharField[str, str] = models.CharField(
        "channel id",
        max_length=66,
        primary_key=True,
        help_text="0x and 64 lower-case hex digits.",
    )
    data: models.JSONField[Any, Any] = models.JSONField(
        "data", help_text="The SDK's channel record (Channel.to_dict())."
    )
    payer: models.CharField[str, str] = models.CharField(
        "payer", max_length=256, db_index=True, help_text="The channel's payer, lower-cased."
    )
    balance = _amount("balance", "Deposited balance, in token base units.")
    charged_cumulative_amount = _amount(
        "charged cumulative amount", "What the server has charged so far, cumulative."
    )
    total_claimed = _amount("total claimed", "What has been claimed on chain so far.")
    last_request_timestamp: models.BigIntegerField[int, int] = models.BigIntegerField(
        "last request (ms)", default=0, help_text="Epoch milliseconds of the last request."
    )
    updated_at: models.DateTimeField[datetime, datetime] = models.DateTimeField(
        "updated at", auto_now=True, db_index=True
    )

    objects: ClassVar[models.Manager[Channel]] = models.Manager()

    class Meta:
        verbose_name = "payment channel"
        verbose_name_plural = "payment channels"

    def __str__(self) -> str:
        return self.channel_id
