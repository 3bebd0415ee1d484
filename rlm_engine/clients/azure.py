"""``backend="azure"``: Azure OpenAI through the openai SDK's Azure client.

Azure serves a model as a *deployment* you name; requests go to
``{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=...`` and
authenticate with an ``api-key`` header or a Microsoft Entra ID token. Everything else
is the ``openai`` client's (streaming that frees the server when a call is abandoned,
usage from the stream's last chunk, the retry without ``stream_options`` that older API
versions refuse, the total deadline per call).

- ``model`` is the deployment name; ``base_url``/``azure_endpoint`` the resource's
  endpoint (``https://NAME.openai.azure.com``), default ``AZURE_OPENAI_ENDPOINT``.
- ``api_key`` defaults to ``AZURE_OPENAI_API_KEY``; pass ``azure_ad_token_provider`` (an
  async callable returning a token, e.g. ``azure.identity.aio.get_bearer_token_provider``)
  to use Entra ID instead.
- ``api_version`` defaults to ``OPENAI_API_VERSION``, else :data:`DEFAULT_API_VERSION`.
- The reply cap goes out as ``max_completion_tokens`` (Azure's reasoning deployments
  refuse ``max_tokens``; every GA version since 2024-10-21 takes it).
- Prices follow the model the reply names (Azure returns the real model, such as
  ``gpt-4o-2024-08-06``, whatever the deployment is called).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import openai

from rlm_engine.clients.openai import OpenAIClient, _SDKOptions

if TYPE_CHECKING:
    import httpx2

#: The API version used when neither ``api_version`` nor ``OPENAI_API_VERSION`` is set.
DEFAULT_API_VERSION = "2024-10-21"

TokenProvider = Callable[[], "str | Awaitable[str]"]


class AzureOpenAIClient(OpenAIClient):
    """Chat completions from an Azure OpenAI deployment."""

    def __init__(
        self,
        model_name: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        azure_endpoint: str | None = None,
        azure_deployment: str | None = None,
        api_version: str | None = None,
        azure_ad_token_provider: TokenProvider | None = None,
        **kwargs: Any,
    ) -> None:
        endpoint = azure_endpoint or base_url or os.environ.get("AZURE_OPENAI_ENDPOINT")
        if not endpoint:
            raise ValueError(
                "backend='azure' needs the resource's endpoint: base_url='https://NAME.openai."
                "azure.com' (or azure_endpoint=..., or set AZURE_OPENAI_ENDPOINT)"
            )
        deployment = azure_deployment or model_name
        if not deployment or deployment == "auto":
            raise ValueError(
                "backend='azure' needs the deployment's name: model='my-gpt-4o-deployment' "
                "(Azure serves models by the deployment name you gave them)"
            )
        key = api_key or os.environ.get("AZURE_OPENAI_API_KEY")
        if key is None and azure_ad_token_provider is None:
            raise ValueError(
                "backend='azure' needs a key or a token: api_key=... (or AZURE_OPENAI_API_KEY), "
                "or backend_kwargs={'azure_ad_token_provider': provider} for Entra ID"
            )
        self.azure_endpoint = endpoint.rstrip("/")
        self.api_version = (
            api_version or os.environ.get("OPENAI_API_VERSION") or DEFAULT_API_VERSION
        )
        self._token_provider = azure_ad_token_provider
        self._azure_key = key
        super().__init__(deployment, base_url=None, api_key=key or "entra-id", **kwargs)
        self.base_url = self.azure_endpoint
        self.cap_name = "max_completion_tokens"

    def _azure_options(self, common: _SDKOptions) -> dict[str, Any]:
        options: dict[str, Any] = {
            "azure_endpoint": self.azure_endpoint,
            "api_version": self.api_version,
            "max_retries": common["max_retries"],
            "default_headers": common["default_headers"],
        }
        if "timeout" in common:
            options["timeout"] = common["timeout"]
        if self._token_provider is not None:
            options["azure_ad_token_provider"] = self._token_provider
        else:
            options["api_key"] = self._azure_key
        return options

    def _async_sdk(self, common: _SDKOptions, http: httpx2.AsyncClient) -> openai.AsyncOpenAI:
        return openai.AsyncAzureOpenAI(**self._azure_options(common), http_client=http)

    def _sync_sdk(self, common: _SDKOptions, http: httpx2.Client) -> openai.OpenAI:
        options = self._azure_options(common)
        provider = options.get("azure_ad_token_provider")
        if provider is not None and inspect.iscoroutinefunction(provider):
            # The sync client calls its provider without awaiting: run the async one.
            from rlm_engine.aio import run_sync

            options["azure_ad_token_provider"] = lambda: run_sync(provider())
        return openai.AzureOpenAI(**options, http_client=http)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "client": "azure",
            "base_url": self.azure_endpoint,
            "api_version": self.api_version,
        }


__all__ = ["DEFAULT_API_VERSION", "AzureOpenAIClient"]
