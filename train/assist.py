"""Assist: a model that keeps proposing while the user labels.

Before the first model, once :data:`ANOMALY_MIN_GOOD` images are marked good, the anomaly
proposer (fitted on them) proposes on the images not yet done, in the class the user labelled
most. A round, once at least :data:`MIN_DONE` images are done and :data:`NEW_DONE` more since the
last round: train in the background on the project's snapshot (one CPU thread and a low
priority, so clicks stay quick), warm-started from the latest round, for a short budget; measure
on the round's validation images what its proposals would save the user
(:mod:`train.assist_eval`: right ones reviewed instead of drawn, wrong ones rejected), at the
score threshold that saves most, beside what the proposer it would replace (the model before it,
or the anomaly proposer) saves on the same images; when it saves more, propose with it at that
threshold on the images not yet done, the next ones first, replacing the unreviewed proposals of
the proposer before it. It also records, per image not yet done, how unsure the model is there
(its detection score nearest the threshold), for "least sure first". Proposals of every version carry the one source
``assist``, so a spot the user rejected is not proposed again by a later version; they go
through the store's one write path, and a proposal never covers an accepted label (the review
rule), so a background round never overwrites a decision.

The state (versions, their runs and scores) is a small JSON file in the project's cache.
Thresholds, stated: ``MIN_DONE`` is the smallest number of labelled images at which a model from
scratch found anything in ``bench train``'s runs; it is not yet fitted by ``bench loop``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from annotate.autolabel import AutolabelReport, autolabel
from annotate.proposers.base import Proposer
from annotate.proposers.registry import create_proposer
from data.store import Project
from train import jobs, runs
from train.advice import LEARNED_MAP50
from train.assist_eval import NOTHING, ProposalCheck, check, run_val_images, to_label_next
from train.models import TrainSettings
from train.proposer import RunProposer

ANOMALY = "anomaly"
ANOMALY_MIN_GOOD = 3  # the anomaly proposer's references: the fewest good images it is fitted on here
MIN_DONE = 8
NEW_DONE = 4
ROUND_HOURS = 3 / 60  # each round's training budget
SOURCE = "assist"
STATE_FILE = "assist.json"


@dataclass(frozen=True)
class AssistModel:
    version: int
    run_id: str
    score: float  # mask mAP50 (box for detect) on the project's validation split
    val_images: int
    done_images: int  # done images it was trained on
    proposals: int = 0
    proposed_images: int = 0
    min_score: float = 0.0  # proposals at or above this score (the threshold that saves most on validation)
    check: dict[str, Any] = field(default_factory=dict)  # its ProposalCheck on the validation images
    replaced: float = 0.0  # what the proposer before it saved on the same images


@dataclass
class AssistState:
    models: list[AssistModel] = field(default_factory=list)
    running: str | None = None  # the run of the round in flight
    tried: list[str] = field(default_factory=list)  # runs that did not beat the model before them
    last_done: int = 0  # done images when the last round started
    anomaly: bool = False  # the anomaly proposer proposed (before the first model)
    anomaly_class: int | None = None
    unsure: dict[str, float] = field(default_factory=dict)  # image id -> how unsure the best model is there
    last_try: dict[str, Any] = field(default_factory=dict)  # the last round not kept, and why

    @property
    def best(self) -> AssistModel | None:
        return self.models[-1] if self.models else None


def load(project: Project) -> AssistState:
    path = project.path("cache", STATE_FILE)
    if not path.is_file():
        return AssistState()
    doc = json.loads(path.read_text(encoding="utf-8"))
    return AssistState([AssistModel(**m) for m in doc.get("models", [])], doc.get("running"), doc.get("tried", []),
                       int(doc.get("last_done", 0)), bool(doc.get("anomaly", False)), doc.get("anomaly_class"),
                       {str(k): float(v) for k, v in doc.get("unsure", {}).items()}, doc.get("last_try", {}))


def save(project: Project, state: AssistState) -> None:
    path = project.path("cache", STATE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    doc = {"models": [asdict(m) for m in state.models], "running": state.running, "tried": state.tried,
           "last_done": state.last_done, "anomaly": state.anomaly, "anomaly_class": state.anomaly_class,
           "unsure": state.unsure, "last_try": state.last_try}
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(path)


def anomaly_due(project: Project, state: AssistState) -> bool:
    """Whether the anomaly proposer should propose now: no model yet, enough good images."""
    return not state.anomaly and state.best is None and len(project.images("good")) >= ANOMALY_MIN_GOOD


def _anomaly_proposer(project: Project, state: AssistState) -> Proposer:
    if state.anomaly_class is None:
        counts = Counter(int(c) for r in project.images("done")
                         for c in project.annotations(r, ("accepted",), with_masks=False).class_id)
        state.anomaly_class = counts.most_common(1)[0][0] if counts else project.classes()[0].id
    return create_proposer(ANOMALY, project=project, class_id=state.anomaly_class)


def propose_anomaly(project: Project, state: AssistState, segmenter=None,
                    order: list[int] | None = None) -> AutolabelReport:
    """The anomaly proposer on the images not yet done (the next ones first), in the class the user
    labelled most."""
    proposer = _anomaly_proposer(project, state)
    rep = autolabel(project, proposer, segmenter, select="unlabeled", class_id=state.anomaly_class, order=order)
    state.anomaly = True
    save(project, state)
    return rep


def due(project: Project, state: AssistState) -> bool:
    """Whether a round should start now (none running, enough images done since the last)."""
    if state.running:
        return False
    done = len(project.images("done"))
    tried = state.best is not None or state.tried  # after any round, the next waits for NEW_DONE more images
    return done >= MIN_DONE and (not tried or done - state.last_done >= NEW_DONE)


def start_round(project: Project, state: AssistState, base: TrainSettings | None = None) -> str:
    """Submit the round's training (warm start from the best model so far); returns its run id."""
    s = base or TrainSettings()
    model = _warm_start(project, state) or s.model
    settings = replace(s, model=model, time_hours=ROUND_HOURS, threads=1, nice=10)
    run_id = jobs.submit(project, settings)
    state.running, state.last_done = run_id, len(project.images("done"))
    save(project, state)
    return run_id


def _warm_start(project: Project, state: AssistState) -> str | None:
    """The weights the next round starts from: those of the latest round that trained, kept or not.

    A round's 3 minutes at one thread are too few for a model from scratch to find anything (on
    the sample, rounds from scratch stayed under mAP50 0.05); continuing from the round before
    lets the training add up across rounds, as one longer run would."""
    trained = [rec for rec in (jobs.get(project, r) for r in [*state.tried, *(m.run_id for m in state.models)])
               if rec.status == "succeeded" and rec.best_weights and Path(rec.best_weights).is_file()]
    return str(max(trained, key=lambda rec: rec.finished_at or 0.0).best_weights) if trained else None


def wait(project: Project, run_id: str, poll_s: float = 1.0) -> jobs.RunRecord:
    return jobs.wait(project, run_id, poll_s)


def finish_round(project: Project, state: AssistState, segmenter=None, order: list[int] | None = None,
                 device: str = "cpu") -> AssistModel | None:
    """Measure the finished round; when it saves the user more than the proposer before it, propose
    with it (``order``: the image ids to propose on first). Returns the new model, or None."""
    run_id, state.running = state.running, None
    rec = jobs.get(project, run_id)
    metric = runs.short_metrics(rec.metrics)
    score = float(metric.get("mask_map50", metric.get("box_map50", 0.0)))
    new = old = None
    if rec.status == "succeeded" and score >= LEARNED_MAP50:  # a model that found nothing proposes noise
        val = run_val_images(project, run_id)
        proposer = _UnsureRecorder(RunProposer(project, run_id, device=device))
        new = check(project, proposer, segmenter, val)
        old = _incumbent(project, state, segmenter, val, device)
    if new is None or new.benefit <= max(old.benefit, 0.0):
        state.tried.append(run_id)
        state.last_try = {"run_id": run_id, "score": round(score, 4), "status": rec.status,
                          "benefit": None if new is None else new.benefit, "replaced": None if old is None else old.benefit}
        save(project, state)
        return None
    _drop_stale(project)
    proposer = _UnsureRecorder(RunProposer(project, run_id, device=device), threshold=new.min_score)
    proposer.name = SOURCE
    rep = autolabel(project, proposer, segmenter, select="unlabeled", redo=True, order=order,
                    min_score=new.min_score)
    ids = {r.sha256: r.id for r in project.images()}
    state.unsure = {str(ids[k]): u for k, u in proposer.unsure.items() if k in ids}
    model = AssistModel(len(state.models) + 1, run_id, score, int(rec.n_images.get("val", 0)),
                        len(project.images("done")), rep.proposals_added, rep.images_done, new.min_score,
                        new.as_json(), old.benefit)
    state.models.append(model)
    state.last_try = {}
    save(project, state)
    return model


def _incumbent(project: Project, state: AssistState, segmenter, val: list[int], device: str) -> ProposalCheck:
    """What the proposer a new model would replace saves on ``val``: the model before it, else the
    anomaly proposer once it proposed, else nothing."""
    if state.best is not None:
        rec = jobs.get(project, state.best.run_id)
        if rec.best_weights and Path(rec.best_weights).is_file():
            return check(project, RunProposer(project, rec.id, device=device), segmenter, val)
        return NOTHING
    if state.anomaly:
        return check(project, _anomaly_proposer(project, state), segmenter, val, class_id=state.anomaly_class)
    return NOTHING


class _UnsureRecorder(Proposer):
    """A proposer passed through, noting per image how unsure it is: 1 minus the distance of its
    detection score nearest the threshold, relative to the farthest a score can be (0: no detection)."""

    def __init__(self, inner: Proposer, threshold: float = 0.5) -> None:
        self.inner, self.threshold = inner, float(threshold)
        self.name, self.keeps_masks, self.predicts_classes = inner.name, inner.keeps_masks, inner.predicts_classes
        self.unsure: dict[str, float] = {}

    def propose(self, image: np.ndarray, key: str):
        props = self.inner.propose(image, key)
        scores = props.confidence[~np.isnan(props.confidence)]
        t = min(max(self.threshold, 1e-6), 1 - 1e-6)
        self.unsure[key] = float(np.max(1 - np.abs(scores - t) / max(t, 1 - t))) if len(scores) else 0.0
        return props


def next_unsure(project: Project, state: AssistState, candidates: list[int]) -> int | None:
    """Of ``candidates`` (image ids, in order), the one the best model is least sure about (the first
    on a tie or with no model)."""
    if not candidates:
        return None
    return max(candidates, key=lambda i: (state.unsure.get(str(i), 0.0), -candidates.index(i)))


def _drop_stale(project: Project) -> None:
    """Unreviewed proposals of the proposer a new model replaces (an earlier model, the anomaly
    proposer) on the images not yet done."""
    stale: list[int] = []
    for rec in project.images("unlabeled"):
        ann = project.annotations(rec, statuses=("proposed",), with_masks=False)
        stale += [int(i) for i, src in zip(ann.ids, ann.source, strict=True) if src in (SOURCE, ANOMALY)]
    if stale:
        project.delete_annotations(stale, only_status="proposed")  # a decision taken meanwhile stays


def summary(state: AssistState) -> str:
    """"model 3: mask mAP50 0.54 on 4 validation images; 14 proposals on 9 images"."""
    m = state.best
    if m is None:
        return "no assist model yet" + (" (training the first one)" if state.running else "")
    return (f"model {m.version}: mask mAP50 {m.score:.2f} on {m.val_images} validation images; "
            f"{m.proposals} proposals on {m.proposed_images} images")


def details(state: AssistState) -> list[str]:
    """What the best model saves, where it erred on validation (what to label next), the last
    round not kept and why."""
    out = []
    m = state.best
    if m is not None and m.check:
        c = ProposalCheck.from_json(m.check)
        out.append(f"On its validation images its proposals (score at least {m.min_score:.2f}) found {c.found} of "
                   f"{c.found + c.missed} defects with {c.false} false, about {c.benefit:g} actions saved "
                   f"(the proposer before it: {m.replaced:g})")
        if (bad := to_label_next(c)):
            out.append(f"Where it erred (label more like these): {bad}")
    t = state.last_try
    if t:
        why = (f"the training {t['status']}" if t.get("status") != "succeeded" else
               f"it learned nothing yet (mask mAP50 {t['score']:.2f})" if t.get("benefit") is None else
               f"its proposals would save {t['benefit']:g} actions on the validation images, the current "
               f"proposer's {t['replaced']:g}")
        out.append(f"Round {t['run_id']} was not kept: {why}.")
    return out


def as_json(state: AssistState) -> dict[str, Any]:
    return {"models": [asdict(m) for m in state.models], "running": state.running, "tried": list(state.tried),
            "scores": [round(m.score, 4) for m in state.models], "last_try": state.last_try}


class Runner:
    """The assist in a server: a daemon thread that, while ``enabled``, starts a round whenever one
    is due, waits for it (the training is another process, at one thread and low priority) and
    proposes with the model when it is better. ``poll_s``: how often it looks."""

    def __init__(self, project: Project, enabled: bool = True, poll_s: float = 10.0,
                 base: TrainSettings | None = None, segmenter=None) -> None:
        self.project, self.enabled, self.poll_s, self.base = project, enabled, poll_s, base
        self.segmenter = segmenter
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="assist", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            if self.enabled:
                try:
                    self.step()
                except Exception as err:  # noqa: BLE001 - a failed round is shown, the server goes on
                    self.last_error = f"{type(err).__name__}: {err}"[:300]

    def step(self) -> AssistModel | None:
        """One look: finish a round whose training ended, start one that is due, or (before the
        first model) let the anomaly proposer propose."""
        state = load(self.project)
        if state.running:
            if not jobs.get(self.project, state.running).finished:
                return None
            return finish_round(self.project, state, self.segmenter)
        if anomaly_due(self.project, state):
            propose_anomaly(self.project, state, self.segmenter)
        if due(self.project, state):
            start_round(self.project, state, self.base)
        return None

    def view(self) -> str:
        """What the Label screen shows: the model, its figures, what it proposed (or why not yet)."""
        state = load(self.project)
        if not self.enabled:
            return "Assist is off."
        text = summary(state)
        if state.best is None and not state.running:
            done = len(self.project.images("done"))
            text += f": the first round starts when {MIN_DONE} images are done ({done} so far)"
            if not state.anomaly:
                good = len(self.project.images("good"))
                text += (f"; the anomaly proposer proposes once {ANOMALY_MIN_GOOD} images are marked good "
                         f"({good} so far)")
        lines = details(state)
        if lines:
            text += ".\n\n" + "\n\n".join(lines)
        if self.last_error:
            text += f". Last round failed: {self.last_error}"
        return text

    def close(self) -> None:
        self._stop.set()
