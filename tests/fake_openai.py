"""A scripted OpenAI-compatible chat-completions server, for ``ToolLoopAgent`` tests.

Served on loopback by the tests (uvicorn), spoken to by the real ``openai``
client over real HTTP. The script: with no tool result yet, call the first
tool; after one, call the second; then answer with the last tool result.
Every request is kept in :attr:`FakeModel.requests`; ``fail`` makes every
answer a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class FakeModel:
    """The script: ``calls`` is a list of (function name, arguments) made in order."""

    calls: list[tuple[str, dict[str, Any]]]
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        if self.fail:
            return JSONResponse({"error": {"message": "model overloaded"}}, status_code=500)
        done = [m for m in body["messages"] if m.get("role") == "tool"]
        if len(done) < len(self.calls):
            name, arguments = self.calls[len(done)]
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{len(done)}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments)},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": f"done: {done[-1]['content']}"}
            finish = "stop"
        return JSONResponse(
            {
                "id": "chatcmpl-test",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            }
        )
