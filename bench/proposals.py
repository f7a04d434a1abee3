"""``python app.py bench proposals``: box recall and precision at IoU 0.5, mask mIoU of matches.

Protocol:
- Every image of ``--gt`` is scored, except, for the anomaly proposer, the references: the
  first ``--good`` images (in GT image id order, so the choice is deterministic) that have no
  ground-truth instance. Defect-free images that are not references are scored too: a
  proposal there is a false alarm and counts against precision.
- Matching is greedy by descending score: each proposal takes the unmatched ground-truth
  instance with the highest box IoU, if that IoU is at least 0.5 (``bench.coco_eval``). Proposers that predict
  classes are matched within each class (and reported per class); the anomaly proposer
  ignores classes.
- Mask mIoU is over matched proposals (the proposer's masks, or the segmenter's from the
  proposal's box when ``--segmenter`` is given and the proposer's masks are coarse).
- ``--min-score`` is a fixed input, never chosen on the scored images.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from annotate.autolabel import add_masks
from annotate.proposers.registry import DEFAULT_MIN_SCORE, create_proposer, is_anomaly
from annotate.segmenters.registry import create_segmenter
from bench.coco_eval import Scores, Tally
from data.annotations import Annotations
from data.coco import GroundTruthImage, read_ground_truth, read_rgb
from data.errors import InputError
from data.jsonout import dumps
from data.store import Project


@dataclass(frozen=True)
class ProposalBench:
    proposer: str
    segmenter: str | None
    images_scored: int
    references: list[str]
    min_score: float
    overall: Scores
    per_class: dict[str, Scores]
    images_per_s: float
    detect_s: float
    mask_s: float
    modes: dict[str, int] = field(default_factory=dict)  # e.g. anomaly alignment mode -> image count

    def to_json(self) -> str:
        return dumps(asdict(self))


# ------------------------------------------------------------------ ground truth
GtImage = GroundTruthImage


def load_gt(images_dir: str | Path, gt_path: str | Path) -> list[GtImage]:
    return read_ground_truth(images_dir, gt_path)


def choose_references(gt: list[GtImage], n: int) -> tuple[list[GtImage], list[GtImage]]:
    """(references, scored): the first ``n`` defect-free images by id are references."""
    free = [g for g in gt if len(g.boxes) == 0][:n]
    if len(free) < n:
        raise InputError(
            f"--good {n} asks for {n} defect-free reference images but the ground truth has {len(free)}; "
            "lower --good."
        )
    ids = {g.id for g in free}
    return free, [g for g in gt if g.id not in ids]


# ------------------------------------------------------------------ matching
def _tally(t: Tally, g: GtImage, gi: np.ndarray, props: Annotations, pi: np.ndarray) -> None:
    """Score the proposals ``pi`` of one image against its ground-truth instances ``gi``."""
    def mask_of(p: int) -> np.ndarray:
        return props.full_mask(int(pi[p]))  # a box-only proposal: its filled box

    t.add(g.boxes[gi], g.labels[gi].full_masks(), props.xyxy[pi], props.confidence[pi], mask_of)


# ------------------------------------------------------------------ the run
def bench_proposals(
    images_dir: str | Path,
    gt_path: str | Path,
    proposer_name: str,
    good: int = 5,
    min_score: float | None = None,
    segmenter_name: str | None = None,
    weights_dir: str | None = None,
    device: str = "auto",
    project: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ProposalBench:
    gt = load_gt(images_dir, gt_path)
    class_names = sorted({c for g in gt for c in g.classes})
    anomaly = is_anomaly(proposer_name)
    if anomaly:
        refs, scored = choose_references(gt, good)
        proposer = create_proposer(
            proposer_name, references=[read_rgb(r.path) for r in refs], class_id=0, device=device,
            weights_dir=weights_dir,
        )
    else:
        refs, scored = [], gt
        vocabulary = {i + 1: (name,) for i, name in enumerate(class_names)}
        proposer = create_proposer(
            proposer_name, vocabulary=vocabulary, weights_dir=weights_dir, device=device, project=project
        )
    segmenter = None
    if segmenter_name:
        segmenter = create_segmenter(segmenter_name, weights=weights_dir, device=device)
    min_score = DEFAULT_MIN_SCORE.get(proposer_name.split("-")[0].split(":")[0], 0.0) if min_score is None else min_score
    id_to_name = _id_to_name(proposer_name, class_names, project)

    overall = Tally()
    per_class = {c: Tally() for c in class_names}
    detect_s = mask_s = 0.0
    modes: dict[str, int] = {}
    t_start = time.perf_counter()
    for i, g in enumerate(scored):
        image = read_rgb(g.path)
        t0 = time.perf_counter()
        props = proposer.propose(image, key=f"bench:{g.id}")
        props = props.filter(props.confidence >= min_score)
        detect_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        props = add_masks(props, image, f"bench:{g.path.name}", segmenter, proposer.keeps_masks)
        mask_s += time.perf_counter() - t0
        mode = getattr(getattr(proposer, "model", None), "last_mode", "")
        if mode:
            key = mode.split(" (")[0]
            modes[key] = modes.get(key, 0) + 1
        all_g = np.arange(len(g.boxes))
        all_p = np.arange(len(props))
        if anomaly:
            _tally(overall, g, all_g, props, all_p)
        else:
            names = np.array([id_to_name.get(int(c), "?") for c in props.class_id], dtype=object)
            gcls = np.array(g.classes, dtype=object)
            for c in class_names:
                _tally(per_class[c], g, all_g[gcls == c], props, all_p[names == c])
        if progress is not None:
            progress(i + 1, len(scored))
    elapsed = time.perf_counter() - t_start
    if not anomaly:
        overall = Tally.merged(list(per_class.values()))
    return ProposalBench(
        proposer=getattr(proposer, "name", proposer_name),
        segmenter=segmenter_name,
        images_scored=len(scored),
        references=[r.path.name for r in refs],
        min_score=float(min_score),
        overall=overall.scores(),
        per_class={} if anomaly else {c: t.scores() for c, t in per_class.items()},
        images_per_s=len(scored) / elapsed if elapsed > 0 else float("nan"),
        detect_s=detect_s,
        mask_s=mask_s,
        modes=modes,
    )


def _id_to_name(name: str, class_names: list[str], project: str | None) -> dict[int, str]:
    if name.startswith("run:") and project:
        return Project(project).class_names()
    return {i + 1: c for i, c in enumerate(class_names)}


def format_report(r: ProposalBench) -> str:
    def row(label: str, s: Scores) -> str:
        return (
            f"{label:<16} {s.n_gt:>5} {s.n_proposals:>6} {s.n_matched:>6} "
            f"{s.recall:>7.3f} {s.precision:>9.3f} {s.mask_miou:>9.3f}"
        )

    lines = [
        f"proposer {r.proposer}" + (f", masks from segmenter {r.segmenter}" if r.segmenter else "")
        + f", min score {r.min_score:g}, {r.images_scored} images scored",
    ]
    if r.references:
        lines.append(f"references (not scored): {', '.join(r.references)}")
    if r.modes:
        lines.append("alignment: " + ", ".join(f"{k}: {v} images" for k, v in sorted(r.modes.items())))
    lines.append(f"{'':<16} {'gt':>5} {'props':>6} {'match':>6} {'recall':>7} {'precision':>9} {'mask mIoU':>9}")
    lines.append(row("overall", r.overall))
    for c, s in r.per_class.items():
        lines.append(row(c, s))
    lines.append(
        f"throughput: {r.images_per_s:.2f} images/s (detection {r.detect_s:.1f} s, masks {r.mask_s:.1f} s)"
    )
    return "\n".join(lines)
