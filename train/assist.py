"""Assist: a model that keeps proposing while the user labels.

A round, once at least :data:`MIN_DONE` images are done and :data:`NEW_DONE` more since the last
round: train in the background on the project's snapshot (one CPU thread and a low priority, so
clicks stay quick), warm-started from the previous assist model, for a short budget; score it on
the project's own validation split (the run's final validation); if it beats the model before
it, propose with it on the images not yet done, the next ones first, replacing the proposals the
older model left there that nobody reviewed. Proposals of every version carry the one source
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from annotate.autolabel import autolabel
from data.store import Project
from train import jobs, runs
from train.advice import LEARNED_MAP50
from train.models import TrainSettings
from train.proposer import RunProposer

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


@dataclass
class AssistState:
    models: list[AssistModel] = field(default_factory=list)
    running: str | None = None  # the run of the round in flight
    tried: list[str] = field(default_factory=list)  # runs that did not beat the model before them
    last_done: int = 0  # done images when the last round started

    @property
    def best(self) -> AssistModel | None:
        return self.models[-1] if self.models else None


def load(project: Project) -> AssistState:
    path = project.path("cache", STATE_FILE)
    if not path.is_file():
        return AssistState()
    doc = json.loads(path.read_text(encoding="utf-8"))
    return AssistState([AssistModel(**m) for m in doc.get("models", [])], doc.get("running"), doc.get("tried", []),
                       int(doc.get("last_done", 0)))


def save(project: Project, state: AssistState) -> None:
    path = project.path("cache", STATE_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps({"models": [asdict(m) for m in state.models], "running": state.running,
                               "tried": state.tried, "last_done": state.last_done}, indent=1), encoding="utf-8")
    tmp.replace(path)


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
    """Score the finished round; when it beats the model before it, propose with it (``order``: the
    image ids to propose on first). Returns the new model, or None when it was not better."""
    run_id, state.running = state.running, None
    rec = jobs.get(project, run_id)
    metric = runs.short_metrics(rec.metrics)
    score = float(metric.get("mask_map50", metric.get("box_map50", 0.0)))
    worse = state.best is not None and score <= state.best.score
    if rec.status != "succeeded" or worse or score < LEARNED_MAP50:  # a model that found nothing proposes noise
        state.tried.append(run_id)
        save(project, state)
        return None
    _drop_stale(project)
    proposer = RunProposer(project, run_id, device=device)
    proposer.name = SOURCE
    rep = autolabel(project, proposer, segmenter, select="unlabeled", redo=True, order=order)
    model = AssistModel(len(state.models) + 1, run_id, score, int(rec.n_images.get("val", 0)),
                        len(project.images("done")), rep.proposals_added, rep.images_done)
    state.models.append(model)
    save(project, state)
    return model


def _drop_stale(project: Project) -> None:
    """Unreviewed proposals of an earlier assist model on the images not yet done."""
    stale: list[int] = []
    for rec in project.images("unlabeled"):
        ann = project.annotations(rec, statuses=("proposed",), with_masks=False)
        stale += [int(i) for i, src in zip(ann.ids, ann.source, strict=True) if src == SOURCE]
    if stale:
        project.delete_annotations(stale)


def summary(state: AssistState) -> str:
    """"model 3: mask mAP50 0.54 on 4 validation images; 14 proposals on 9 images"."""
    m = state.best
    if m is None:
        return "no assist model yet" + (" (training the first one)" if state.running else "")
    return (f"model {m.version}: mask mAP50 {m.score:.2f} on {m.val_images} validation images; "
            f"{m.proposals} proposals on {m.proposed_images} images")


def as_json(state: AssistState) -> dict[str, Any]:
    return {"models": [asdict(m) for m in state.models], "running": state.running, "tried": list(state.tried),
            "scores": [round(m.score, 4) for m in state.models]}


class Runner:
    """The assist in a server: a daemon thread that, while ``enabled``, starts a round whenever one
    is due, waits for it (the training is another process, at one thread and low priority) and
    proposes with the model when it is better. ``poll_s``: how often it looks."""

    def __init__(self, project: Project, enabled: bool = True, poll_s: float = 10.0,
                 base: TrainSettings | None = None) -> None:
        self.project, self.enabled, self.poll_s, self.base = project, enabled, poll_s, base
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
        """One look: finish a round whose training ended, or start one that is due."""
        state = load(self.project)
        if state.running:
            if not jobs.get(self.project, state.running).finished:
                return None
            return finish_round(self.project, state)
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
        if self.last_error:
            text += f". Last round failed: {self.last_error}"
        return text

    def close(self) -> None:
        self._stop.set()
