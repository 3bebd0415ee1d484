"""``backend="scripted"``: the offline scripted model called in-process (no HTTP).

Used by the quickstart and demos when no API key is set. Tests prefer the same model
behind the HTTP server so the real SDK path is exercised.
"""

from __future__ import annotations

from typing import Any

from rlm_engine.clients.base import LMClient, compute_cost, price_for
from rlm_engine.types import LMResponse, Message


class ScriptedClient(LMClient):
    def __init__(
        self, model_name: str | None = None, model: Any = None, pricing: Any = None, **_: Any
    ):
        from rlm_engine.scripted import ScriptedModel

        self.model_name = model_name or "scripted-root"
        self.model = model or ScriptedModel()
        self._pricing = pricing
        self.context_chars = 100_000

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        from rlm_engine.scripted import Request

        name = model or self.model_name
        req = Request(messages=messages, model=name)
        reply = self.model.respond(req)
        inp, out = self.model.usage_for(req, reply)
        return LMResponse(
            text=reply.text,
            model=name,
            input_tokens=inp,
            output_tokens=out,
            cost=compute_cost(price_for(name, self._pricing), inp, out),
        )

    def describe(self) -> dict[str, Any]:
        return {"client": "scripted", "model": self.model_name}
