"""``backend="portkey"``: the Portkey AI gateway, as a preset of the OpenAI-compatible client.

Portkey routes an OpenAI-format request to the provider its headers name:

- ``portkey_api_key`` (or ``PORTKEY_API_KEY``) goes out as ``x-portkey-api-key``;
- ``virtual_key`` as ``x-portkey-virtual-key`` (a provider key stored in Portkey), or
  ``config`` as ``x-portkey-config`` (a saved config's id, or a dict sent as JSON: retries,
  fallbacks, load balancing), or ``provider`` as ``x-portkey-provider`` with the provider's
  own key in ``api_key`` (sent as ``Authorization: Bearer``);
- ``metadata`` (a dict) as ``x-portkey-metadata``, ``trace_id`` as ``x-portkey-trace-id``.

Base URL ``https://api.portkey.ai/v1`` (a self-hosted gateway: ``base_url``). The model is
the provider's model id; prices follow it in the built-in table.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rlm_engine.clients.openai import OpenAIClient

PORTKEY_URL = "https://api.portkey.ai/v1"


class PortkeyClient(OpenAIClient):
    """Chat completions through a Portkey gateway."""

    def __init__(
        self,
        model_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        portkey_api_key: str | None = None,
        virtual_key: str | None = None,
        config: str | dict[str, Any] | None = None,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
        trace_id: str | None = None,
        default_headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        portkey_key = portkey_api_key or os.environ.get("PORTKEY_API_KEY")
        if not portkey_key:
            raise ValueError(
                "backend='portkey' needs the Portkey key: backend_kwargs={'portkey_api_key': "
                "...} or set PORTKEY_API_KEY"
            )
        if not (virtual_key or config or provider):
            raise ValueError(
                "backend='portkey' needs a route: backend_kwargs with 'virtual_key', 'config' "
                "(a saved config id or a dict) or 'provider' (with the provider's api_key)"
            )
        if model_name in (None, "", "auto"):
            raise ValueError("backend='portkey' needs the provider's model: model='gpt-4o'")
        headers = {"x-portkey-api-key": portkey_key, **(default_headers or {})}
        if virtual_key:
            headers["x-portkey-virtual-key"] = virtual_key
        if config:
            headers["x-portkey-config"] = config if isinstance(config, str) else json.dumps(config)
        if provider:
            headers["x-portkey-provider"] = provider
        if metadata:
            headers["x-portkey-metadata"] = json.dumps(metadata)
        if trace_id:
            headers["x-portkey-trace-id"] = trace_id
        super().__init__(
            model_name,
            base_url or PORTKEY_URL,
            api_key or "portkey",
            default_headers=headers,
            **kwargs,
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "client": "portkey"}


__all__ = ["PORTKEY_URL", "PortkeyClient"]
