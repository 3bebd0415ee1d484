"""Self-contained HTML viewer for RLM trajectories (``rlm view TRACE.jsonl``).

No server, no network, no build step: one HTML file with the CSS, JS and trace inlined.
"""

from rlm_engine.viewer.render import build_payload, embed_json, render_html, write_html
from rlm_engine.viewer.trace import Trace, TraceError, load_trace

__all__ = [
    "Trace",
    "TraceError",
    "build_payload",
    "embed_json",
    "load_trace",
    "render_html",
    "write_html",
]
