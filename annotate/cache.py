"""Embedding caches: an in-memory LRU bounded by bytes, backed by files in the project.

An embedding is a dict of tensors / arrays / small tuples (what a segmenter needs to answer
prompts without its encoder). It is keyed by the model's registry name and the image's
content hash, so revisiting an image or restarting the app never re-encodes it:

    <project>/cache/embeddings/<model>/<key>.pt

Files are written atomically (temp file + ``os.replace``), so a crash never leaves a half
file; an unreadable file is treated as a miss and overwritten. The cache has its own lock:
it is shared by the segmenter's callers and its background encoder.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB: about 256 SAM ViT embeddings (4 MiB each)
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def embeddings_dir(project_dir: str | os.PathLike) -> Path:
    """Where a project keeps its embeddings."""
    return Path(project_dir) / "cache" / "embeddings"


def nbytes(value: Any) -> int:
    """Approximate memory of an embedding (tensors, arrays, nested containers)."""
    if hasattr(value, "element_size") and hasattr(value, "nelement"):  # torch.Tensor
        return int(value.element_size() * value.nelement())
    if hasattr(value, "nbytes"):  # numpy
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes(v) for v in value)
    return 64


def _file_stem(key: str) -> str:
    """A file-system-safe name for ``key`` (content hashes pass through unchanged)."""
    if _SAFE.match(key):
        return key
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Memory LRU (``max_bytes``) in front of an optional disk folder for one model."""

    def __init__(self, model: str, max_bytes: int = DEFAULT_MAX_BYTES, disk_dir: str | os.PathLike | None = None):
        self.model = model
        self.max_bytes = int(max_bytes)
        self.disk_dir = Path(disk_dir) / _file_stem(model) if disk_dir else None
        self._mem: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.disk_hits = 0
        self.misses = 0

    # ----------------------------------------------------------------- access
    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._mem.get(key)
            if item is not None:
                self._mem.move_to_end(key)
                self.hits += 1
                return item[0]
        value = self._load(key)
        if value is None:
            with self._lock:
                self.misses += 1
            return None
        with self._lock:
            self.disk_hits += 1
        self._remember(key, value)
        return value

    def put(self, key: str, value: Any, persist: bool = True) -> None:
        self._remember(key, value)
        if persist:
            self._save(key, value)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            if key in self._mem:
                return True
        return self.disk_dir is not None and self._path(key).is_file()

    def in_memory(self, key: str) -> bool:
        with self._lock:
            return key in self._mem

    @property
    def memory_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def clear_memory(self) -> None:
        with self._lock:
            self._mem.clear()
            self._bytes = 0

    # --------------------------------------------------------------- internals
    def _remember(self, key: str, value: Any) -> None:
        size = nbytes(value)
        with self._lock:
            old = self._mem.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return  # larger than the whole budget: disk only
            self._mem[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._mem:
                _, (_, s) = self._mem.popitem(last=False)
                self._bytes -= s

    def _path(self, key: str) -> Path:
        assert self.disk_dir is not None
        return self.disk_dir / f"{_file_stem(key)}.pt"

    def _save(self, key: str, value: Any) -> None:
        if self.disk_dir is None:
            return
        import torch

        self.disk_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.disk_dir, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(_to_cpu(value), f)
            os.replace(tmp, self._path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load(self, key: str) -> Any | None:
        if self.disk_dir is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        import torch

        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        # A truncated or foreign file is a miss: it is re-encoded and overwritten.
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError):
            return None


def _to_cpu(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value
