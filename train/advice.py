"""Before a run: whether its settings can learn; after it: whether it did.

:func:`check` looks at the project and the settings a user is about to train with and returns
what would keep the run from learning, each with the settings that fix it (the Train screen
offers them as one click, the CLI prints them as flags). Thresholds, stated:

- ``MIN_DONE_IMAGES`` labelled images: below it a model sees each defect kind too rarely.
- ``MIN_DEFECT_PX``: the smallest labelled defect, resized to the training image size, must
  stay at least this many pixels across (YOLO's finest feature map has a stride of 8, so a
  defect much smaller than a cell is a guess).
- From scratch (no pretrained weights), ``MIN_SCRATCH_EPOCHS`` epochs without a time budget:
  ``bench train`` needed about 20 epochs of 80 images in 15 minutes to reach mask mAP50 0.8 on
  the sample; a 5-epoch run ends with mAP 0.

:func:`learned` says whether a finished run learned anything (``LEARNED_MAP50``); a run that
did not is flagged in the runs table and in Predict, and is not picked as the demo model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from data.store import Project
from train.models import TrainSettings, resolve_base_model

MIN_DONE_IMAGES = 5
MIN_DEFECT_PX = 4
MIN_SCRATCH_EPOCHS = 100
SCRATCH_BUDGET_HOURS = 0.25  # what bench train gives a model from scratch on a 2-core laptop
MAX_IMGSZ = 1280
LEARNED_MAP50 = 0.05


@dataclass(frozen=True)
class Advice:
    problem: str  # what keeps the run from learning, and why
    change: dict[str, Any]  # settings that fix it (field -> value); empty when the fix is in the labels


def check(project: Project, s: TrainSettings) -> list[Advice]:
    """What would keep a run with settings ``s`` on ``project`` from learning (empty: nothing)."""
    out: list[Advice] = []
    done = [r for r in project.images("done")]
    sizes = []  # (smallest side of each accepted box, the image's longest side)
    for rec in done:
        ann = project.annotations(rec, statuses=("accepted",), with_masks=False)
        if len(ann):
            w, h = ann.xyxy[:, 2] - ann.xyxy[:, 0], ann.xyxy[:, 3] - ann.xyxy[:, 1]
            sizes += [(float(min(a, b)), float(max(rec.width, rec.height))) for a, b in zip(w, h, strict=True)]
    labelled = sum(1 for rec in done if len(project.annotations(rec, statuses=("accepted",), with_masks=False)))
    if labelled < MIN_DONE_IMAGES:
        out.append(Advice(f"only {labelled} done image{'s' * (labelled != 1)} with accepted defects: a model needs "
                          f"at least {MIN_DONE_IMAGES} (20 or more to be useful). Label more, or auto-label and review.",
                          {}))
    if sizes:
        side, longest = min(sizes, key=lambda v: v[0] / v[1])
        shrunk = side * s.imgsz / longest
        if shrunk < MIN_DEFECT_PX:
            need = min(MAX_IMGSZ, 32 * math.ceil(MIN_DEFECT_PX * 1.5 * longest / side / 32))
            fix = {"imgsz": need} if need > s.imgsz else {}
            out.append(Advice(f"the smallest labelled defect ({side:.0f} px on a {longest:.0f} px image) shrinks to "
                              f"{shrunk:.1f} px at image size {s.imgsz}, below the {MIN_DEFECT_PX} px a model can "
                              f"find" + (f"; image size {need} keeps it at {side * need / longest:.1f} px." if fix
                                         else "; even the largest image size cannot keep it."), fix))
    choice = resolve_base_model(s.model, s.task, s.weights_dir, allow_download=False)
    if not choice.pretrained and not s.time_hours and s.epochs < MIN_SCRATCH_EPOCHS:
        out.append(Advice(f"no pretrained weights for {s.model} in the weights folder, so unless Ultralytics "
                          f"downloads them this run trains from scratch, and {s.epochs} epochs are far too few "
                          f"for that; give it a time budget of {SCRATCH_BUDGET_HOURS * 60:.0f} minutes "
                          f"(up to 300 epochs).", {"time_hours": SCRATCH_BUDGET_HOURS, "epochs": 300}))
    return out


def recommended(s: TrainSettings, advice: list[Advice]) -> TrainSettings:
    """``s`` with every advised change applied."""
    change: dict[str, Any] = {}
    for a in advice:
        change.update(a.change)
    return replace(s, **change) if change else s


def flags(change: dict[str, Any]) -> str:
    """The CLI flags of a change (``--imgsz 640 --time-min 15``)."""
    parts = []
    for key, value in change.items():
        if key == "time_hours":
            parts.append(f"--time-min {value * 60:g}")
        else:
            parts.append(f"--{key.replace('_', '-')} {value}")
    return " ".join(parts)


def learned(metrics: dict[str, float]) -> bool | None:
    """Whether a finished run's final box or mask mAP50 reaches ``LEARNED_MAP50`` (None: no metrics)."""
    values = [v for k, v in metrics.items() if k in ("box_map50", "mask_map50")]
    if not values:
        return None
    return max(values) >= LEARNED_MAP50


NOT_LEARNED_HINT = (f"did not learn (box and mask mAP50 under {LEARNED_MAP50}): train longer (a time budget of "
                    f"{SCRATCH_BUDGET_HOURS * 60:.0f} minutes from scratch), at a larger image size if the defects "
                    f"are small, on more labelled images, or put pretrained weights in the weights folder")
