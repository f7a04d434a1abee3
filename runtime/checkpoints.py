"""Loading checkpoints so that nothing but tensors and known model classes is rebuilt.

A ``.pt`` file is a pickle: loaded the default way it can run any code it names. Every
checkpoint the app reads goes through one of three doors here:

- :func:`enable_safe_yolo` turns on Ultralytics' allow-list loading (``ULTRALYTICS_SAFE_LOAD``,
  read once when ultralytics is imported, and the flag of an already imported ultralytics),
  so ``YOLO(path)`` rebuilds only known Ultralytics / torch model classes. Call it before
  ultralytics is imported in every process (``app.py`` and the training worker do).
  :func:`load_yolo` builds a ``YOLO`` from a file that way and names a refused file.
- :func:`state_dict` reads a SAM-family checkpoint (segment-anything, MobileSAM, SAM 2.1,
  SAM 3) with ``torch.load(weights_only=True)``: tensors and plain containers only. The
  builders get the state dict, never the file (theirs unpickle freely).
- :func:`load_torchscript` loads a TorchScript archive with ``torch.jit.load`` (never
  through pickle), after checking its SHA-256 when the publisher gives one.

A file that needs anything else raises :class:`UnsafeCheckpointError`, which names the file
and says it was not loaded. :func:`verify` checks recorded hashes (:func:`runtime.weights.sha256_of`)
(a run's checkpoints are hashed when the run ends and checked before they are loaded).
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

from data.errors import InputError, StudioError
from runtime.weights import sha256_of

SAFE_ENV = "ULTRALYTICS_SAFE_LOAD"


class UnsafeCheckpointError(StudioError):
    """A checkpoint holds objects outside the allowed set (possibly code), or is not the file recorded."""

    def __init__(self, path: str | Path, detail: str = "", changed: bool = False) -> None:
        self.path = str(path)
        if changed:
            msg = (f"{self.path} is not the file that was recorded or published, and was not loaded. Use the file "
                   f"from the model's publisher, or train the run again.")
        else:
            msg = (f"{self.path} holds objects outside the allowed set (tensors and known model classes), possibly "
                   f"code, and was not loaded. Use a checkpoint from the model's publisher or one this app trained.")
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


def enable_safe_yolo() -> None:
    """Allow-list loading for every Ultralytics checkpoint in this process (and its children)."""
    os.environ[SAFE_ENV] = "1"
    tasks = sys.modules.get("ultralytics.nn.tasks")
    if tasks is not None:  # imported already: its flag was read at import time
        tasks.SAFE_LOAD = True  # type: ignore[attr-defined]



def _refused(err: BaseException | None) -> bool:
    """Whether ``err`` (or an error it was raised from) is a weights-only load refusing a global it
    names; a damaged file fails otherwise ("invalid load key", "Unsupported operand")."""
    seen = 0
    while err is not None and seen < 8:
        if "Unsupported global" in str(err) or re.search(r"GLOBAL [\w.]+", str(err)):
            return True
        err, seen = err.__cause__ or err.__context__, seen + 1
    return False


def _global_named(err: BaseException) -> str:
    """"it names posix.system" from torch's refusal, or "" when it names none."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    return f"it names {found.group(1)}" if found else ""


def load_yolo(path: str | Path, task: str | None = None, kind: str = "YOLO") -> Any:
    """``ultralytics.YOLO(path)`` (or ``kind``, e.g. ``"YOLOWorld"``) with allow-list loading; a
    ``.yaml`` builds the architecture."""
    enable_safe_yolo()
    import ultralytics

    model_class = getattr(ultralytics, kind)
    try:
        return model_class(str(path), task=task) if task else model_class(str(path))
    except (TypeError, pickle.UnpicklingError, RuntimeError) as err:
        if _refused(err):
            raise UnsafeCheckpointError(path, _global_named(err.__cause__ or err)) from err
        raise


def state_dict(path: str | Path) -> dict[str, Any]:
    """The tensors of a SAM-family checkpoint (a state dict, or one under ``"model"``), read weights-only."""
    import torch

    try:
        with open(path, "rb") as f:
            data = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if _refused(err):
            raise UnsafeCheckpointError(path, _global_named(err)) from err
        raise  # damaged, not refused: the caller names the file as corrupt
    if isinstance(data, dict) and isinstance(data.get("model"), dict):
        data = data["model"]
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise InputError(f"{path} is not a state dict (a mapping of parameter names to tensors).")
    return data



def verify(path: str | Path, expected: str | None) -> None:
    """Refuse ``path`` unless its SHA-256 is ``expected`` (None: nothing recorded, nothing checked)."""
    if expected and sha256_of(Path(path)) != expected:
        raise UnsafeCheckpointError(path, f"its SHA-256 is not the one recorded ({expected[:12]}...): the file was "
                                          f"changed after it was written", changed=True)


def load_torchscript(path: str | Path, sha256: str | None = None, device: str = "cpu") -> Any:
    """A TorchScript archive through ``torch.jit.load`` (no pickle), hash-checked when ``sha256`` is given."""
    import torch

    verify(path, sha256)
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError as err:
        raise UnsafeCheckpointError(path, "not a TorchScript archive; only TorchScript is loaded for this file") \
            from err
