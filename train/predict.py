"""Prediction with a trained run: a cached, thread-safe predictor returning ``Annotations``.

- :func:`predictor_for` loads a run's ``best.pt`` once per (run, device) and keeps it;
  each :class:`RunPredictor` serialises its calls with its own lock (Ultralytics'
  predictor keeps per-call state on the model).
- :meth:`RunPredictor.predict_raw` runs the model once and keeps the raw boxes, scores,
  classes and masks (:class:`RawPrediction`). :func:`refilter` re-applies a confidence
  threshold and class-wise NMS at an IoU threshold in NumPy/torchvision without
  running the model again. That is exact when the new confidence is at least the
  one the raw prediction was made with and the new IoU at most its IoU (NMS at a
  lower IoU only removes more boxes); :meth:`RunPredictor.predict` re-runs the model
  otherwise. The live demo therefore predicts once at a low floor
  (``conf=RAW_CONF``, ``iou=RAW_IOU``) and moves the sliders over the cached result.
- :func:`to_annotations` is the adapter from Ultralytics to the project's container:
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

import cv2
import numpy as np

from data.annotations import Annotations
from data.errors import NotFoundError
from data.geometry import mask_to_box
from data.render import draw_predictions
from data.store import Project
from train import jobs, runs
from train.jobs import RunRecord
from train.worker import ultralytics_device

RAW_CONF = 0.05  # floor used by the live demo so sliders above it need no re-run
RAW_IOU = 0.9


@dataclass(frozen=True, eq=False)
class BoxMasks:
    """Instance masks kept as crops inside their boxes, ``(N, H, W)`` to every reader.

    ``N`` full-size masks hold ``N x H x W`` bytes: at the live demo's floor (up to 300
    detections) on a 12 MP photo that is 3.6 GB per page. The crops hold only the boxes.
    ``masks[i]`` is one full-size mask, ``masks[keep]`` (an index or boolean array) a subset,
    ``np.asarray(masks)`` the full stack; :meth:`paint` draws one without making it full size.
    """

    height: int
    width: int
    origins: np.ndarray  # (N, 2) int: x0, y0 of each crop
    crops: tuple[np.ndarray, ...]  # bool (h_i, w_i)

    @classmethod
    def from_full(cls, masks: np.ndarray) -> BoxMasks:
        masks = np.asarray(masks, dtype=bool)
        n, h, w = masks.shape
        origins, crops = np.zeros((n, 2), np.int64), []
        for i in range(n):
            x0, y0, x1, y1 = (int(v) for v in mask_to_box(masks[i]))  # zeros when empty: a 0x0 crop
            origins[i] = x0, y0
            crops.append(masks[i, y0:y1, x0:x1].copy())
        return cls(h, w, origins, tuple(crops))

    def __len__(self) -> int:
        return len(self.crops)

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.crops), self.height, self.width

    def __getitem__(self, key: object) -> np.ndarray | BoxMasks:
        if not isinstance(key, slice) and np.ndim(key) == 0:  # one mask: an int, a NumPy integer
            if np.asarray(key).dtype.kind not in "iu":
                raise TypeError(f"index BoxMasks with an int, a slice or an index or boolean array, not {key!r}")
            i = int(key)  # type: ignore[call-overload]
            out = np.zeros((self.height, self.width), bool)
            self.paint(out, i, True)
            return out
        idx = np.arange(len(self.crops))[key]  # type: ignore[index]
        return BoxMasks(self.height, self.width, self.origins[idx], tuple(self.crops[i] for i in idx))

    def __array__(self, dtype: object = None, copy: object = None) -> np.ndarray:
        if copy is False:
            raise ValueError("BoxMasks has no full array to share: the full stack is always a new array")
        out = np.zeros(self.shape, bool)
        for i in range(len(self.crops)):
            self.paint(out[i], i, True)
        return out if dtype is None else out.astype(dtype)

    def paint(self, image: np.ndarray, i: int, value: object) -> None:
        """Set the pixels of mask ``i`` in ``image`` (``(H, W)`` or ``(H, W, C)``) to ``value``."""
        crop = self.crops[i]
        x0, y0 = (int(v) for v in self.origins[i])
        image[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]][crop] = value


@dataclass(frozen=True)
class RawPrediction:
    """Model output for one image, in original image pixels.

    ``xyxy (N,4)`` float32, ``scores (N,)``, ``classes (N,)`` model class indices,
    ``masks`` (:class:`BoxMasks`, read as ``(N,H,W)`` bool; a full array given here is
    converted) or None (detect models); ``names`` model class names;
    ``conf``/``iou``: the thresholds it was produced with; ``inference_ms``: the
    model call (pre-process, forward, NMS) as Ultralytics times it.
    """

    height: int
    width: int
    xyxy: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: BoxMasks | None  # a full (N, H, W) array given here is converted
    names: tuple[str, ...]
    conf: float
    iou: float
    inference_ms: float

    def __post_init__(self) -> None:
        if self.masks is not None and not isinstance(self.masks, BoxMasks):
            object.__setattr__(self, "masks", BoxMasks.from_full(self.masks))

    def __len__(self) -> int:
        return len(self.xyxy)


class RunPredictor:
    """One loaded model; thread-safe."""

    def __init__(self, weights: str | Path, device: str = "auto", imgsz: int | None = None) -> None:
        from ultralytics import YOLO

        self.weights = Path(weights)
        self.device = ultralytics_device(device)
        self.model = YOLO(str(self.weights))
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
    """Adapter from an Ultralytics ``Results`` (the only place that reads one)."""
    h, w = result.orig_shape
    boxes = result.boxes
    xyxy = boxes.xyxy.cpu().numpy().astype(np.float32) if boxes is not None else np.zeros((0, 4), np.float32)
    scores = boxes.conf.cpu().numpy().astype(np.float32) if boxes is not None else np.zeros(0, np.float32)
    classes = boxes.cls.cpu().numpy().astype(np.int64) if boxes is not None else np.zeros(0, np.int64)
    masks = None
    if result.masks is not None:
        masks = _masks_to_image(result.masks.data, h, w, xyxy)
    ms = float(sum(result.speed.values())) if getattr(result, "speed", None) else float("nan")
    return RawPrediction(h, w, xyxy, scores, classes, masks, names, conf, iou, ms)


def _masks_to_image(data: object, height: int, width: int, xyxy: np.ndarray | None = None) -> BoxMasks:
    """Letterboxed model-size masks -> :class:`BoxMasks` (``(N, H, W)`` bool) in original pixels.

    Ultralytics has already cut each mask to its box, so only the box (plus a pixel) is
    resampled, with the same bilinear, half-pixel-centred mapping as its ``scale_masks``:
    upscaling whole images for every detection would cost more than the model itself.
    """
    arr = data.float().cpu().numpy() if hasattr(data, "cpu") else np.asarray(data, dtype=np.float32)
    n = len(arr)
    origins, crops = np.zeros((n, 2), np.int64), [np.zeros((0, 0), bool)] * n
    if n == 0:
        return BoxMasks(height, width, origins, ())
    mh, mw = arr.shape[1:]
    gain = min(mh / height, mw / width)
    ch, cw = max(round(height * gain), 1), max(round(width * gain), 1)  # content size inside the padding
    top, left = round((mh - ch) / 2 - 0.1), round((mw - cw) / 2 - 0.1)
    sy, sx = ch / height, cw / width
    boxes = np.zeros((n, 4)) if xyxy is None else np.asarray(xyxy, dtype=np.float64)
    for i in range(n):
        if xyxy is None:
            x0, y0, x1, y1 = 0, 0, width, height
        else:
            x0, y0 = max(int(np.floor(boxes[i, 0])) - 1, 0), max(int(np.floor(boxes[i, 1])) - 1, 0)
            x1, y1 = min(int(np.ceil(boxes[i, 2])) + 1, width), min(int(np.ceil(boxes[i, 3])) + 1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        m = np.array([[sx, 0, (x0 + 0.5) * sx - 0.5 + left], [0, sy, (y0 + 0.5) * sy - 0.5 + top]], np.float32)
        region = cv2.warpAffine(arr[i], m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        origins[i], crops[i] = (x0, y0), region > 0.5
    return BoxMasks(height, width, origins, tuple(crops))


def refilter(raw: RawPrediction, conf: float, iou: float) -> RawPrediction:
    """Confidence threshold, then class-wise NMS at ``iou`` (box IoU, as Ultralytics does)."""
    import torch
    from torchvision.ops import batched_nms

    keep = np.flatnonzero(raw.scores >= conf)
    if len(keep) and iou < raw.iou:
        idx = batched_nms(torch.from_numpy(raw.xyxy[keep]), torch.from_numpy(raw.scores[keep]),
                          torch.from_numpy(raw.classes[keep]), float(iou))
        keep = keep[np.sort(idx.numpy())]
    return replace(
        raw, xyxy=raw.xyxy[keep], scores=raw.scores[keep], classes=raw.classes[keep],
        masks=None if raw.masks is None else raw.masks[keep], conf=conf, iou=iou,
    )


def to_annotations(raw: RawPrediction, class_ids: dict[str, int] | None = None, source: str = "run", *,
                   by_index: Mapping[int, int] | None = None) -> Annotations:
    """Raw prediction -> ``Annotations`` (status ``proposed``).

    ``by_index``: project class id by model class index (:func:`class_map`); else ``class_ids``:
    project class id by name; without either the class ids are the model's indices. Detections
    of classes missing from the mapping are dropped.
    """
    if by_index is None and class_ids is None:
        ids = raw.classes.copy()
        keep = np.ones(len(raw), dtype=bool)
    else:
        if by_index is None:
            by_index = {k: class_ids[name] for k, name in enumerate(raw.names) if name in class_ids}
        mapped = [by_index.get(int(c)) for c in raw.classes]
        keep = np.array([m is not None for m in mapped], dtype=bool)
        ids = np.array([m for m in mapped if m is not None], dtype=np.int64)
    n = int(keep.sum())
    masks = None if raw.masks is None else np.asarray(raw.masks[keep])
    return Annotations(
        xyxy=raw.xyxy[keep],
        class_id=ids,
        confidence=raw.scores[keep],
        mask=masks,
        data={"source": np.full(n, source, dtype=object), "status": np.full(n, "proposed", dtype=object)},
    )


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
