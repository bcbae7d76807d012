"""Shared storage for x402 ``batch-settlement`` payment channels.

:mod:`aixyz_sessions.channels.storage` implements the SDK's server-side
``ChannelStorage`` protocol on this project's shared backends: the database
(:class:`~aixyz_sessions.channels.storage.DatabaseChannelStorage`, the
:class:`~aixyz_sessions.channels.models.Channel` table) and Redis
(:class:`~aixyz_sessions.channels.storage.RedisChannelStorage`). Import them
from there; this package imports nothing at load time, so the app's models
module can import the model without pulling in the SDK.
"""
