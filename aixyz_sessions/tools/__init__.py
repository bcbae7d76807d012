"""Agent tools: define once with ``@tool``, serve over HTTP, MCP and WebSocket."""

from __future__ import annotations

from .registry import Tool, ToolArgumentsError, ToolError, ToolRegistry, registry, tool

__all__ = ["Tool", "ToolArgumentsError", "ToolError", "ToolRegistry", "registry", "tool"]
