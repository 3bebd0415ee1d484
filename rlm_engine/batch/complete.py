"""One row of a batch, run to a :class:`RowResult` wherever it runs (this process or a
Ray worker): the same code in both executors, so their results are identical.

It is ``RLM.acompletion`` with ready clients: they are made here from the config, wrapped
in the batch's shared rate limiter and given to the RLM as its backends (the config
otherwise unchanged). Any exception becomes the row's error result.
"""

from __future__ import annotations

import time
from typing import Any

from rlm_engine.batch.results import RowResult
from rlm_engine.batch.rows import BatchRow
from rlm_engine.clients.configured import make_clients
from rlm_engine.clients.rate_limit import RateLimitedClient, RateLimiter
from rlm_engine.config import RLMConfig
from rlm_engine.inputs import check_material
from rlm_engine.rlm import RLM

_UNSET: Any = object()


def limited_config(config: RLMConfig, limiter: RateLimiter | None) -> RLMConfig:
    """``config`` with its clients made now and wrapped in ``limiter`` (unchanged without
    one). The clients carry their model names, so the config's names are cleared."""
    if limiter is None:
        return config
    root, sub = make_clients(config)
    wrapped_root = RateLimitedClient(root, limiter)
    wrapped_sub = wrapped_root if sub is root else RateLimitedClient(sub, limiter)
    return config.replace(
        backend=wrapped_root,
        sub_backend=wrapped_sub,
        model=None,
        sub_model=None,
        backend_kwargs=None,
        sub_backend_kwargs=None,
    )


async def complete_row(
    row: BatchRow,
    config: RLMConfig,
    limiter: RateLimiter | None = None,
    *,
    context: Any = _UNSET,
) -> RowResult:
    """Answer ``row`` with a completion of ``config``; never raises for a row's failure.

    ``context`` overrides the row's own (the Ray executor passes it from the object store).
    """
    started = time.monotonic()
    try:
        material = row.load_context() if context is _UNSET else context
        check_material(material, row.query)
        res = await RLM(limited_config(config, limiter)).acompletion(material, row.query)
    except Exception as e:  # a failed row is a result; the batch goes on
        return RowResult.failed(row, e, time.monotonic() - started)
    return RowResult.of(row, res, time.monotonic() - started)


__all__ = ["complete_row", "limited_config"]
