"""A scripted OpenAI-compatible chat-completions server, for ``ToolLoopAgent`` tests.

Served on loopback by the tests (uvicorn), spoken to by the real ``openai``
client over real HTTP. The script: with no tool result yet, call the first
tool; after one, call the second; then answer with the last tool result.
Every request is kept in :attr:`FakeModel.requests`; ``fail`` makes every
answer a 500, ``fail_from`` every answer from that request on (0-based);
``endless`` calls the first tool at every step and never answers;
``per_step`` is how many tool calls one step asks for; ``delay`` seconds pass
before each answer (to cut a turn short while the model "thinks"); ``usage``
``(prompt_tokens, completion_tokens)`` is reported with every answer (``None``:
no ``usage``, as some compatible servers do). With no ``calls`` it answers at once.
"""

from __future__ import annotations

import asyncio
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
    fail_from: int | None = None
    endless: bool = False
    per_step: int = 1
    delay: float = 0.0
    usage: tuple[int, int] | None = None

    def reset(self) -> None:
        """Back to the plain script, with no requests seen."""
        self.requests.clear()
        self.fail, self.fail_from, self.endless, self.per_step, self.delay = (
            False,
            None,
            False,
            1,
            0.0,
        )
        self.usage = None

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/chat/completions", self.complete, methods=["POST"])])

    async def complete(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        failing = self.fail_from is not None and len(self.requests) > self.fail_from
        if self.fail or failing:
            return JSONResponse({"error": {"message": "model overloaded"}}, status_code=500)
        done = [m for m in body["messages"] if m.get("role") == "tool"]
        if self.endless or len(done) < len(self.calls):
            name, arguments = self.calls[0 if self.endless else len(done)]
            message: dict[str, Any] = {
                "role": "assistant",
                "content": f"working on step {len(self.requests)}",
                "tool_calls": [
                    {
                        "id": f"call_{len(done)}_{i}",
                        "type": "function",
                        "function": {"name": name, "arguments": json.dumps(arguments)},
                    }
                    for i in range(self.per_step)
                ],
            }
            finish = "tool_calls"
        else:
            said = done[-1]["content"] if done else "nothing to do"
            message = {"role": "assistant", "content": f"done: {said}"}
            finish = "stop"
        answer: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        }
        if self.usage is not None:
            prompt, completion = self.usage
            answer["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        return JSONResponse(answer)
