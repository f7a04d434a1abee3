"""The one annotation container passed between every layer.

Modelled on ``supervision.Detections``: parallel arrays plus a ``data`` dict of per-annotation
extras, for ``N`` annotations on one image whose size is part of the container. Masks are kept
as crops inside their boxes and made full size only when a caller asks (:meth:`full_mask`,
:meth:`full_masks`): a 50-annotation image of 12 MP holds the pixels of its defects, not
50 x 12 MB. A row without a crop is a box-only annotation (:attr:`has_mask` tells them apart);
where a full mask of such a row is asked for, it reads as its filled box.

Adapters at the edges build it through named constructors and write it through named
methods, all through :mod:`data.geometry`: :meth:`from_masks` and :meth:`from_sam` (full-size
masks), :meth:`from_ultralytics` (a ``Results``), :meth:`from_rows` (the store's rows),
:meth:`from_coco` / :meth:`from_yolo` (label files), :meth:`to_coco`, :meth:`to_coco_results`
and :meth:`to_yolo`. Nothing downstream of an adapter sees a raw model result, a database row
or a file's object.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from data.errors import InputError
from data.geometry import (
    box_crop,
    clip_crop,
    crop_iou,
    crop_mask,
    crop_tight,
    crop_to_polygons,
    crop_to_rle,
    crop_to_yolo_polygon,
    crop_topology,
    crop_window,
    decode_foreign_rle,
    decode_rle,
    encode_rle,
    mask_to_box,
    paste_crop,
    polygon_area,
    polygons_to_crop,
    yolo_polygon_to_crop,
)

Status = Literal["proposed", "accepted", "rejected"]
STATUSES: tuple[str, ...] = ("proposed", "accepted", "rejected")
NO_CLASS = -1  # class id of a row that has none yet (a segmenter's candidates, a file's unmapped row)
YOLO_PRECISION = 6  # decimals of the normalised coordinates in YOLO label lines

# Extras every container carries, one value per annotation.
_DEFAULT_DATA: dict[str, tuple[Any, Any]] = {
    "id": (np.int64, 0),  # store id, 0 when not stored yet
    "source": (object, "manual"),  # registry name of what produced it
    "status": (object, "accepted"),
}

Crop = np.ndarray | None
OnError = Callable[[int, str], None]


@dataclass(eq=False)
class Annotations:
    """N annotations on one image of ``height x width`` pixels.

    - ``xyxy``: ``(N, 4)`` float32 boxes in pixels, far edge exclusive.
    - ``class_id``: ``(N,)`` int64 class ids (project ids; model or file indices before an
      adapter maps them; :data:`NO_CLASS` for none).
    - ``confidence``: ``(N,)`` float32, ``nan`` where not applicable (manual).
    - ``crops``: one bool ``(h_i, w_i)`` crop per row, or None for a box-only row; the crop's
      top-left pixel is ``origins[i]`` (``x0, y0``). A crop may be ``(0, 0)``: an empty mask.
    - ``data``: per-annotation arrays: ``id``, ``source``, ``status`` and any extras.

    Crops are never written in place by the methods here, so rows may share them.
    """

    height: int
    width: int
    xyxy: np.ndarray
    class_id: np.ndarray
    confidence: np.ndarray
    crops: Sequence[Crop] | None = None
    origins: np.ndarray | None = None
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.height, self.width = int(self.height), int(self.width)
        if self.height < 0 or self.width < 0:
            raise ValueError(f"image size must not be negative, got {self.width}x{self.height}")
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.class_id = np.asarray(self.class_id, dtype=np.int64).reshape(n)
        self.confidence = np.asarray(self.confidence, dtype=np.float32).reshape(n)
        crops = (None,) * n if self.crops is None else tuple(self.crops)
        if len(crops) != n:
            raise ValueError(f"{len(crops)} crops for {n} annotations")
        self.crops = tuple(None if c is None else _as_crop(c) for c in crops)
        origins = np.zeros((n, 2), np.int64) if self.origins is None else np.asarray(self.origins)
        self.origins = origins.astype(np.int64).reshape(n, 2)
        for key, (dtype, default) in _DEFAULT_DATA.items():
            if key not in self.data:
                self.data[key] = np.full(n, default, dtype=dtype)
        for key, values in self.data.items():
            arr = np.asarray(values, dtype=object if _is_text(values) else None)
            if arr.ndim == 0 or len(arr) != n:
                raise ValueError(f"data[{key!r}] has {arr.size} values for {n} annotations")
            self.data[key] = arr

    # ----------------------------------------------------------- constructors
    @classmethod
    def empty(cls, height: int, width: int) -> Annotations:
        return cls(height, width, np.zeros((0, 4)), [], [])

    @classmethod
    def from_crops(
        cls,
        height: int,
        width: int,
        crops: Sequence[np.ndarray],
        origins: np.ndarray | Sequence[tuple[int, int]],
        class_id: int | np.ndarray,
        confidence: float | np.ndarray = np.nan,
        source: str = "manual",
        status: Status = "accepted",
        xyxy: np.ndarray | None = None,
    ) -> Annotations:
        """Masks as crops at ``origins`` (``x0, y0``); boxes from the masks unless ``xyxy`` is given."""
        n = len(crops)
        origins = np.asarray(origins, dtype=np.int64).reshape(n, 2)
        if xyxy is None:
            xyxy = np.zeros((n, 4), np.float32)
            for i, c in enumerate(crops):
                b = mask_to_box(c)
                xyxy[i] = b + (np.tile(origins[i], 2) if b.any() else 0)
        return cls(height, width, xyxy, _per_row(class_id, n, np.int64), _per_row(confidence, n, np.float32),
                   crops=crops, origins=origins, data=_sources(n, source, status))

    @classmethod
    def from_masks(
        cls,
        masks: np.ndarray | Sequence[np.ndarray],
        class_id: int | np.ndarray,
        confidence: float | np.ndarray = np.nan,
        source: str = "manual",
        status: Status = "accepted",
        xyxy: np.ndarray | None = None,
        size: tuple[int, int] | None = None,
    ) -> Annotations:
        """Full-size masks -> rows cut to their boxes. ``masks``: an ``(N, H, W)`` array, one ``(H, W)``
        mask, or a sequence of ``(H, W)`` masks (never stacked: one full-size mask at a time); ``size``
        ``(H, W)`` is needed only for an empty sequence. Boxes from the masks unless ``xyxy`` is given."""
        if isinstance(masks, np.ndarray) and masks.ndim == 2:
            masks = masks[None]
        if isinstance(masks, np.ndarray) and masks.ndim != 3:
            raise ValueError(f"masks must be (N, H, W), got {masks.shape}")
        if size is None:
            if not len(masks) and not isinstance(masks, np.ndarray):
                raise ValueError("an empty sequence of masks needs the image size")
            size = masks.shape[1:] if isinstance(masks, np.ndarray) else np.shape(masks[0])
        h, w = (int(v) for v in size)
        cut = []
        for m in masks:
            if np.shape(m) != (h, w):
                raise ValueError(f"mask of shape {np.shape(m)} in masks of a {w}x{h} image")
            cut.append(crop_mask(np.asarray(m, dtype=bool)))
        return cls.from_crops(h, w, [c for c, _, _ in cut], [(x, y) for _, x, y in cut], class_id, confidence,
                              source, status, xyxy=xyxy)

    @classmethod
    def from_boxes(
        cls,
        height: int,
        width: int,
        xyxy: np.ndarray,
        class_id: int | np.ndarray,
        confidence: float | np.ndarray = np.nan,
        source: str = "manual",
        status: Status = "proposed",
    ) -> Annotations:
        """Box-only rows."""
        xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(xyxy)
        return cls(height, width, xyxy, _per_row(class_id, n, np.int64), _per_row(confidence, n, np.float32),
                   data=_sources(n, source, status))

    @classmethod
    def from_sam(cls, masks: np.ndarray, scores: np.ndarray | None, source: str,
                 class_id: int = NO_CLASS) -> Annotations:
        """A segmenter's candidate masks ``(C, H, W)`` (best first) -> rows cut to their boxes, status
        ``proposed``; ``scores`` (or nan) as the confidence. Empty candidates are kept (as empty crops)."""
        masks = np.asarray(masks, dtype=bool)
        conf = np.full(len(masks), np.nan, np.float32) if scores is None else np.asarray(scores, np.float32)
        return cls.from_masks(masks, class_id, conf, source=source, status="proposed")

    @classmethod
    def from_ultralytics(cls, result: Any, source: str = "model") -> Annotations:
        """An Ultralytics ``Results`` (boxes, and masks of a segment model) -> rows in original image pixels.

        Class ids are the model's class indices (an adapter above maps them to project classes).
        Ultralytics has already cut each mask to its box, so only the box (plus a pixel) is
        resampled, with the same bilinear, half-pixel-centred mapping as its ``scale_masks``:
        upscaling whole images for every detection would cost more than the model itself.
        """
        h, w = (int(v) for v in result.orig_shape)
        boxes = result.boxes
        xyxy = _numpy(boxes.xyxy, np.float32).reshape(-1, 4) if boxes is not None else np.zeros((0, 4), np.float32)
        conf = _numpy(boxes.conf, np.float32) if boxes is not None else np.zeros(0, np.float32)
        cls_ = _numpy(boxes.cls, np.float32).astype(np.int64) if boxes is not None else np.zeros(0, np.int64)
        n = len(xyxy)
        crops: list[Crop] | None = None
        origins = None
        if getattr(result, "masks", None) is not None:
            crops, origins = _letterboxed_crops(_numpy(result.masks.data, np.float32), h, w, xyxy)
        return cls(h, w, xyxy, cls_, conf, crops=crops, origins=origins, data=_sources(n, source, "proposed"))

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence[Any]], height: int, width: int) -> Annotations:
        """The store's rows ``(id, class_id, x0, y0, x1, y1, rle, crop_x, crop_y, source, score, status
        [, updated_at])``, ``rle`` the JSON of the crop's RLE (None: a box-only row); ``updated_at`` (when
        the row was last written, in ``data["updated_at"]``) names the row's version."""
        n = len(rows)
        crops: list[Crop] = []
        origins = np.zeros((n, 2), np.int64)
        for i, r in enumerate(rows):
            if r[6] is None:
                crops.append(None)
                continue
            crops.append(decode_rle(json.loads(r[6])))
            origins[i] = (int(r[7] or 0), int(r[8] or 0))
        data = {"id": np.array([r[0] for r in rows], dtype=np.int64).reshape(n),
                "source": np.array([r[9] for r in rows], dtype=object).reshape(n),
                "status": np.array([r[11] for r in rows], dtype=object).reshape(n)}
        if n and len(rows[0]) > 12:
            data["updated_at"] = np.array([r[12] for r in rows], dtype=np.float64)
        return cls(
            height, width,
            xyxy=np.array([r[2:6] for r in rows], dtype=np.float32).reshape(n, 4),
            class_id=[r[1] for r in rows],
            confidence=[np.nan if r[10] is None else r[10] for r in rows],
            crops=crops, origins=origins, data=data,
        )

    @classmethod
    def from_coco(cls, objects: Sequence[Mapping[str, Any]], categories: Mapping[int, str], height: int,
                  width: int, source: str = "import", on_error: OnError | None = None,
                  on_note: OnError | None = None, skip_crowd: bool = False) -> Annotations:
        """COCO annotation dicts of one image -> rows (class id: the COCO category id; ``data["name"]``:
        its name). Polygons and RLE (compressed or not) become masks, rasterised as pycocotools does;
        a bbox alone, an empty segmentation, or one polygon that is exactly the bbox (what a box
        looks like in COCO) a box-only row. An annotation with a ``score`` (a results file) is a
        ``proposed`` row with that confidence; any other is ``accepted``.

        Crowd regions (``iscrowd``: one mask over several objects; datumaro writes plain masks this
        way) are read as masks and noted, or left out as errors with ``skip_crowd``. A polygon too
        short to draw beside a usable bbox keeps the box, noted. Notes go to ``on_note(index,
        what)``. A dict that cannot be used is left out and reported as ``on_error(index, reason)``;
        without ``on_error`` it raises :class:`InputError`.
        """
        def parse(k: int, obj: Any) -> Annotations:
            row, note = _coco_object(obj, categories, height, width, source, skip_crowd)
            if note and on_note is not None:
                on_note(k, note)
            return row

        return _parse_each(objects, parse, on_error, height, width)

    @classmethod
    def from_yolo(cls, lines: Sequence[str], names: Sequence[str], height: int, width: int,
                  source: str = "import", on_error: OnError | None = None) -> Annotations:
        """YOLO label lines (detect ``c cx cy w h`` or segment ``c x y x y ...``, normalised) -> rows
        (class id: the line's class index; ``data["name"]``: ``names[index]``). Blank lines are skipped;
        a line that cannot be used is reported as ``on_error(line index, reason)`` (else raised)."""
        return _parse_each(lines, lambda _k, line: _yolo_line(line, names, height, width, source) if line.strip()
                           else None, on_error, height, width)

    @classmethod
    def merge(cls, items: Sequence[Annotations], height: int | None = None, width: int | None = None) -> Annotations:
        """Rows of several containers of one image, in order (an extra ``data`` key missing from one
        of them is dropped)."""
        if height is None or width is None:
            if not items:
                raise ValueError("merge of no containers needs the image size")
            height, width = items[0].height, items[0].width
        for a in items:
            if (a.height, a.width) != (height, width):
                raise ValueError(f"cannot merge annotations of a {a.width}x{a.height} image into {width}x{height}")
        items = [a for a in items if len(a)]
        if not items:
            return cls.empty(height, width)
        if len(items) == 1:
            return items[0]
        keys = [k for k in items[0].data if all(k in a.data for a in items[1:])]
        data = {k: np.concatenate([np.asarray(a.data[k], dtype=object) if _is_text(a.data[k]) else a.data[k]
                                   for a in items]) for k in keys}
        return cls(
            height, width,
            xyxy=np.concatenate([a.xyxy for a in items]),
            class_id=np.concatenate([a.class_id for a in items]),
            confidence=np.concatenate([a.confidence for a in items]),
            crops=[c for a in items for c in a.crops],
            origins=np.concatenate([a.origins for a in items]),
            data=data,
        )

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray | list) -> Annotations:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        idx = np.arange(len(self))[index]
        return Annotations(
            self.height, self.width,
            xyxy=self.xyxy[idx],
            class_id=self.class_id[idx],
            confidence=self.confidence[idx],
            crops=[self.crops[i] for i in idx],
            origins=self.origins[idx],
            data={k: v[idx] for k, v in self.data.items()},
        )

    def __iter__(self) -> Iterator[Annotations]:
        for i in range(len(self)):
            yield self[i]

    @property
    def shape(self) -> tuple[int, int]:
        """The image size ``(height, width)``."""
        return self.height, self.width

    @property
    def has_mask(self) -> np.ndarray:
        """``(N,)`` bool: the row has a mask (False: a box-only row)."""
        return np.array([c is not None for c in self.crops], dtype=bool)

    @property
    def ids(self) -> np.ndarray:
        return self.data["id"]

    @property
    def source(self) -> np.ndarray:
        return self.data["source"]

    @property
    def status(self) -> np.ndarray:
        return self.data["status"]

    @property
    def area(self) -> np.ndarray:
        """Mask pixel counts, box areas for box-only rows."""
        wh = (self.xyxy[:, 2:] - self.xyxy[:, :2]).clip(0).prod(1).astype(np.float64)
        return np.array([wh[i] if c is None else float(np.count_nonzero(c)) for i, c in enumerate(self.crops)],
                        dtype=np.float64).reshape(len(self))

    def crop(self, i: int) -> tuple[np.ndarray, int, int]:
        """Row ``i``'s mask as ``(crop, x0, y0)``; a box-only row's is its filled box (clipped to the image)."""
        c = self.crops[i]
        if c is not None:
            return c, int(self.origins[i, 0]), int(self.origins[i, 1])
        return box_crop(self.xyxy[i], self.height, self.width)

    def full_mask(self, i: int) -> np.ndarray:
        """Row ``i``'s mask at full image size, ``(H, W)`` bool (a new array)."""
        out = np.zeros((self.height, self.width), dtype=bool)
        self.paint(out, i, True)
        return out

    def full_masks(self) -> np.ndarray:
        """Every row's mask at full size, ``(N, H, W)`` bool: ``N x H x W`` bytes, for small images only."""
        out = np.zeros((len(self), self.height, self.width), dtype=bool)
        for i in range(len(self)):
            self.paint(out[i], i, True)
        return out

    def window(self, i: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Row ``i``'s mask inside the image window ``[x0, x1) x [y0, y1)``, ``(y1 - y0, x1 - x0)`` bool."""
        c, cx, cy = self.crop(i)
        return crop_window(c, cx, cy, x0, y0, x1, y1)

    def paint(self, image: np.ndarray, i: int, value: object) -> None:
        """Set the pixels of row ``i``'s mask in ``image`` (``(H, W)`` or ``(H, W, C)``) to ``value``."""
        c, x0, y0 = self.crop(i)
        paste_crop(image, c, x0, y0, value)

    def iou(self, i: int, other: Annotations, j: int) -> float:
        """Mask IoU of row ``i`` and ``other``'s row ``j`` (box-only rows as their filled boxes)."""
        a, ax, ay = self.crop(i)
        b, bx, by = other.crop(j)
        return crop_iou(a, (ax, ay), b, (bx, by))

    # -------------------------------------------------------------- changes
    def with_status(self, status: Status) -> Annotations:
        out = self[np.arange(len(self))]
        out.data["status"] = np.full(len(out), status, dtype=object)
        return out

    def with_box_masks(self) -> Annotations:
        """The same rows, each box-only one given its filled box as a crop (what :meth:`crop` reads it
        as), so every row has a mask that can be edited and stored."""
        out = self[np.arange(len(self))]
        cut = [out.crop(i) for i in range(len(out))]
        out.crops = tuple(c for c, _, _ in cut)
        out.origins = np.array([(x, y) for _, x, y in cut], dtype=np.int64).reshape(len(out), 2)
        return out

    def with_class_ids(self, class_id: int | np.ndarray) -> Annotations:
        out = self[np.arange(len(self))]
        out.class_id = _per_row(class_id, len(out), np.int64)
        return out

    def with_data(self, data: Mapping[str, Any]) -> Annotations:
        """The same rows with ``data`` keys set (or replaced)."""
        out = self[np.arange(len(self))]
        out.data.update({k: np.asarray(v, dtype=object if _is_text(v) else None) for k, v in data.items()})
        out.__post_init__()
        return out

    def filter(self, keep: np.ndarray) -> Annotations:
        return self[np.asarray(keep, dtype=bool)]

    def without_masks(self) -> Annotations:
        """The same rows, box-only."""
        out = self[np.arange(len(self))]
        out.crops = (None,) * len(out)
        out.origins = np.zeros((len(out), 2), np.int64)
        return out

    def tight(self) -> Annotations:
        """Each crop cut to the box of its pixels and to the image (what the store keeps)."""
        out = self[np.arange(len(self))]
        crops, origins = [], out.origins.copy()
        for i, c in enumerate(out.crops):
            if c is None:
                crops.append(None)
                continue
            c, x, y = clip_crop(c, int(origins[i, 0]), int(origins[i, 1]), self.height, self.width)
            c, x, y = crop_tight(c, x, y)
            crops.append(c)
            origins[i] = (x, y) if c.size else (0, 0)
        out.crops, out.origins = tuple(crops), origins
        return out

    # --------------------------------------------------------------- writers
    def polygons(self, i: int) -> list[list[float]]:
        """Row ``i``'s outlines in image pixels, one per part, on pixel edges (``geometry.crop_to_polygons``:
        exact for pycocotools, holes filled); a box-only row's box as one polygon."""
        if self.crops[i] is None:
            x0, y0, x1, y1 = (round(float(v), 2) for v in self.xyxy[i])
            return [[x0, y0, x1, y0, x1, y1, x0, y1]]
        c, x0, y0 = self.crop(i)
        return crop_to_polygons(c, x0, y0)

    def rle(self, i: int) -> dict:
        """Row ``i``'s mask as full-image COCO compressed RLE (str counts)."""
        c, x0, y0 = self.crop(i)
        return crop_to_rle(c, x0, y0, self.height, self.width)

    def to_coco(self, image_id: int, category_of: Mapping[int, int], first_id: int = 1,
                as_rle: bool = False) -> list[dict]:
        """COCO instances of the rows: polygons (default, holes filled, one per part) or compressed RLE;
        ``area`` and ``bbox`` from the mask; ids from ``first_id``; ``category_of`` maps class ids to
        COCO category ids. A box-only row is its bbox plus the box polygon, in both modes."""
        out = []
        for i in range(len(self)):
            if self.crops[i] is None:
                x0, y0, x1, y1 = (round(float(v), 2) for v in self.xyxy[i])
                segmentation: Any = self.polygons(i)
                area = round((x1 - x0) * (y1 - y0), 2)
                bbox = [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)]
            else:
                c, cx, cy = self.crop(i)
                c, cx, cy = clip_crop(c, cx, cy, self.height, self.width)
                if as_rle:
                    segmentation, area = self.rle(i), float(np.count_nonzero(c))
                else:  # the area of what the polygons draw: the mask with its holes filled
                    segmentation = crop_to_polygons(c, cx, cy)
                    area = float(sum(polygon_area(p) for p in segmentation))
                    if len(segmentation) == 1 and len(segmentation[0]) == 8:  # a rectangular mask: closed
                        segmentation = [segmentation[0] + segmentation[0][:2]]  # so it does not read as a box
                b = mask_to_box(c)
                bx0, by0 = (float(b[0] + cx), float(b[1] + cy)) if area else (0.0, 0.0)
                bbox = [bx0, by0, float(b[2] - b[0]), float(b[3] - b[1])]
            out.append({"id": first_id + i, "image_id": image_id, "category_id": int(category_of[int(self.class_id[i])]),
                        "segmentation": segmentation, "area": area, "bbox": bbox, "iscrowd": 0})
        return out

    def to_coco_results(self, image_id: int, category_of: Mapping[int, int] | None = None,
                        rounded: bool = False) -> list[dict]:
        """COCO results (``loadRes``) of the rows: XYWH ``bbox``, ``score``, RLE ``segmentation`` for rows
        with a mask. ``category_of`` maps class ids (default: the class id itself); ``rounded``: bbox to
        0.01 px and score to 5 decimals (files users read)."""
        out = []
        for i in range(len(self)):
            x0, y0, x1, y1 = (float(v) for v in self.xyxy[i])
            bbox = [x0, y0, x1 - x0, y1 - y0]
            score = float(self.confidence[i])
            if rounded:
                bbox = [round(v, 2) for v in bbox]
                score = round(score, 5)
            cid = int(self.class_id[i])
            item: dict[str, Any] = {"image_id": image_id, "category_id": category_of[cid] if category_of else cid,
                                    "bbox": bbox, "score": score}
            if self.crops[i] is not None:
                item["segmentation"] = self.rle(i)
            out.append(item)
        return out

    def to_yolo(self, fmt: Literal["yolo-detect", "yolo-segment"], class_index: Mapping[int, int]) -> list[str]:
        """YOLO label lines: ``yolo-detect`` the boxes; ``yolo-segment`` one polygon per row, exact for
        Ultralytics' reader (``geometry.crop_to_yolo_polygon``: holes filled, a mask in several parts
        joined by bridges); a box-only or empty row: its box."""
        index = [int(class_index[int(c)]) for c in self.class_id]
        scale = np.array([self.width, self.height], dtype=np.float64)
        if fmt == "yolo-detect":  # all rows at once: centre and size, normalised
            b = self.xyxy.astype(np.float64)
            vals = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
            vals = np.clip(vals / np.tile(scale, 2), 0.0, 1.0)
            row = " ".join([f"%.{YOLO_PRECISION}f"] * 4)
            return [f"{idx} {row % tuple(v)}" for idx, v in zip(index, vals.tolist(), strict=True)]
        lines = []
        for i in range(len(self)):
            idx = index[i]
            x0, y0, x1, y1 = (float(v) for v in self.xyxy[i])
            # A box-only row: the polygon of its pixels (box_crop), so Ultralytics draws the box, not a pixel more.
            poly = crop_to_yolo_polygon(*(self.crop(i) if self.crops[i] is not None else
                                          box_crop(self.xyxy[i], self.height, self.width)))[0]
            if not poly:
                poly = [x0, y0, x1, y0, x1, y1, x0, y1]
            pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2) / scale
            lines.append(f"{idx} {_fmt(pts.reshape(-1))}")
        return lines

    def polygon_losses(self) -> tuple[int, int]:
        """``(masks with holes, masks in several parts)``: what polygons change (holes are filled;
        YOLO, one polygon an instance, joins the parts). Box-only rows have neither."""
        holes = parts = 0
        for i in range(len(self)):
            if self.crops[i] is not None:
                n_parts, n_holes = crop_topology(self.crops[i])
                holes += n_holes > 0
                parts += n_parts > 1
        return holes, parts

    def pack(self) -> PackedAnnotations:
        """The rows with their crops RLE-encoded: what a mask kept aside (an undo history) should cost."""
        return PackedAnnotations(self.without_masks(), tuple(self.crop_json(i) for i in range(len(self))),
                                 self.origins.copy())

    def crop_json(self, i: int) -> str | None:
        """Row ``i``'s crop as the JSON of its RLE (what the store keeps), None for a box-only row."""
        c = self.crops[i]
        return None if c is None else json.dumps(encode_rle(c))


@dataclass(frozen=True, eq=False)
class PackedAnnotations:
    """:class:`Annotations` kept aside, each crop as the JSON of its RLE (None: a box-only row).

    A mask's runs cost bytes per edge, its pixels bytes per pixel: a candidate covering most of
    a 12 MP image is 12 MB as a crop and a few kB packed. :meth:`unpack` gives the rows back.
    """

    rows: Annotations  # the rows without their masks
    rles: tuple[str | None, ...]
    origins: np.ndarray

    @property
    def ids(self) -> np.ndarray:
        return self.rows.ids

    def __len__(self) -> int:
        return len(self.rows)

    def with_data(self, data: Mapping[str, Any]) -> PackedAnnotations:
        return PackedAnnotations(self.rows.with_data(data), self.rles, self.origins)

    def unpack(self) -> Annotations:
        r = self.rows
        crops = [None if t is None else decode_rle(json.loads(t)) for t in self.rles]
        return Annotations(r.height, r.width, r.xyxy, r.class_id, r.confidence, crops=crops, origins=self.origins,
                           data=dict(r.data))


# ------------------------------------------------------------------ helpers
def _as_crop(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c)
    if c.ndim != 2:
        raise ValueError(f"a crop must be (h, w), got {c.shape}")
    return c if c.dtype == bool else c.astype(bool)


def _parse_each(items: Sequence[Any], parse: Callable[[int, Any], Annotations | None], on_error: OnError | None,
                height: int, width: int) -> Annotations:
    """``parse`` of each item (one row, or None: nothing to read) merged, with a ``data["name"]`` column;
    an item that raises InputError is reported as ``on_error(index, reason)`` (else the error is raised)."""
    rows: list[Annotations] = []
    for k, item in enumerate(items):
        try:
            row = parse(k, item)
        except InputError as err:
            if on_error is None:
                raise
            on_error(k, str(err))
        else:
            if row is not None:
                rows.append(row)
    return _named(Annotations.merge(rows, height, width))


def _named(ann: Annotations) -> Annotations:
    """``ann`` with a ``data["name"]`` column (empty for no rows)."""
    if "name" not in ann.data:
        ann.data["name"] = np.full(len(ann), "", dtype=object)
    return ann


def _per_row(value: Any, n: int, dtype: Any) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=dtype), (n,)).copy()


def _sources(n: int, source: str, status: str) -> dict[str, np.ndarray]:
    return {"source": np.full(n, source, dtype=object), "status": np.full(n, status, dtype=object)}


def _is_text(values: Any) -> bool:
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    return arr.dtype == object or arr.dtype.kind in "US"


def _numpy(t: Any, dtype: Any) -> np.ndarray:
    """A tensor (any device) or array as a NumPy array."""
    if hasattr(t, "cpu"):
        t = t.float().cpu().numpy() if hasattr(t, "float") else t.cpu().numpy()
    return np.asarray(t, dtype=dtype)


def _fmt(values: np.ndarray) -> str:
    vals = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0).tolist()
    return " ".join([f"%.{YOLO_PRECISION}f"] * len(vals)) % tuple(vals)


def _letterboxed_crops(arr: np.ndarray, height: int, width: int,
                       xyxy: np.ndarray) -> tuple[list[Crop], np.ndarray]:
    """Letterboxed model-size masks ``(N, mh, mw)`` -> crops of each box (plus a pixel) in original pixels."""
    n = len(arr)
    origins = np.zeros((n, 2), np.int64)
    crops: list[Crop] = [np.zeros((0, 0), bool)] * n
    if n == 0:
        return crops, origins
    mh, mw = arr.shape[1:]
    gain = min(mh / height, mw / width)
    ch, cw = max(round(height * gain), 1), max(round(width * gain), 1)  # content size inside the padding
    top, left = round((mh - ch) / 2 - 0.1), round((mw - cw) / 2 - 0.1)
    sy, sx = ch / height, cw / width
    boxes = np.asarray(xyxy, dtype=np.float64)
    for i in range(n):
        x0, y0 = max(int(np.floor(boxes[i, 0])) - 1, 0), max(int(np.floor(boxes[i, 1])) - 1, 0)
        x1, y1 = min(int(np.ceil(boxes[i, 2])) + 1, width), min(int(np.ceil(boxes[i, 3])) + 1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        m = np.array([[sx, 0, (x0 + 0.5) * sx - 0.5 + left], [0, sy, (y0 + 0.5) * sy - 0.5 + top]], np.float32)
        region = cv2.warpAffine(arr[i], m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_REPLICATE)
        origins[i], crops[i] = (x0, y0), region > 0.5
    return crops, origins


def _coco_object(obj: Any, categories: Mapping[int, str], height: int, width: int, source: str,
                 skip_crowd: bool = False) -> tuple[Annotations, str | None]:
    """One COCO annotation dict -> ``(one row, a note or None)``; raises InputError with the reason
    it cannot be used."""
    if not isinstance(obj, Mapping):
        raise InputError(f"an annotation must be a JSON object, got {type(obj).__name__}.")
    note = None
    if obj.get("iscrowd"):
        if skip_crowd:
            raise InputError("crowd region (iscrowd=1), left out as asked (--skip-crowd).")
        note = "crowd region (iscrowd=1) imported as one mask."
    cat = obj.get("category_id")
    if not isinstance(cat, int) or isinstance(cat, bool) or cat not in categories:
        raise InputError(f"unknown category id {cat!r} (not in 'categories').")
    status, confidence = "accepted", np.nan
    if "score" in obj:  # a results file: detections to review, not labels
        if not _finite(obj["score"]) or abs(float(obj["score"])) > float(np.finfo(np.float32).max):
            raise InputError(f"score {str(obj['score'])[:40]} is not a finite number (of 32 bits).")
        status, confidence = "proposed", float(obj["score"])
    data = {**_sources(1, source, status), "name": np.array([categories[cat]], dtype=object)}
    box, box_fault = _coco_bbox(obj.get("bbox"), height, width)

    def box_row() -> Annotations:
        return Annotations(height, width, [box], [cat], [confidence], data=data)

    seg = obj.get("segmentation")
    if not seg:  # absent, None, [] or {}: a box
        if box is None:
            raise InputError(f"no segmentation and {box_fault}.")
        return box_row(), note
    if isinstance(seg, list) and box is not None and _is_box_polygon(seg, obj["bbox"]):
        return box_row(), note  # the polygon is the box: how a box-only label is written
    try:
        crop, x0, y0, part_note = _coco_segmentation(seg, height, width)
        note = note or part_note
        if not crop.any():
            raise InputError("empty mask (the segmentation covers no pixel).")
    except InputError as err:
        if box is None or not isinstance(seg, list):
            raise
        return box_row(), f"{str(err).rstrip('.')}; kept its bbox as a box-only label."
    row = Annotations.from_crops(height, width, [crop], [(x0, y0)], cat, confidence=confidence)
    return row.with_data(data), note


def _coco_bbox(bbox: Any, height: int, width: int) -> tuple[list[float] | None, str]:
    """A COCO ``[x, y, w, h]`` as an XYXY box clipped to the image, or ``(None, why not)``."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_finite(v) for v in bbox)):
        return None, "no usable bbox (4 finite numbers)"
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        return None, f"bbox {bbox} has no width or height"
    x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
    if x1 <= x0 or y1 <= y0:
        return None, f"bbox {bbox} lies outside the {width}x{height} image"
    return [x0, y0, x1, y1], ""


def _is_box_polygon(seg: list, bbox: list) -> bool:
    """One polygon of four corners that is exactly the (unclipped) bbox."""
    if len(seg) != 1 or not isinstance(seg[0], list) or len(seg[0]) != 8 or not all(_finite(v) for v in seg[0]):
        return False
    x, y, w, h = (float(v) for v in bbox)
    pts = np.asarray(seg[0], dtype=np.float64).reshape(4, 2)
    corners = {(x, y), (x + w, y), (x + w, y + h), (x, y + h)}
    near = all(any(abs(px - cx) < 0.01 and abs(py - cy) < 0.01 for cx, cy in corners) for px, py in pts)
    return near and len({(round(px, 2), round(py, 2)) for px, py in pts}) == 4


def _coco_segmentation(seg: Any, height: int, width: int) -> tuple[np.ndarray, int, int, str | None]:
    """The mask of a segmentation as a crop, and a note when part of it was left out."""
    if isinstance(seg, dict):
        size = seg.get("size")
        try:
            same = [int(size[0]), int(size[1])] == [height, width] and len(size) == 2
        except (TypeError, ValueError, IndexError, KeyError, OverflowError):
            same = False
        if not same:
            raise InputError(f"RLE size {str(size)[:40]} does not match the {width}x{height} image.")
        try:
            return (*crop_mask(decode_foreign_rle(seg)), None)
        except (ValueError, TypeError, KeyError, UnicodeError, OverflowError) as err:
            raise InputError(f"unreadable RLE ({err}).") from err
    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, list)]
        valid = [p for p in polys if len(p) >= 6 and len(p) % 2 == 0 and all(_finite(v) for v in p)]
        if not valid:
            raise InputError("polygon with fewer than 3 points (or with a value that is not a finite number).")
        left = len(seg) - len(valid)
        note = (f"{left} of its {len(seg)} polygons left out (fewer than 3 points, or a value that is not a "
                f"finite number); the rest imported." if left else None)
        return (*polygons_to_crop(valid, height, width), note)
    raise InputError(f"segmentation of type {type(seg).__name__} is neither polygons nor RLE.")


def _finite(v: Any) -> bool:
    """A JSON number that is a finite float (``10**400`` is an int no float can hold)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return bool(np.isfinite(float(v)))
    except OverflowError:
        return False


def _yolo_line(line: str, names: Sequence[str], height: int, width: int, source: str) -> Annotations:
    """One YOLO label line -> one row; raises InputError with the reason it cannot be used."""
    parts = line.split()
    n_classes = len(names)
    try:
        cls = int(parts[0])
        values = np.array([float(v) for v in parts[1:]], dtype=np.float64)
    except (ValueError, IndexError) as err:
        raise InputError(f"malformed line '{line[:40]}' (expected 'class x y ...').") from err
    if not 0 <= cls < n_classes:
        raise InputError(f"class id {cls} out of range (data.yaml has {n_classes} names: 0..{n_classes - 1}).")
    if not np.all(np.isfinite(values)) or values.min(initial=0) < 0 or values.max(initial=0) > 1:
        raise InputError("coordinates out of range (normalised values must be within 0..1).")
    data = {**_sources(1, source, "accepted"), "name": np.array([names[cls]], dtype=object)}
    if len(values) == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise InputError("box with zero width or height.")
        x0, y0 = max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height)
        x1, y1 = min(float(width), (cx + w / 2) * width), min(float(height), (cy + h / 2) * height)
        return Annotations(height, width, [[x0, y0, x1, y1]], [cls], [np.nan], data=data)
    if len(values) < 6 or len(values) % 2:
        raise InputError(f"a line needs 4 box values or an even number (>= 6) of polygon values, got {len(values)}.")
    poly = (values.reshape(-1, 2) * np.array([width, height], dtype=np.float64)).reshape(-1).tolist()
    crop, x0, y0 = yolo_polygon_to_crop(poly, height, width)  # as Ultralytics draws it when it trains
    if not crop.any():
        raise InputError("empty mask (the polygon covers no pixel).")
    return Annotations.from_crops(height, width, [crop], [(x0, y0)], cls).with_data(data)

