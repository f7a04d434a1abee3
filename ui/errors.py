"""The one place where the domain's typed errors become what Gradio shows the user."""

from __future__ import annotations

import gradio as gr

from data.errors import StudioError


def user_error(err: StudioError) -> gr.Error:
    """A ``StudioError`` (its message already says what was wrong and how to fix it) as a ``gr.Error``."""
    return gr.Error(str(err))
