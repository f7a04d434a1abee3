"""Typed errors shared by every layer.

Domain code raises these; the CLI prints ``str(err)`` as a one-line reason and
the UI turns them into ``gr.Error`` in one place. Each message says what was
wrong and how to fix it.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class ProjectError(StudioError):
    """The project folder or its database is missing, locked or invalid."""


class InputError(StudioError):
    """A file, flag or value given by the user cannot be used."""


class NotFoundError(StudioError):
    """An image, class, annotation or run id does not exist."""


class WeightsMissingError(StudioError):
    """A model's weight file is not present (or is corrupt) and cannot be downloaded."""

    def __init__(self, model: str, filename: str, folder: str, detail: str = "", corrupt: bool = False) -> None:
        self.model = model
        self.filename = filename
        self.folder = folder
        what = "is unusable" if corrupt else "not found"
        msg = (
            f"{model}: weight file '{filename}' {what} in {folder}. "
            f"Download it and put it in that folder, or pass --weights-dir "
            f"(or set DEFECT_STUDIO_WEIGHTS)."
        )
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class ModelUnavailableError(StudioError):
    """A model cannot run here (missing package, unsupported device)."""


class CancelledError(StudioError):
    """A long job was cancelled by the user."""
