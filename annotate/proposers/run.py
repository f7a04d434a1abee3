"""The fine-tuned model as a proposer: ``run:ID``, a training run of the project.

It predicts the project's own classes (mapped by the class ids the run recorded, so a class
renamed since training keeps its proposals; by name for older runs) and, for a segmentation
run, its own masks, which are kept (``keeps_masks``): label a few, train, propose on the rest,
review, train again. Prediction lives in ``train.predict`` (imported lazily: importing the registry
loads no model).
"""

from __future__ import annotations

import numpy as np

from annotate.proposers.base import Proposer
from data.annotations import Annotations

# The run's own confidence floor; --min-score filters later.
RUN_CONF = 0.05


def predict_run(project, run_id: str, image: np.ndarray, device: str) -> Annotations:
    """The seam tests replace: the run's prediction with project class ids."""
    from train.predict import predict_annotations

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
        ann = predict_run(self.project, self.run_id, image, self.device)
        n = len(ann)
        ann.data["source"] = np.full(n, self.name, dtype=object)
        ann.data["status"] = np.full(n, "proposed", dtype=object)
        return ann
