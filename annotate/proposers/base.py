"""The proposer interface every backend implements.

A proposer looks at a whole image and returns candidate defects as
:class:`data.annotations.Annotations` with status ``proposed``, the proposer's
registry name as ``source`` and a score in ``confidence``. Masks are optional:
a trained segmentation run gives its own; otherwise the segmenter turns each box
into a mask during auto-label (:mod:`annotate.autolabel`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from data.annotations import Annotations


class Proposer(ABC):
    """Whole-image defect proposals. Implementations own their lock if they share a model."""

    #: registry name, stored as each proposal's ``source``
    name: str = ""
    #: "cuda", "mps" or "cpu"
    device: str = "cpu"
    #: True when the proposer's masks are better than a segmenter's from the box (a trained
    #: segmentation model); False when they are coarse and a segmenter, if given, replaces them.
    keeps_masks: bool = False
    #: True when the proposer predicts project classes itself (benchmarks score per class)
    predicts_classes: bool = True

    @abstractmethod
    def propose(self, image: np.ndarray, key: str) -> Annotations:
        """Proposals on an RGB uint8 ``(H, W, 3)`` image whose content hash is ``key``.

        Boxes are XYXY in original pixels; ``class_id`` are project class ids;
        ``confidence`` in 0..1; ``mask`` is ``(N, H, W)`` bool or ``None``.
        """
