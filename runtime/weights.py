"""Where model weight files live, how they are checked, and which device runs them.

Generic on purpose: segmenters, proposers (YOLO-World, CLIP) and training (YOLO base weights)
all describe their files with a :class:`WeightSpec` and find them with :func:`find_weights`.

- The weights folder is ``--weights-dir``, else the environment variable
  ``DEFECT_STUDIO_WEIGHTS``, else the user's data folder
  (``~/.local/share/defect-studio/weights`` on Linux, ``~/Library/Application Support/...``
  on macOS, ``%LOCALAPPDATA%\\defect-studio\\weights`` on Windows).
- A file that is present is checked (size floor, and SHA-256 when the spec has one); a file
  that fails is reported as corrupt, naming the file.
- A file Ultralytics knows how to download (its GitHub release assets) is fetched by
  Ultralytics itself into the folder when missing; offline that fails fast and becomes a
  :class:`WeightsMissingError`, never a traceback.

Nothing heavy is imported at module import time (``python app.py --help`` stays fast).
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from data.errors import ModelUnavailableError, WeightsMissingError

ENV_WEIGHTS = "DEFECT_STUDIO_WEIGHTS"
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class WeightSpec:
    """One weight file a model needs.

    - ``filename``: the file's name inside the weights folder.
    - ``min_bytes``: anything smaller is a truncated download (corrupt).
    - ``sha256``: the expected digest, or ``None`` when not pinned (size check only).
    - ``downloadable_by_ultralytics``: Ultralytics' ``attempt_download_asset`` can fetch it.
    - ``url_hint``: where a user can download it by hand.
    """

    filename: str
    min_bytes: int
    sha256: str | None = None
    downloadable_by_ultralytics: bool = False
    url_hint: str = ""


def user_data_dir() -> Path:
    """The platform's per-user data folder for this app."""
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "defect-studio"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "defect-studio"
    return Path(os.environ.get("XDG_DATA_HOME", home / ".local" / "share")) / "defect-studio"


def weights_dir(arg: str | os.PathLike | None = None) -> Path:
    """The weights folder: the flag, else ``$DEFECT_STUDIO_WEIGHTS``, else the user data folder."""
    if arg:
        return Path(arg).expanduser()
    env = os.environ.get(ENV_WEIGHTS)
    if env:
        return Path(env).expanduser()
    return user_data_dir() / "weights"


def resolve_device(name: str | None = "auto") -> str:
    """``"cuda"`` / ``"mps"`` / ``"cpu"``; ``auto`` picks the fastest available.

    An explicitly requested device that is not available raises :class:`ModelUnavailableError`.
    """
    name = (name or "auto").lower()
    if name not in DEVICES:
        raise ModelUnavailableError(f"unknown device '{name}': use one of {', '.join(DEVICES)}")
    if name == "cpu":
        return "cpu"
    import torch  # deferred: only when a model is about to run

    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda" and not cuda:
        raise ModelUnavailableError("device 'cuda' requested but no CUDA GPU is available here; use --device cpu or auto")
    if name == "mps" and not mps:
        raise ModelUnavailableError("device 'mps' requested but Apple MPS is not available here; use --device cpu or auto")
    return name


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_file(spec: WeightSpec, path: Path, verify_hash: bool = True) -> str | None:
    """Why ``path`` is not a usable copy of ``spec`` (``None`` when it is)."""
    size = path.stat().st_size
    if size < spec.min_bytes:
        return f"corrupt: {size} bytes, expected at least {spec.min_bytes} (a truncated download?)"
    if verify_hash and spec.sha256:
        digest = sha256_of(path)
        if digest != spec.sha256:
            return f"corrupt: SHA-256 {digest[:12]}... does not match the expected {spec.sha256[:12]}..."
    return None


def weight_state(spec: WeightSpec, folder: Path) -> tuple[str, str]:
    """``(state, note)`` without downloading: found / corrupt / downloadable / missing.

    The hash is not computed here (listing models must stay instant); ``find_weights`` does.
    """
    path = folder / spec.filename
    if path.is_file():
        problem = check_file(spec, path, verify_hash=False)
        return ("corrupt", problem) if problem else ("found", "")
    if spec.downloadable_by_ultralytics:
        return "downloadable", "Ultralytics downloads it on first use when online"
    return "missing", spec.url_hint


def find_weights(spec: WeightSpec, folder: Path, model: str = "", download: bool = True) -> Path:
    """The checked path of ``spec`` in ``folder``, downloading it with Ultralytics if allowed.

    Raises :class:`WeightsMissingError` (naming the file and the folder) when the file is
    absent and cannot be fetched, or present but corrupt.
    """
    folder = Path(folder)
    model = model or spec.filename
    path = folder / spec.filename
    if not path.is_file() and spec.downloadable_by_ultralytics and download:
        _ultralytics_download(spec, folder, model)
    if not path.is_file():
        detail = f"get it from {spec.url_hint}" if spec.url_hint else ""
        raise WeightsMissingError(model, spec.filename, str(folder), detail)
    problem = check_file(spec, path)
    if problem:
        raise WeightsMissingError(model, spec.filename, str(folder), f"{problem}; delete it and fetch it again",
                                  corrupt=True)
    return path


def _ultralytics_download(spec: WeightSpec, folder: Path, model: str) -> None:
    """Let Ultralytics fetch a release asset into ``folder``; offline becomes WeightsMissingError."""
    try:
        from ultralytics.utils.downloads import attempt_download_asset
    except ImportError as err:
        raise ModelUnavailableError(f"{model}: ultralytics is not installed ({err})") from err
    try:
        folder.mkdir(parents=True, exist_ok=True)
        attempt_download_asset(str(folder / spec.filename))
    # Any download failure (offline ConnectionError, HTTP error, a disk problem) is the same
    # thing to the user: the file is not there. Say which file and where it belongs.
    except Exception as err:  # noqa: BLE001
        raise WeightsMissingError(
            model, spec.filename, str(folder), f"automatic download failed: {str(err).splitlines()[0][:160]}"
        ) from err
