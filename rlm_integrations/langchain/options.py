"""``RLMChatModel``'s engine options: pydantic fields generated from ``RLMConfig``.

Options the chat model spells as the engine does get their field from here, with the
engine's default and doc, so a new engine option is a chat-model field at once. The
chat model declares only the options LangChain users know under another name or type
(``model``, ``api_key`` as a secret, aliases such as ``max_completion_tokens``) and says
in :data:`NOT_FIELDS` which options have no field, and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from rlm_engine import config as engine_config

#: Engine options declared by ``RLMChatModel`` itself, under LangChain's name or type:
#: option -> the chat-model field that sets it.
DECLARED: dict[str, str] = {
    "backend": "backend (a name) or llm (a LangChain chat model)",
    "model": "model / model_name",
    "sub_backend": "sub_llm",
    "base_url": "base_url / openai_api_base",
    "api_key": "api_key / openai_api_key (a SecretStr, default OPENAI_API_KEY)",
    "max_tokens": "max_tokens / max_completion_tokens",
    "timeout": "timeout / request_timeout",
    "verbose": "verbose (LangChain's own flag; also turns on the engine's printer)",
}

#: Engine options with no chat-model field, and where a LangChain user sets them instead.
NOT_FIELDS: dict[str, str] = {
    "tools": "bind_tools(tools, mode='repl') runs tools inside the RLM run",
    "tools_doc": "bind_tools(...) writes the tools' documentation from their schemas",
}

#: Options whose values are live objects: kept out of ``dumpd`` and callback payloads.
_NOT_SERIALIZED = {"logger", "on_event", "tracer_provider"}


def generated_options() -> list[str]:
    """The engine options that get a generated chat-model field."""
    return [n for n in engine_config.options() if n not in DECLARED and n not in NOT_FIELDS]


def _field(info: engine_config.OptionInfo) -> tuple[Any, Any]:
    exclude = info.name in _NOT_SERIALIZED
    if isinstance(info.default, dict | list):
        default = info.default
        return info.type, Field(
            default_factory=lambda: type(default)(default),
            description=info.doc,
            exclude=exclude,
        )
    return info.type, Field(default=info.default, description=info.doc, exclude=exclude)


def engine_options_model() -> type[BaseModel]:
    """A pydantic model with one field per generated option; ``RLMChatModel`` inherits it."""
    infos = engine_config.options()
    fields = {name: _field(infos[name]) for name in generated_options()}
    return create_model(  # type: ignore[call-overload, no-any-return]
        "RLMEngineOptions",
        __config__=ConfigDict(arbitrary_types_allowed=True, protected_namespaces=()),
        __doc__="RLMChatModel fields generated from rlm_engine.config.RLMConfig.",
        __module__=__name__,
        **fields,
    )


if TYPE_CHECKING:  # the fields are generated at import; type checkers see a plain model

    class RLMEngineOptions(BaseModel):
        """RLMChatModel fields generated from rlm_engine.config.RLMConfig."""

        def __getattr__(self, name: str) -> Any: ...

else:
    RLMEngineOptions = engine_options_model()

__all__ = ["DECLARED", "NOT_FIELDS", "RLMEngineOptions", "generated_options"]
