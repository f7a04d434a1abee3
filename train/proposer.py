"""The fine-tuned model as a proposer: ``run:ID``, a training run of the project.

It predicts the project's own classes (mapped by the class ids the run recorded, so a class
renamed since training keeps its proposals; by name for older runs) and, for a segmentation
run, its own masks (kept as crops inside their boxes, ``keeps_masks``): label a few, train,
propose on the rest, review, train again.

This is the adapter from ``train`` to the ``annotate`` proposer interface: ``annotate`` never
imports ``train``; the wiring (``app.py``, ``ui.app``) calls :func:`register`, after which the
proposer registry builds ``run:ID`` names through :class:`RunProposerFactory`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from annotate.proposers.base import Proposer
from annotate.proposers.registry import register_factory
from data.annotations import Annotations
from data.errors import InputError
from runtime.status import ModelStatus
from train.predict import predict_annotations

# The run's own confidence floor; --min-score filters later.
RUN_CONF = 0.05


def predict_run(project, run_id: str, image: np.ndarray, device: str) -> Annotations:
    """The seam tests replace: the run's prediction with project class ids."""
    return predict_annotations(project, run_id, image, conf=RUN_CONF, device=device)


class RunProposer(Proposer):
    keeps_masks = True  # a detect run returns no masks at all: the segmenter draws them from the boxes
    predicts_classes = True

    def __init__(self, project, run_id: str, device: str = "cpu") -> None:
        self.project = project
        self.run_id = str(run_id)
        self.name = f"run:{self.run_id}"
        self.device = device

    def propose(self, image: np.ndarray, key: str) -> Annotations:
        """The run's detections on ``image`` as proposals named after it; a segmentation run's masks
        stay the crops the model produced (``Annotations.from_ultralytics``)."""
        ann = predict_run(self.project, self.run_id, image, self.device)
        n = len(ann)
        return ann.with_data({"source": np.full(n, self.name, dtype=object),
                              "status": np.full(n, "proposed", dtype=object)})


class RunProposerFactory:
    """Builds ``run:ID`` proposers for the registry of :mod:`annotate.proposers.registry`."""

    listed_as = "run:ID"

    def create(self, arg: str, *, project: Any, device: str) -> Proposer:
        if project is None:
            raise InputError(f"proposer 'run:{arg}' is a training run: give --project with the run.")
        return RunProposer(project, arg, device=device)

    def status(self, device: str) -> ModelStatus:
        return ModelStatus("run:ID", "proposer", "builtin", "-", "<project>/runs", device,
                           "any finished training run of the project")


def register() -> None:
    """Make ``run:ID`` a proposer name (idempotent)."""
    register_factory("run", RunProposerFactory())
