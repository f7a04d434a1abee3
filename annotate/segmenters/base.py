"""The segmenter interface every backend implements.

Like ``SamPredictor``: an image is set once (keyed by its content hash, so the
embedding is computed once and cached) and any number of prompts follow.
NumPy in, NumPy out, coordinates in original image pixels.

Thread safety: a segmenter is shared by every session of the server. It owns a
lock; ``predict`` takes the image key, so one session's image can never leak into
another session's prediction even when their calls interleave.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Prompt:
    """A prompt in original image pixels.

    - ``points``: ``(K, 2)`` float ``(x, y)``; ``labels``: ``(K,)`` int, 1 positive, 0 negative.
    - ``box``: ``(4,)`` XYXY or ``None``.
    - ``mask_input``: the previous prediction's ``low_res`` logits for the chosen
      candidate (``(1, 256, 256)`` for SAM), or ``None``.
    - ``prev_mask``: the previous chosen full-resolution mask (bool ``(H, W)``), or ``None``;
      backends without low-res logits (the weight-free one) refine from it.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    box: np.ndarray | None = None
    mask_input: np.ndarray | None = None
    prev_mask: np.ndarray | None = None

    @classmethod
    def make(
        cls,
        points: list | np.ndarray | None = None,
        labels: list | np.ndarray | None = None,
        box: list | np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        prev_mask: np.ndarray | None = None,
    ) -> Prompt:
        pts = np.asarray(points if points is not None else [], dtype=np.float32).reshape(-1, 2)
        lbl = np.asarray(labels if labels is not None else [1] * len(pts), dtype=np.int64).reshape(-1)
        if len(lbl) != len(pts):
            raise ValueError(f"{len(pts)} points but {len(lbl)} labels")
        bx = None if box is None else np.asarray(box, dtype=np.float32).reshape(4)
        return cls(pts, lbl, bx, mask_input, prev_mask)

    @property
    def is_empty(self) -> bool:
        return len(self.points) == 0 and self.box is None


@dataclass(frozen=True)
class Prediction:
    """Candidate masks, best first.

    - ``masks``: ``(C, H, W)`` bool at full image resolution, 1 <= C <= 3.
    - ``scores``: ``(C,)`` float, higher is better (SAM's predicted IoU for SAM backends).
    - ``low_res``: ``(C, 1, 256, 256)`` float logits to feed back as ``Prompt.mask_input``, or ``None``.
    - ``ms``: time spent in ``predict`` in milliseconds.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res: np.ndarray | None = None
    ms: float = 0.0


class Segmenter(ABC):
    """Turns prompts on an image into candidate masks."""

    #: registry name, stored as an annotation's ``source``
    name: str = ""
    #: "cuda", "mps" or "cpu"
    device: str = "cpu"
    #: True for the weight-free fallback (the UI and CLI say so)
    is_fallback: bool = False

    @abstractmethod
    def set_image(self, image: np.ndarray, key: str) -> None:
        """Prepare an RGB uint8 ``(H, W, 3)`` image under ``key`` (its content hash).

        Computes the embedding unless it is cached (memory, then disk); safe to call
        again for the same key at no cost.
        """

    @abstractmethod
    def predict(self, key: str, prompt: Prompt, multimask: bool | None = None) -> Prediction:
        """Candidate masks for ``prompt`` on the image set under ``key``.

        ``multimask=None`` means: three candidates for a single point, otherwise the best one
        (SAM's own advice). Raises ``KeyError`` if ``key`` was never set.
        """

    def is_ready(self, key: str) -> bool:
        """Whether ``key``'s embedding is cached (predict will not encode)."""
        return False
