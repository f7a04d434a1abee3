"""The one annotation container passed between every layer.

Modelled on ``supervision.Detections``: parallel arrays plus a ``data`` dict of
per-annotation extras. Adapters at the edges (SAM, Ultralytics, the store, the
file formats) build it through named constructors; nothing downstream sees a raw
model result.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from data.geometry import masks_to_boxes

Status = Literal["proposed", "accepted", "rejected"]
STATUSES: tuple[str, ...] = ("proposed", "accepted", "rejected")

# Extras every container carries, one value per annotation.
_DEFAULT_DATA: dict[str, tuple[Any, Any]] = {
    "id": (np.int64, 0),  # store id, 0 when not stored yet
    "source": (object, "manual"),  # registry name of what produced it
    "status": (object, "accepted"),
}


@dataclass
class Annotations:
    """N annotations on one image of size ``(height, width)``.

    - ``xyxy``: ``(N, 4)`` float32 boxes in pixels, far edge exclusive.
    - ``mask``: ``(N, H, W)`` bool, or ``None`` for box-only annotations.
    - ``class_id``: ``(N,)`` int64 project class ids (store ids, not indices).
    - ``confidence``: ``(N,)`` float32, ``nan`` where not applicable (manual).
    - ``data``: per-annotation arrays: ``id``, ``source``, ``status`` and any extras.
    """

    xyxy: np.ndarray
    class_id: np.ndarray
    confidence: np.ndarray
    mask: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(n)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(n)
        if self.mask is not None:
            self.mask = np.asarray(self.mask, dtype=bool)
            if self.mask.ndim != 3 or len(self.mask) != n:
                raise ValueError(f"mask must be (N, H, W) with N={n}, got {self.mask.shape}")
        for key, (dtype, default) in _DEFAULT_DATA.items():
            if key not in self.data:
                self.data[key] = np.full(n, default, dtype=dtype)
        for key, values in self.data.items():
            arr = np.asarray(values, dtype=object if _is_text(values) else None)
            if len(arr) != n:
                raise ValueError(f"data[{key!r}] has {len(arr)} values for {n} annotations")
            self.data[key] = arr

    # ----------------------------------------------------------- constructors
    @classmethod
    def empty(cls, height: int | None = None, width: int | None = None) -> Annotations:
        mask = np.zeros((0, height, width), dtype=bool) if height and width else None
        return cls(xyxy=np.zeros((0, 4)), class_id=[], confidence=[], mask=mask)

    @classmethod
    def from_masks(
        cls,
        masks: np.ndarray,
        class_id: int | np.ndarray,
        confidence: float | np.ndarray = np.nan,
        source: str = "manual",
        status: Status = "accepted",
    ) -> Annotations:
        """Masks ``(N, H, W)`` -> container with boxes derived from the masks."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim == 2:
            masks = masks[None]
        n = len(masks)
        return cls(
            xyxy=masks_to_boxes(masks),
            mask=masks,
            class_id=np.broadcast_to(np.asarray(class_id, dtype=np.int64), (n,)).copy(),
            confidence=np.broadcast_to(np.asarray(confidence, dtype=np.float32), (n,)).copy(),
            data={
                "source": np.full(n, source, dtype=object),
                "status": np.full(n, status, dtype=object),
            },
        )

    @classmethod
    def from_boxes(
        cls,
        xyxy: np.ndarray,
        class_id: np.ndarray,
        confidence: np.ndarray,
        source: str,
        status: Status = "proposed",
    ) -> Annotations:
        xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        return cls(
            xyxy=xyxy,
            class_id=class_id,
            confidence=confidence,
            data={"source": np.full(n, source, dtype=object), "status": np.full(n, status, dtype=object)},
        )

    @classmethod
    def merge(cls, items: list[Annotations]) -> Annotations:
        items = [a for a in items if len(a)] or items[:1]
        if not items:
            return cls.empty()
        if len(items) == 1:
            return items[0]
        masks = None
        if all(a.mask is not None for a in items):
            masks = np.concatenate([a.mask for a in items])
        elif any(a.mask is not None for a in items):
            raise ValueError("cannot merge annotations with and without masks")
        keys = set().union(*(a.data.keys() for a in items))
        data = {}
        for k in keys:
            if not all(k in a.data for a in items):
                continue
            data[k] = np.concatenate([np.asarray(a.data[k], dtype=object) if _is_text(a.data[k]) else a.data[k] for a in items])
        return cls(
            xyxy=np.concatenate([a.xyxy for a in items]),
            class_id=np.concatenate([a.class_id for a in items]),
            confidence=np.concatenate([a.confidence for a in items]),
            mask=masks,
            data=data,
        )

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray | list) -> Annotations:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Annotations(
            xyxy=self.xyxy[index],
            class_id=self.class_id[index],
            confidence=self.confidence[index],
            mask=None if self.mask is None else self.mask[index],
            data={k: v[index] for k, v in self.data.items()},
        )

    def __iter__(self) -> Iterator[Annotations]:
        for i in range(len(self)):
            yield self[i]

    @property
    def area(self) -> np.ndarray:
        """Mask pixel counts, or box areas for box-only annotations."""
        if self.mask is not None:
            return self.mask.reshape(len(self), -1).sum(1).astype(np.float64)
        wh = (self.xyxy[:, 2:] - self.xyxy[:, :2]).clip(0)
        return wh.prod(1).astype(np.float64)

    @property
    def ids(self) -> np.ndarray:
        return self.data["id"]

    @property
    def source(self) -> np.ndarray:
        return self.data["source"]

    @property
    def status(self) -> np.ndarray:
        return self.data["status"]

    def with_status(self, status: Status) -> Annotations:
        out = self[np.arange(len(self))]
        out.data["status"] = np.full(len(out), status, dtype=object)
        return out

    def filter(self, keep: np.ndarray) -> Annotations:
        return self[np.asarray(keep, dtype=bool)]


def _is_text(values: Any) -> bool:
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    return arr.dtype == object or arr.dtype.kind in "US"
