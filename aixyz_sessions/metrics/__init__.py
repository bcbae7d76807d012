"""Prometheus metrics of paid calls, tools, agent turns and channels (the ``[prometheus]`` extra).

Turn them on with ``AIXYZ_METRICS`` (:mod:`.conf`) and route
``aixyz_sessions.metrics.urls``; what is counted is in :mod:`.instruments`
and the channel gauges in :mod:`.channel_gauges`. See docs/operations.md.
"""
