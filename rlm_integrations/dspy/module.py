"""``RLMModule``: a DSPy module that runs the engine's RLM loop, typed by a DSPy signature.

Each call builds the engine pieces from scratch (clients, REPL, session) and drops them at
the end, so the module holds only predictors and plain settings: optimizers can deep-copy
it, run copies on threads, and save/load it like any DSPy program. Calls that should share
one REPL go through a conversation (``module.conversation()``, or ``conversation=True``),
which lives beside the module's state and is never copied with it
(:mod:`rlm_integrations.dspy.conversation`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import dspy
from dspy.adapters.types.tool import Tool
from dspy.signatures.signature import ensure_signature

from rlm_engine import direct
from rlm_engine.aio import run_sync
from rlm_engine.config import RLMConfig, make_config
from rlm_engine.environments import HostFunction
from rlm_engine.logger import RLMLogger
from rlm_engine.resources import RunResources
from rlm_engine.session import RLMResult, RLMSession, run
from rlm_engine.usage import Usage
from rlm_integrations.dspy.conversation import CALLING, HeldConversation, RLMConversation
from rlm_integrations.dspy.demos import DEFAULT_MAX_DEMO_CHARS, DemoBoundedPredict
from rlm_integrations.dspy.direct_client import DirectPredictClient
from rlm_integrations.dspy.history import history_fields, history_messages
from rlm_integrations.dspy.lm_client import dspy_scope, settings_snapshot
from rlm_integrations.dspy.outputs import (
    SubmissionError,
    coerce_submission,
    decode_answer,
    encode_answer,
)
from rlm_integrations.dspy.predictor_clients import RootTurnClient, SubCallClient, TurnSetup
from rlm_integrations.dspy.repl_setup import SUBMIT_TOOL, setup_code
from rlm_integrations.dspy.signatures import (
    REPL_NAMES,
    check_task_signature,
    extract_signature,
    finish_hint,
    root_signature,
    runtime_note,
    sub_signature,
)
from rlm_integrations.dspy.tracing import CellToolCalls
from rlm_integrations.dspy.turns import describe_inputs

#: Options DSPy users set elsewhere: the LMs come from DSPy (``dspy.configure(lm=...)``,
#: ``root.lm``, ``sub_lm``) with their own settings; the prompt is the ``root``
#: predictor's instructions, which optimizers tune; tool docs come from ``tools``.
_ON_DSPY_LM = "set it on the dspy.LM (dspy.LM(model, max_tokens=..., temperature=...))"
NOT_OPTIONS: dict[str, str] = {
    "backend": "the root LM is root.lm or dspy.settings.lm",
    "model": "the root LM is root.lm or dspy.settings.lm",
    "sub_backend": "pass sub_lm=",
    "sub_model": "pass sub_lm=",
    "base_url": _ON_DSPY_LM,
    "api_key": _ON_DSPY_LM,
    "temperature": _ON_DSPY_LM,
    "backend_kwargs": _ON_DSPY_LM,
    "sub_backend_kwargs": "pass sub_lm=",
    "max_tokens": _ON_DSPY_LM,
    "timeout": _ON_DSPY_LM,
    "max_retries": "set num_retries on the dspy.LM",
    "system_prompt": "the root predictor's instructions are the prompt (optimizers tune them)",
    "tools_doc": "written from the tools' signatures and docstrings",
}


class RLMRunError(RuntimeError):
    """The RLM run ended without an answer that fits the signature."""

    def __init__(self, message: str, result: RLMResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class RLMModule(dspy.Module):
    """A Recursive Language Model as a DSPy module.

    Every input field becomes a REPL variable (the root LM sees names, types, sizes and
    previews only); the root LM finishes with ``SUBMIT(field=value, ...)``, checked against
    the output field types. Three predictors can be optimized: ``root`` (one RLM turn; its
    instructions are the RLM prompt), ``sub_query`` (the template of ``llm_query``
    prompts) and ``extract`` (answers from the history when turns run out).

    Their few-shot demos carry behaviour, not material: whatever sets them (any
    teleprompter, ``load``), each demo keeps only its predictor's fields and each value at
    most ``max_demo_chars`` characters (head and tail around a marker), when set, used and
    saved. A context chunk in a sub-call demo would otherwise be re-sent with every
    ``llm_query``, and raw training examples would put whole documents in saved programs.

    LMs are read at call time: the root uses ``root.lm`` or ``dspy.settings.lm``; sub-calls
    use ``sub_lm`` if given, else the same LM.

    A ``dspy.History`` input field holds the earlier turns of a chat: its messages are a
    REPL list of dicts under the field's name and are listed compactly (each field
    clipped) in the root's ``variables_info``; it may be omitted for a first turn.

    Each call starts a fresh REPL. ``module.conversation()`` returns a conversation whose
    calls share one REPL (variables of earlier calls stay; each call's inputs are put in
    again under their names); ``conversation=True`` makes the module's own calls one such
    conversation (``reset_conversation()`` ends it). Copies of the module start without one.
    """

    def __init__(
        self,
        signature: str | type[dspy.Signature],
        config: RLMConfig | None = None,
        *,
        sub_lm: Any = None,
        tools: list[Callable[..., Any] | Tool] | None = None,
        pricing: Any = None,
        log_dir: str | None = None,
        max_demo_chars: int = DEFAULT_MAX_DEMO_CHARS,
        conversation: bool = False,
        **options: Any,
    ) -> None:
        super().__init__()
        self.signature = ensure_signature(signature)
        check_task_signature(self.signature)
        not_here = sorted(set(options) & set(NOT_OPTIONS))
        if not_here:
            raise TypeError(
                f"RLMModule does not take {not_here}: "
                + "; ".join(f"{n}: {NOT_OPTIONS[n]}" for n in not_here)
            )
        if log_dir is not None and "logger" in options:
            raise TypeError("Pass log_dir= or logger=, not both")
        # Validates every option now instead of on the first call.
        self.config = make_config(config, **options)
        self.sub_lm = sub_lm
        self.pricing = pricing
        self.log_dir = log_dir
        self.tools = _normalize_tools(tools, self.signature)
        bound = {"max_demo_chars": max_demo_chars}
        self.root = DemoBoundedPredict(
            root_signature(self.signature, _tools_doc(self.tools)), **bound
        )
        self.sub_query = DemoBoundedPredict(sub_signature(), **bound)
        self.extract = DemoBoundedPredict(extract_signature(self.signature), **bound)
        self.holds_conversation = conversation
        self._held = HeldConversation()

    # -- public interface -----------------------------------------------------------------
    def forward(self, **inputs: Any) -> dspy.Prediction:
        conversation = self._conversation_of_call()
        if conversation is not None:
            return conversation.run_turn(inputs)
        return run_sync(self._arun(inputs))

    async def aforward(self, **inputs: Any) -> dspy.Prediction:
        conversation = self._conversation_of_call()
        if conversation is not None:
            return await conversation.arun_turn(inputs)
        return await self._arun(inputs)

    def conversation(self) -> RLMConversation:
        """A conversation: its calls (``conv(**inputs)``, ``await conv.acall(...)``) share
        one REPL, so variables of earlier calls are there for later ones. Close it (or use
        it as a context manager) to end the REPL. The module itself is unchanged."""
        return RLMConversation(self)

    def reset_conversation(self) -> None:
        """End the conversation ``conversation=True`` holds; the next call starts anew."""
        self._held.reset()

    def _conversation_of_call(self) -> RLMConversation | None:
        """The conversation this call belongs to: the one calling (``conv(...)``), else the
        held one (``conversation=True``), else none (a fresh REPL)."""
        calling = CALLING.get()
        if calling is not None and calling.module is self:
            CALLING.set(None)  # calls nested in this one (a tool's) are not its turns
            return calling
        if getattr(self, "holds_conversation", False):
            return self._held.get(self)
        return None

    # -- one call --------------------------------------------------------------------------
    def _repl_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The call's inputs checked and as the REPL gets them, in signature order: a
        ``dspy.History`` (which may be left out) becomes its plain list of messages."""
        histories = history_fields(self.signature)
        inputs = {**dict.fromkeys(histories), **inputs}
        expected = set(self.signature.input_fields)
        missing = sorted(expected - set(inputs))
        unexpected = sorted(set(inputs) - expected)
        if missing or unexpected:
            raise ValueError(
                f"RLMModule{tuple(self.signature.input_fields)} got missing inputs {missing} "
                f"and unexpected inputs {unexpected}."
            )
        return {
            name: history_messages(name, inputs[name]) if name in histories else inputs[name]
            for name in self.signature.input_fields
        }

    def _config(self, snapshot_of: Callable[[], Any], *, bind_inputs: bool = True) -> RLMConfig:
        """The run's configuration: SUBMIT and the user's tools as REPL functions (called
        with the DSPy settings ``snapshot_of()`` gives), the set-up that defines the inputs
        (re-run if an isolated worker restarts, so inputs and SUBMIT never vanish; a
        conversation puts the inputs in itself), and feedback that tells the root to
        finish with SUBMIT."""
        tools = {SUBMIT_TOOL: _submit_tool(self.signature)}
        for name, tool in self.tools.items():
            tools[name] = HostFunction(name, _host_tool(tool, snapshot_of), tool.desc or "")
        setup = setup_code(list(self.signature.input_fields) if bind_inputs else None)
        user_setup = self.config.repl.repl_setup
        changes: dict[str, Any] = {
            "tools": {**self.config.repl.tools, **tools},
            "repl_setup": f"{setup}\n{user_setup}" if user_setup else setup,
        }
        if self.config.repl.finish_hint is None:  # feedback speaks of SUBMIT, as the prompt
            changes["finish_hint"] = finish_hint(self.signature)
        if self.log_dir and self.config.observe.logger is None:
            changes["logger"] = RLMLogger(self.log_dir)
        return self.config.replace(**changes)

    def _turn_setup(self, values: dict[str, Any], note: str = "") -> TurnSetup:
        """What every root turn of the call reads besides its history: the inputs (and,
        in a conversation, ``note`` on the earlier calls), limits and environment."""
        descs = {}
        for name, info in self.signature.input_fields.items():
            desc = (info.json_schema_extra or {}).get("desc", "")
            if desc and desc != f"${{{name}}}":
                descs[name] = desc
        info = describe_inputs(values, descs, history_fields(self.signature))
        run = self.config.run
        return TurnSetup(
            variables_info=f"{info}\n\n{note}" if note else info,
            max_iterations=run.max_iterations,
            runtime_note=runtime_note(
                max_iterations=run.max_iterations,
                max_depth=run.max_depth,
                max_llm_calls=run.max_llm_calls,
                environment=_env_name(self.config.repl.environment),
            ),
        )

    def _clients(
        self, values: dict[str, Any], snapshot: Any, note: str = ""
    ) -> tuple[RootTurnClient, SubCallClient]:
        """One call's root and sub-call clients: the module's predictors as they are now."""
        root = RootTurnClient(
            self.root,
            self.extract,
            self.signature,
            self._turn_setup(values, note),
            snapshot=snapshot,
            pricing=self.pricing,
        )
        sub = SubCallClient(self.sub_query, self.sub_lm, snapshot=snapshot, pricing=self.pricing)
        return root, sub

    async def _arun(self, inputs: dict[str, Any]) -> dspy.Prediction:
        """One call: fresh clients and REPL, the engine's loop, typed outputs."""
        values = self._repl_inputs(inputs)
        snapshot = settings_snapshot()
        config = self._config(lambda: snapshot)
        root, sub = self._clients(values, snapshot)
        cells = CellToolCalls.for_call(self)  # code cells as tool calls for DSPy callbacks
        shared = RunResources(config, root_client=root, sub_client=sub, on_event=cells)
        query = (
            f"Produce {', '.join(self.signature.output_fields)} from the inputs "
            f"{', '.join(self.signature.input_fields)} (RLMModule)."
        )

        async def loop(path_reason: str) -> RLMResult:
            try:
                session = await RLMSession.open(config, values, query, shared=shared)
            except RuntimeError as e:
                raise RuntimeError(f"RLMModule could not prepare the REPL: {e}") from e
            session.state.path_reason = path_reason
            try:
                root.bind(session)
                return await run(session)
            finally:
                await session.close()

        try:
            # mode="direct"|"auto": one call of the task's own predictor may answer instead.
            result = await direct.complete(
                config, shared, values, query, rlm=loop,
                direct_client=self._direct_client(inputs, snapshot, shared.usage),
            )  # fmt: skip
        finally:
            await shared.aclose()
        return self._prediction(result)

    def _direct_client(
        self, inputs: dict[str, Any], snapshot: Any, ledger: Usage
    ) -> DirectPredictClient | None:
        """The direct call's client (``mode`` not rlm): the task signature, predicted with the
        root's LM on the call's inputs as given (a ``dspy.History`` stays one)."""
        if self.config.run.mode == "rlm":
            return None
        return DirectPredictClient(
            self.signature, inputs, self.root.lm, snapshot=snapshot, pricing=self.pricing,
            ledger=ledger,
        )  # fmt: skip

    def _prediction(self, result: RLMResult) -> dspy.Prediction:
        text = result.response if result.status == "final" else result.partial_answer
        if text is None:
            raise RLMRunError(
                f"The RLM run ended with status {result.status!r} and no answer"
                + (f": {result.error}" if result.error else ".")
                + " Raise max_iterations / the budget, or check the LM.",
                result,
            )
        try:
            values = decode_answer(self.signature, text)
        except SubmissionError as e:
            raise RLMRunError(
                f"The RLM run ended with status {result.status!r}; its answer does not fit the "
                f"signature: {e}",
                result,
            ) from None
        usage = result.usage.to_dict()
        usage.pop("records", None)
        # Which path answered (mode): unless an output field has the name already.
        route = {"path": result.path, "path_reason": result.path_reason}
        return dspy.Prediction(
            **values,
            trajectory=[it.to_dict() for it in result.iterations],
            usage=usage,
            status=result.status,
            run_id=result.run_id,
            **{k: v for k, v in route.items() if k not in values},
        )


def _submit_tool(signature: type[dspy.Signature]) -> HostFunction:
    """The host side of SUBMIT/FINAL: check the values, answer with JSON or an error text."""

    async def submit(args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        try:
            values = coerce_submission(signature, list(args), dict(kwargs))
        except SubmissionError as e:
            return {"error": str(e)}
        return {"error": None, "answer": encode_answer(values)}

    return HostFunction(SUBMIT_TOOL, submit)


def _env_name(environment: Any) -> str:
    if isinstance(environment, str):
        return environment
    cls = environment if isinstance(environment, type) else type(environment)
    return cls.__name__


def _normalize_tools(
    tools: list[Callable[..., Any] | Tool] | None, signature: type[dspy.Signature]
) -> dict[str, Tool]:
    if tools is None:
        return {}
    if isinstance(tools, dict):
        raise TypeError("tools must be a list of functions or dspy.Tool objects, not a dict.")
    out: dict[str, Tool] = {}
    for item in tools:
        tool = item if isinstance(item, Tool) else Tool(item)
        name = tool.name
        if not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"Tool name {name!r} must be a public Python identifier.")
        if name in REPL_NAMES or name in signature.input_fields or name in out:
            raise ValueError(f"Tool name {name!r} clashes with a REPL function, input or tool.")
        out[name] = tool
    return out


def _tools_doc(tools: dict[str, Tool]) -> str:
    lines = []
    for tool in tools.values():
        params = ", ".join(tool.args or {})
        desc = " ".join((tool.desc or "").split())
        lines.append(f"- `{tool.name}({params})`" + (f": {desc}" if desc else ""))
    return "\n".join(lines)


def _host_tool(tool: Tool, snapshot_of: Callable[[], Any]) -> Callable[..., Any]:
    """A user tool as an engine host function: positional args mapped onto its parameters,
    run under the DSPy settings of the call in progress (``snapshot_of()``)."""
    names = list(tool.args or {})

    async def call(*args: Any, **kwargs: Any) -> Any:
        if len(args) > len(names):
            raise TypeError(f"{tool.name}() takes {len(names)} arguments, got {len(args)}")
        kwargs = {**dict(zip(names, args, strict=False)), **kwargs}
        func = tool.func
        if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
            getattr(func, "__call__", None)  # noqa: B004 - async callable objects
        ):
            with dspy_scope(snapshot_of()):
                return await tool.acall(**kwargs)

        snapshot = snapshot_of()

        def sync_call() -> Any:
            with dspy_scope(snapshot):
                return tool(**kwargs)

        return await asyncio.to_thread(sync_call)

    return call
