"""Prediction with a trained run: a cached, thread-safe predictor returning ``Annotations``.

- :func:`predictor_for` loads a run's ``best.pt`` once per (run, device) and keeps it;
  each :class:`RunPredictor` serialises its calls with its own lock (Ultralytics'
  predictor keeps per-call state on the model).
- :meth:`RunPredictor.predict_raw` runs the model once and keeps its detections
  (:class:`RawPrediction`: an ``Annotations`` of model class indices and scores, masks as
  crops inside their boxes, built by ``Annotations.from_ultralytics``). :func:`refilter`
  re-applies a confidence threshold and class-wise NMS at an IoU threshold in
  NumPy/torchvision without running the model again, keeping rows of that container.
  That is exact when the new confidence is at least the one the raw prediction was
  made with and the new IoU at most its IoU (NMS at a lower IoU only removes more
  boxes); :meth:`RunPredictor.predict` re-runs the model otherwise. The live demo
  therefore predicts once at a low floor (``conf=RAW_CONF``, ``iou=RAW_IOU``) and
  moves the sliders over the cached result.
- :func:`to_annotations` maps the model's classes on that container to the project's:
  nothing downstream sees a ``Results``. Model classes map to project class ids through
  :func:`class_map`: by the ids the run recorded (a class renamed since training still
  maps), by name for runs recorded without them; detections of classes the project no
  longer has are dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from data.annotations import Annotations
from data.errors import NotFoundError
from data.render import draw_predictions
from data.store import Project
from runtime import checkpoints
from train import jobs, runs
from train.jobs import RunRecord
from train.worker import ultralytics_device

RAW_CONF = 0.05  # floor used by the live demo so sliders above it need no re-run
RAW_IOU = 0.9


@dataclass(frozen=True, eq=False)
class RawPrediction:
    """Model output for one image: a thin view of the :class:`~data.annotations.Annotations` it holds.

    ``annotations``: the detections in original image pixels, class ids the model's class
    indices (into ``names``), confidence the scores, masks as crops inside their boxes (a detect
    model's rows are box-only); ``conf``/``iou``: the thresholds it was produced with;
    ``inference_ms``: the model call (pre-process, forward, NMS) as Ultralytics times it.
    The read-only properties are what ``data.render.draw_predictions`` reads.
    """

    annotations: Annotations
    names: tuple[str, ...]
    conf: float
    iou: float
    inference_ms: float

    @classmethod
    def from_arrays(cls, height: int, width: int, xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                    masks: np.ndarray | None, names: tuple[str, ...], conf: float, iou: float,
                    inference_ms: float) -> RawPrediction:
        """A prediction from plain arrays (tests, fakes): ``xyxy (N, 4)``, ``scores (N,)``, ``classes (N,)``
        model class indices, ``masks`` full-size ``(N, H, W)`` bool (cut to crops here) or None."""
        if masks is None:
            ann = Annotations.from_boxes(height, width, xyxy, classes, scores, source="model")
        else:
            ann = Annotations.from_masks(np.asarray(masks, dtype=bool).reshape(-1, height, width), classes, scores,
                                         source="model", status="proposed", xyxy=xyxy)
        return cls(ann, tuple(names), conf, iou, inference_ms)

    @property
    def height(self) -> int:
        return self.annotations.height

    @property
    def width(self) -> int:
        return self.annotations.width

    @property
    def xyxy(self) -> np.ndarray:
        """``(N, 4)`` float32 boxes in original image pixels."""
        return self.annotations.xyxy

    @property
    def scores(self) -> np.ndarray:
        """``(N,)`` float32."""
        return self.annotations.confidence

    @property
    def classes(self) -> np.ndarray:
        """``(N,)`` int64 model class indices (into ``names``)."""
        return self.annotations.class_id

    @property
    def masks(self) -> Annotations | None:
        """The container itself when its rows have masks (a segment model), else None (a detect model)."""
        return self.annotations if self.annotations.has_mask.any() else None

    def __len__(self) -> int:
        return len(self.annotations)


class RunPredictor:
    """One loaded model; thread-safe."""

    def __init__(self, weights: str | Path, device: str = "auto", imgsz: int | None = None) -> None:
        self.weights = Path(weights)
        self.device = ultralytics_device(device)
        self.model = checkpoints.load_yolo(self.weights)
        self.imgsz = imgsz or int(self.model.overrides.get("imgsz") or 640)
        names = self.model.names
        self.names = tuple(names[i] for i in sorted(names)) if isinstance(names, dict) else tuple(names)
        self._lock = threading.Lock()

    def predict_raw(self, image_rgb: np.ndarray, conf: float = 0.25, iou: float = 0.7) -> RawPrediction:
        """Run the model on an RGB uint8 ``(H, W, 3)`` image."""
        bgr = np.ascontiguousarray(image_rgb[..., ::-1])  # Ultralytics reads arrays as BGR
        with self._lock:
            result = self.model.predict(bgr, conf=conf, iou=iou, imgsz=self.imgsz, device=self.device, verbose=False)[0]
        return _from_result(result, self.names, conf, iou)

    def predict(self, image_rgb: np.ndarray, conf: float = 0.25, iou: float = 0.7,
                cached: RawPrediction | None = None) -> RawPrediction:
        """Thresholded prediction, re-using ``cached`` (same image) when that is exact."""
        if cached is not None and conf >= cached.conf and iou <= cached.iou:
            return refilter(cached, conf, iou)
        return self.predict_raw(image_rgb, conf, iou)


def _from_result(result: object, names: tuple[str, ...], conf: float, iou: float) -> RawPrediction:
    """Adapter from an Ultralytics ``Results`` (read by ``Annotations.from_ultralytics`` only)."""
    ms = float(sum(result.speed.values())) if getattr(result, "speed", None) else float("nan")
    return RawPrediction(Annotations.from_ultralytics(result, source="model"), names, conf, iou, ms)


def refilter(raw: RawPrediction, conf: float, iou: float) -> RawPrediction:
    """Confidence threshold, then class-wise NMS at ``iou`` (box IoU, as Ultralytics does): the kept rows
    of ``raw``'s container, in their order, their crops shared (no mask is made full size)."""
    import torch
    from torchvision.ops import batched_nms

    keep = np.flatnonzero(raw.scores >= conf)
    if len(keep) and iou < raw.iou:
        idx = batched_nms(torch.from_numpy(raw.xyxy[keep]), torch.from_numpy(raw.scores[keep]),
                          torch.from_numpy(raw.classes[keep]), float(iou))
        keep = keep[np.sort(idx.numpy())]
    return replace(raw, annotations=raw.annotations[keep], conf=conf, iou=iou)  # the kept rows' crops, shared


def to_annotations(raw: RawPrediction, class_ids: dict[str, int] | None = None, source: str = "run", *,
                   by_index: Mapping[int, int] | None = None) -> Annotations:
    """Raw prediction -> ``Annotations`` (status ``proposed``, ``source``): ``raw``'s rows with project
    class ids, their masks the same crops.

    ``by_index``: project class id by model class index (:func:`class_map`); else ``class_ids``:
    project class id by name; without either the class ids are the model's indices. Detections
    of classes missing from the mapping are dropped.
    """
    ann = raw.annotations
    if by_index is not None or class_ids is not None:
        if by_index is None:
            by_index = {k: class_ids[name] for k, name in enumerate(raw.names) if name in class_ids}
        mapped = [by_index.get(int(c)) for c in ann.class_id]
        ann = ann.filter([m is not None for m in mapped]).with_class_ids(
            np.array([m for m in mapped if m is not None], dtype=np.int64))
    n = len(ann)
    return ann.with_data({"source": np.full(n, source, dtype=object), "status": np.full(n, "proposed", dtype=object)})


def class_map(project: Project, names: tuple[str, ...], rec: RunRecord | None) -> dict[int, int]:
    """Model class index -> project class id, for a model with class ``names`` trained by run ``rec``.

    A run records the project class id of each model class (``RunRecord.class_ids``): that class
    keeps its proposals when renamed later, and a class deleted since is left out (its detections
    are dropped). A model class with no recorded id, a run recorded before ids were (or ``rec``
    None, or a record whose ``class_names`` are not this model's) maps by name instead.
    """
    classes = project.classes()
    alive = {c.id for c in classes}
    by_name = {c.name: c.id for c in classes}
    bound = rec.class_ids if rec is not None and tuple(rec.class_names) == tuple(names) else None
    out = {}
    for k, name in enumerate(names):
        recorded = bound[k] if bound is not None and k < len(bound) else None
        if recorded is None:
            if name in by_name:
                out[k] = by_name[name]
        elif recorded in alive:
            out[k] = recorded
    return out


def run_class_map(project: Project, run_id: str, names: tuple[str, ...]) -> dict[int, int]:
    """:func:`class_map` for run ``run_id`` (a run without a record maps by name)."""
    try:
        rec = jobs.get(project, run_id)
    except NotFoundError:
        rec = None
    return class_map(project, names, rec)


def class_colors(project: Project, run_id: str, names: tuple[str, ...]) -> dict[str, str]:
    """``#RRGGBB`` by model class name: the colour of the project class it maps to (:func:`render`)."""
    color = {c.id: c.color for c in project.classes()}
    return {names[k]: color[cid] for k, cid in run_class_map(project, run_id, names).items()}


# ----------------------------------------------------------------------- cache
_CACHE: dict[tuple[str, str], RunPredictor] = {}
_CACHE_LOCK = threading.Lock()


def predictor_for(project: Project, run_id: str, device: str = "auto") -> RunPredictor:
    """The cached predictor of a run (loaded on first use)."""
    key = (run_id, device)
    with _CACHE_LOCK:
        pred = _CACHE.get(key)
        if pred is None:
            rec = jobs.get(project, run_id)
            pred = RunPredictor(runs.weights(project, run_id), device=device, imgsz=rec.settings.imgsz)
            _CACHE[key] = pred
    return pred


def forget(run_id: str) -> None:
    """Drop a run's cached predictors (:func:`train.runs.delete` calls it for a deleted run)."""
    with _CACHE_LOCK:
        for key in [k for k in _CACHE if k[0] == run_id]:
            del _CACHE[key]


def source_name(run_id: str) -> str:
    """The registry name stored as an annotation's ``source`` when a run proposed it."""
    return f"run:{run_id}"


def predict_annotations(
    project: Project, run_id: str, image_rgb: np.ndarray, conf: float = 0.25, iou: float = 0.7, device: str = "auto"
) -> Annotations:
    """A run as a proposer: its predictions on an image, class ids mapped to the project's (:func:`class_map`)."""
    pred = predictor_for(project, run_id, device)
    raw = pred.predict_raw(image_rgb, conf, iou)
    return to_annotations(raw, source=source_name(run_id), by_index=run_class_map(project, run_id, raw.names))


# ---------------------------------------------------------------------- render
@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # RGB uint8 with masks, boxes, names and scores drawn
    counts: dict[str, int]  # per-class instance counts
    inference_ms: float


def render(image_rgb: np.ndarray, raw: RawPrediction, colors: dict[str, str] | None = None,
           alpha: float = 0.45) -> Rendered:
    """Draw a (re-filtered) prediction (:func:`data.render.draw_predictions`; masks painted from
    their crops); ``colors``: ``#RRGGBB`` by class name (the project's), other classes in
    ``data.colors.palette_color(index)``."""
    image = draw_predictions(image_rgb, raw, colors, alpha)
    counts = {name: int((raw.classes == i).sum()) for i, name in enumerate(raw.names)}
    return Rendered(image, counts, raw.inference_ms)


def timed_predict(pred: RunPredictor, image_rgb: np.ndarray, conf: float, iou: float) -> tuple[RawPrediction, float]:
    """A prediction and its wall time in ms (for the UI's 'inference time')."""
    t = time.perf_counter()
    raw = pred.predict_raw(image_rgb, conf, iou)
    return raw, (time.perf_counter() - t) * 1000


# A deleted run's cached predictors go with it.
runs.add_delete_listener(forget)
