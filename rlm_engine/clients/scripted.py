"""``backend="scripted"``: the offline scripted model called in-process (no HTTP).

Used by the quickstart and demos when no API key is set. Tests prefer the same model
behind the HTTP server so the real SDK path is exercised. Without ``model`` the client
answers from a new :class:`ScriptedModel`, which speaks every protocol the package uses
(the RLM prompts and the integrations' formats); pass ``model=ScriptedModel.bare()`` for
the RLM policies alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rlm_engine.clients.base import (
    LMClient,
    Pricing,
    compute_cost,
    price_for,
    system_as_first_user,
)
from rlm_engine.types import LMResponse, Message

if TYPE_CHECKING:
    from rlm_engine.scripted import ScriptedModel


class ScriptedClient(LMClient):
    """The scripted model as a client.

    ``base_url``, ``api_key``, ``temperature``, ``timeout`` and ``max_retries`` are
    accepted so that the options every backend given by name receives work here too; an
    in-process model has no server, sampling or retries, so they are ignored.
    ``max_tokens`` caps each reply as an API does: a reply cut there is ``truncated``;
    ``system_as_user=True`` moves the system prompt into the first user turn.
    Any other keyword is a ``TypeError``.
    """

    def __init__(
        self,
        model_name: str | None = None,
        model: ScriptedModel | None = None,
        pricing: Pricing | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        max_retries: int | None = None,
        prompt_caching: bool = True,
        system_as_user: bool | None = None,
    ) -> None:
        from rlm_engine.scripted import ScriptedModel

        self.model_name = model_name or "scripted-root"
        self.model = model or ScriptedModel()
        self.max_tokens = max_tokens
        self.system_as_user = bool(system_as_user)
        self._pricing = pricing
        self.context_chars = 100_000

    async def acomplete(
        self, messages: list[Message], *, model: str | None = None, timeout: float | None = None
    ) -> LMResponse:
        from rlm_engine.scripted import Request

        name = model or self.model_name
        if self.system_as_user:
            messages = system_as_first_user(messages)
        req = Request(messages=messages, model=name, max_tokens=self.max_tokens)
        reply = self.model.respond(req)
        inp, out = self.model.usage_for(req, reply)
        return LMResponse(
            text=reply.text,
            model=name,
            input_tokens=inp,
            output_tokens=out,
            cost=compute_cost(price_for(name, self._pricing), inp, out),
            truncated=reply.finish_reason == "length",
        )

    def describe(self) -> dict[str, Any]:
        return {"client": "scripted", "model": self.model_name}
