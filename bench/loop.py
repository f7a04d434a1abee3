"""``bench loop``: a simulated user from zero labels to a trained model, counting every action.

The user works through the Label screen's own server side (``ui.label_api.LabelService``: open,
box, clicks, accept, review, class, image status), the auto-label of the app and its training
jobs; only its eyes are the ground truth. Every action costs 1:

- opening an image (images in a seeded order);
- per proposal matched to a ground-truth instance (one to one, greedy by mask IoU, at least
  :data:`MATCH_IOU`): re-class it if its class is wrong (1), refine it with the click protocol of
  ``bench clicks`` until IoU :data:`TARGET_IOU` or :data:`MAX_CLICKS` clicks (1 each), accept it
  (1); every unmatched proposal is rejected (1);
- per instance not yet covered: its box jittered by up to :data:`JITTER` of its size (1), the same
  refinement, its class if it differs from the one last used (1), accept (1);
- marking the image done, or good when it holds no defect (1).

Proposals come from the app's assist (:mod:`train.assist`, run as the app runs it, the bench
waiting for each step): the anomaly proposer once enough images are good, then the model rounds,
each kept when its proposals save more on the round's validation images than the proposer's
before it; each kept model is scored on the test set (outside the time budget) for the curve.
``--policy uncertainty``: once there is a model, the next image is the one it is least sure of
(:func:`train.assist.next_unsure`); before, and with ``order``, the seeded order. ``--no-assist`` is the baseline: no proposals, one training at the end. Both train once
more at the end, in the time left.

The time budget is wall time for everything but the test-set evaluation: the user, the
auto-label, the training (which gets what is left).
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from annotate.segmenters.registry import create_segmenter
from bench.clicks import next_click
from bench.train import evaluate_coco
from data.coco import read_ground_truth
from data.errors import InputError
from data.geometry import mask_iou
from data.importers import import_sources
from data.store import Project
from train import assist, jobs
from train.models import TrainSettings
from ui.label_api import LabelService

MATCH_IOU = 0.5
TARGET_IOU = 0.85
MAX_CLICKS = 10
JITTER = 0.05
POLICIES = ("order", "uncertainty")
MIN_TRAIN_S = 60.0  # a training that would get less than this is not started: the budget is spent
FINISH_ALLOWANCE_S = 30.0  # measured: a 19.5-min run overran its budget by 17 s (2026-12-02)


class _BudgetSpent(Exception):
    pass


@dataclass
class _Tally:
    limit: int
    deadline: float
    actions: int = 0
    kinds: Counter = field(default_factory=Counter)

    def spend(self, kind: str, n: int = 1) -> None:
        if self.actions + n > self.limit or time.time() > self.deadline:
            raise _BudgetSpent
        self.actions += n
        self.kinds[kind] += n


@dataclass
class _Instance:
    source: str  # "manual" (drawn from a box) or the proposer's name
    actions: int
    iou: float
    models: int = 0  # assist models there were when it was labelled


@dataclass
class LoopSettings:
    budget_actions: int = 150
    budget_min: float = 30.0
    assist: bool = True
    policy: str = "order"
    segmenter: str | None = None
    seed: int = 0
    imgsz: int | None = None  # training image size (default: the app's)
    device: str = "auto"


def run_loop(images: Path, gt: Path, test_images: Path, test_gt: Path, settings: LoopSettings,
             say=print) -> dict[str, Any]:
    """One simulated session (assist as ``settings`` says); the test-set scores of its model."""
    if settings.policy not in POLICIES:
        raise InputError(f"--policy must be one of {', '.join(POLICIES)}, not '{settings.policy}'.")
    truth = {_sha(g.path): g for g in read_ground_truth(images, gt)}
    read_ground_truth(test_images, test_gt)  # fail early on a bad test set
    start = time.time()
    tally = _Tally(settings.budget_actions, start + settings.budget_min * 60)
    with tempfile.TemporaryDirectory(prefix="bench-loop-") as tmp:
        project = Project.create(Path(tmp) / "project", classes=sorted({n for g in truth.values() for n in g.classes}))
        import_sources(project, [Path(images)])
        user = _User(project, truth, settings, tally, say)
        user.test = (Path(test_images), Path(test_gt))
        try:
            user.work()
        except _BudgetSpent:
            pass
        user_s = time.time() - start
        warm = jobs.get(project, user.state.best.run_id).best_weights if user.state.best else None
        train = _train(project, settings, tally.deadline, say, warm)
        scores = evaluate_coco(project, train["run_id"], test_images, test_gt, settings.device) if train else None
        wall_s = time.time() - start - (scores or {}).get("evaluate_s", 0.0)
        instances = user.instances
        out = {
            "mode": (f"assist, {'least sure first' if settings.policy == 'uncertainty' else 'in order'}"
                     if settings.assist else "no assist"),
            "actions": tally.actions, "actions_by_kind": dict(tally.kinds), "images_done": user.done,
            "images_good": user.good, "instances_labelled": len(instances),
            "actions_per_instance": _per(instances), "actions_per_instance_by_source": {
                src: _per([i for i in instances if i.source == src]) for src in sorted({i.source for i in instances})},
            "proposals": dict(user.proposal_outcomes), "user_s": round(user_s, 1), "wall_min": round(wall_s / 60, 2),
            "train": train, "test": scores,
        }
        m = (scores or {}).get("mask", {}).get("mAP50")
        out["curve"] = user.curve + ([[tally.actions, m, "final"]] if m is not None else [])
        out["actions_to_mask_map50"] = {str(t): next((a for a, v, _ in out["curve"] if v >= t), None)
                                        for t in (0.5, 0.6)}
        out["assist_models"] = assist.as_json(user.state)
        out["actions_per_instance_after_model"] = {
            str(k): {src: _per([i for i in instances if i.models >= k and i.source == src])
                     for src in sorted({i.source for i in instances if i.models >= k})} for k in (1, 2)}
        return out


def _per(instances: list[_Instance]) -> float | None:
    return round(statistics.mean(i.actions for i in instances), 2) if instances else None


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class _User:
    def __init__(self, project: Project, truth: dict, settings: LoopSettings, tally: _Tally, say) -> None:
        self.project, self.truth, self.settings, self.tally, self.say = project, truth, settings, tally, say
        self.segmenter = create_segmenter(settings.segmenter, device=settings.device)
        self.svc = LabelService(project, self.segmenter, prefetch=False)
        self.token = self.svc.open_page("bench-loop")
        self.class_ids = {c.name: c.id for c in project.classes()}
        self.current_class: int | None = None
        self.rng = np.random.default_rng(settings.seed)
        self.instances: list[_Instance] = []
        self.proposal_outcomes: Counter = Counter()
        self.done = self.good = 0
        self.state = assist.AssistState()
        self.curve: list[list] = []  # [actions, test mask mAP50, model version] after each assist model
        self.test: tuple[Path, Path] = (Path(), Path())
        base = TrainSettings()
        self.train_base = replace(base, imgsz=settings.imgsz or base.imgsz, seed=settings.seed, device=settings.device,
                                  weights_dir=str(project.path("cache", "no-weights")))

    def work(self) -> None:
        images = self.project.images()
        todo = [images[k].id for k in self.rng.permutation(len(images)) if images[k].sha256 in self.truth]
        while todo:
            image_id = todo[0]
            if self.settings.policy == "uncertainty" and self.state.best is not None:
                image_id = assist.next_unsure(self.project, self.state, todo)  # the one the model is least sure of
            todo.remove(image_id)
            self._label(self.project.image(image_id))
            if not self.settings.assist:
                continue
            if assist.anomaly_due(self.project, self.state):
                self._propose(todo)
            if assist.due(self.project, self.state):
                self._round(todo)

    def _round(self, upcoming: list[int]) -> None:
        """One assist round as the app runs it; the bench waits for it (inside the time budget)."""
        t = time.time()
        run_id = assist.start_round(self.project, self.state, self.train_base)
        assist.wait(self.project, run_id)
        model = assist.finish_round(self.project, self.state, self.segmenter, order=upcoming,
                                    device=self.settings.device)
        took = time.time() - t
        if model is None:
            self.say(f"assist round {run_id} ({took:.0f} s): not better than the last model")
            return
        self.say(f"assist {assist.summary(self.state)} ({took:.0f} s)")
        scores = evaluate_coco(self.project, model.run_id, self.test[0], self.test[1], self.settings.device)
        self.tally.deadline += scores["evaluate_s"]  # the test set is scored outside the budget
        self.curve.append([self.tally.actions, scores["mask"]["mAP50"], model.version])

    def _propose(self, upcoming: list[int]) -> None:
        """Before the first model: the anomaly proposer, as the app's assist runs it."""
        t = time.time()
        rep = assist.propose_anomaly(self.project, self.state, self.segmenter, order=upcoming)
        self.say(f"anomaly proposals: {rep.proposals_added} on {rep.images_done} images in {time.time() - t:.0f} s")

    def _pending_mask(self) -> np.ndarray | None:
        one = self.svc.sessions.get(self.token).pending.mask
        return None if one is None else one.full_mask(0)

    def _refine(self, gt: np.ndarray, pred: np.ndarray | None) -> tuple[int, float]:
        """Clicks of the protocol on the pending mask until TARGET_IOU or MAX_CLICKS: (clicks, IoU)."""
        clicks = 0
        iou = mask_iou(pred, gt) if pred is not None else 0.0
        while iou < TARGET_IOU and clicks < MAX_CLICKS:
            click = next_click(gt, pred)
            if click is None:
                break
            self.tally.spend("click")
            clicks += 1
            self.svc.prompt(self.token, "pos" if click[2] else "neg", [click[0], click[1]])
            pred = self._pending_mask()
            iou = mask_iou(pred, gt) if pred is not None else 0.0
        return clicks, iou

    def _label(self, rec) -> None:
        g = self.truth[rec.sha256]
        self.tally.spend("open")
        self.svc.open_image(self.token, rec.id)
        gts = [(self.class_ids[name], g.masks[k]) for k, name in enumerate(g.classes)]
        props = self.project.annotations(rec, statuses=("proposed",))
        covered = self._review(props, gts)
        for j, (cls, gt) in enumerate(gts):
            if j in covered:
                continue
            spent = self.tally.actions
            ys, xs = np.nonzero(gt)
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            jx, jy = JITTER * (x1 - x0), JITTER * (y1 - y0)
            box = [x0 + self.rng.uniform(-jx, jx), y0 + self.rng.uniform(-jy, jy),
                   x1 + self.rng.uniform(-jx, jx), y1 + self.rng.uniform(-jy, jy)]
            self.tally.spend("box")
            self.svc.prompt(self.token, "box", [float(v) for v in box])
            _, iou = self._refine(gt, self._pending_mask())
            if self._pending_mask() is None:
                continue  # nothing to accept: the instance stays unlabelled
            if cls != self.current_class:
                self.tally.spend("class")
                self.current_class = cls
            self.tally.spend("accept")
            self.svc.accept(self.token, cls)
            self.instances.append(_Instance("manual", self.tally.actions - spent, iou, len(self.state.models)))
        self.tally.spend("mark")
        status = "done" if gts else "good"
        self.svc.set_image_status(self.token, status)
        self.done += status == "done"
        self.good += status == "good"

    def _review(self, props, gts) -> set[int]:
        """Match, fix and accept the proposals; reject the rest. Returns the ground truths covered."""
        if not len(props):
            return set()
        pairs = sorted(((mask_iou(props.full_mask(i), gt), i, j) for i in range(len(props))
                        for j, (_, gt) in enumerate(gts)), reverse=True)
        used_p: set[int] = set()
        covered: set[int] = set()
        for iou, i, j in pairs:
            if iou < MATCH_IOU or i in used_p or j in covered:
                continue
            used_p.add(i)
            covered.add(j)
            cls, gt = gts[j]
            aid = int(props.ids[i])
            spent = self.tally.actions
            if int(props.class_id[i]) != cls:
                self.tally.spend("class")
                self.svc.set_class(self.token, aid, cls)
                self.proposal_outcomes["re-classed"] += 1
            if iou >= TARGET_IOU:
                self.tally.spend("accept")
                self.svc.review(self.token, aid, "accepted")
                final = iou
            else:
                self.svc.edit(self.token, aid)
                _, final = self._refine(gt, self._pending_mask())
                self.tally.spend("accept")
                self.svc.accept(self.token, cls)
                self.proposal_outcomes["refined"] += 1
            self.proposal_outcomes["accepted"] += 1
            self.instances.append(_Instance(str(props.source[i]), self.tally.actions - spent, final,
                                            len(self.state.models)))
        for i in range(len(props)):
            if i not in used_p:
                self.tally.spend("reject")
                self.svc.review(self.token, int(props.ids[i]), "rejected")
                self.proposal_outcomes["rejected"] += 1
        return covered


def _train(project: Project, settings: LoopSettings, deadline: float, say,
           warm: str | None = None) -> dict[str, Any] | None:
    # The test-set evaluation comes after the deadline, outside the budget; the run's export, worker
    # start and final validation come inside it, after Ultralytics' own time budget ends.
    left = deadline - time.time() - FINISH_ALLOWANCE_S
    if not project.images("done"):
        say("no image done: nothing to train")
        return None
    if left < MIN_TRAIN_S:
        say(f"{left:.0f} s left of the time budget: no training")
        return None
    base = TrainSettings()
    s = replace(base, imgsz=settings.imgsz or base.imgsz, time_hours=left / 3600, seed=settings.seed,
                device=settings.device, weights_dir=str(project.path("cache", "no-weights")),
                model=str(warm) if warm else base.model)  # from the last assist model, when there is one
    run_id = jobs.submit(project, s)
    say(f"training {run_id} for up to {left / 60:.1f} min")
    rec = jobs.wait(project, run_id)
    if rec.status != "succeeded":
        raise RuntimeError(f"bench loop training {rec.status}: {rec.reason}")
    return {"run_id": run_id, "epochs": rec.epoch, "imgsz": s.imgsz, "wall_s": round(rec.wall_s, 1)}


def format_report(runs: list[dict[str, Any]]) -> str:
    lines = []
    for r in runs:
        test = r["test"] or {}
        mask, box = test.get("mask", {}), test.get("box", {})
        lines.append(f"{r['mode']}: {r['actions']} actions ({', '.join(f'{k} {v}' for k, v in r['actions_by_kind'].items())}), "
                     f"{r['images_done']} done + {r['images_good']} good images, {r['instances_labelled']} instances, "
                     f"{r['actions_per_instance']} actions per instance {r['actions_per_instance_by_source']}; "
                     f"proposals {r['proposals'] or 'none'}; wall {r['wall_min']} min")
        if r.get("curve"):
            lines.append("  actions -> test mask mAP50: " + ", ".join(f"{a} -> {v:.3f} ({tag})" for a, v, tag in r["curve"]))
            lines.append(f"  actions to mask mAP50 0.5 / 0.6: {r['actions_to_mask_map50']['0.5']} / "
                         f"{r['actions_to_mask_map50']['0.6']}; after model 1 / 2, actions per instance: "
                         f"{r['actions_per_instance_after_model']['1']} / {r['actions_per_instance_after_model']['2']}")
        if test:
            lines.append(f"  test: mask mAP50 {mask.get('mAP50', 0):.3f} mAP50-95 {mask.get('mAP50-95', 0):.3f}, "
                         f"box mAP50 {box.get('mAP50', 0):.3f} mAP50-95 {box.get('mAP50-95', 0):.3f} "
                         f"({r['train']['epochs']} epochs at {r['train']['imgsz']} px)")
        else:
            lines.append("  no model: nothing trained within the budget")
    return "\n".join(lines)
