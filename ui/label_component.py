"""The Label screen as a ``gr.HTML`` programmable component: a canvas plus one server function.

The page calls ``server.api(token, method, *args)``; the call runs outside Gradio's queue
(about 13-30 ms of overhead instead of 115-190 ms for an event), so the token is what ties it
to the page's :class:`~ui.sessions.LabelSession`. Only whitelisted methods are reachable.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import gradio as gr

from ui.label_api import LabelService, safe_call

_STATIC = Path(__file__).with_name("static")

# page method -> LabelService method; nothing else is callable from the browser
METHODS = ("boot", "open_image", "prompt", "choose", "clear", "accept", "undo", "delete", "set_class", "review",
           "edit", "set_image_status", "stroke", "polygon", "polygon_of")


def dispatch(service: LabelService, args: Any) -> dict[str, Any]:
    """One server-function call: ``[token, method, *params]`` -> JSON-able dict (errors as ``{"error"}``)."""
    if not isinstance(args, list) or len(args) < 2 or args[1] not in METHODS:
        return {"error": "unknown request; reload the page."}
    token, method, *params = args
    fn = getattr(service, method)
    try:
        inspect.signature(fn).bind(token, *params)
    except TypeError:
        return {"error": f"wrong arguments for {method}; reload the page."}
    return safe_call(fn, token, *params)


def page_value(token: str, open_image: int | None = None, rev: int = 0) -> str:
    """The component's value: what the page needs to start (its token) or to jump to an image."""
    return json.dumps({"token": token, "open": open_image, "rev": rev})


def label_canvas(service: LabelService) -> gr.HTML:
    def api(args: list) -> dict[str, Any]:
        return dispatch(service, args)

    return gr.HTML(
        value="",
        html_template=(_STATIC / "label.html").read_text(),
        css_template=(_STATIC / "label.css").read_text(),
        js_on_load=(_STATIC / "label.js").read_text(),
        server_functions=[api],
        elem_id="ds-label",
        apply_default_css=False,
    )
