"""Proposers by registry name, built lazily (importing this module loads no model).

Names (stored as each proposal's ``source``):
- ``anomaly``: weight-free, against the project's ``good`` images;
- ``yoloworld-v2-s`` / ``-m`` / ``-l`` / ``-x`` (``yoloworld`` alone means the project's
  setting ``yoloworld_size``, default ``s``): Ultralytics YOLO-World with text prompts;
- ``PREFIX:ARG`` names registered by a layer above (``run:ID``, a training run of the project,
  registered by the wiring through :func:`register_factory`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from annotate.proposers.anomaly import AnomalyProposer, NearestClass, region_features
from annotate.proposers.base import Proposer
from annotate.proposers.yoloworld import CLIP_FILE, YOLOWORLD_SIZES, YoloWorldProposer, clip_problem, yoloworld_file
from data.errors import InputError
from data.names import clean_name
from runtime.status import ModelStatus
from runtime.weights import resolve_device, weights_dir

# Scores below these are not proposed unless --min-score says otherwise. The anomaly score is
# 0.5 at its own seed threshold (see annotate.proposers.anomaly), so 0.5 keeps every region it finds.
DEFAULT_MIN_SCORE = {"anomaly": 0.5, "yoloworld": 0.05, "run": 0.25}
# How many good images the anomaly proposer uses at most (spread over the project's good images).
MAX_REFERENCES = 12
# Accepted annotations sampled to learn the nearest class by appearance.
MAX_CLASS_EXAMPLES = 300


def is_anomaly(name: str) -> bool:
    return name == "anomaly"


def canonical_name(name: str, project: Any = None) -> str:
    """``yoloworld`` -> ``yoloworld-v2-<size>`` (the project's setting, default s); others unchanged."""
    name = name.strip()
    if name == "yoloworld":
        size = project.get_setting("yoloworld_size", "s") if project is not None else "s"
        return f"yoloworld-v2-{size}"
    if name.startswith("yoloworld-") and not name.startswith("yoloworld-v2-"):
        return f"yoloworld-v2-{name.split('-', 1)[1]}"
    return name


class ProposerFactory(Protocol):
    """Proposers named ``PREFIX:ARG`` that a layer above registers (a training run: ``run:ID``)."""

    #: how ``python app.py models`` lists them, e.g. ``run:ID``
    listed_as: str

    def create(self, arg: str, *, project: Any, device: str) -> Proposer: ...

    def status(self, device: str) -> ModelStatus: ...


_FACTORIES: dict[str, ProposerFactory] = {}


def register_factory(prefix: str, factory: ProposerFactory) -> None:
    """Make ``PREFIX:ARG`` names build proposers through ``factory`` (the wiring calls this)."""
    _FACTORIES[prefix] = factory


def proposer_names() -> list[str]:
    return ["anomaly", *(f"yoloworld-v2-{s}" for s in YOLOWORLD_SIZES), *(f.listed_as for f in _FACTORIES.values())]


def weights_folder(arg: str | os.PathLike | None) -> Path:
    return weights_dir(arg)


def device_for(device: str) -> str:
    return resolve_device(device)


def create_proposer(
    name: str,
    *,
    project: Any = None,
    weights_dir: str | None = None,
    device: str = "auto",
    class_id: int | None = None,
    references: list[np.ndarray] | None = None,
    vocabulary: dict[int, tuple[str, ...]] | None = None,
) -> Proposer:
    """Build a proposer.

    - ``anomaly``: ``references`` (RGB images) or the project's ``good`` images; ``class_id`` or,
      without it, the nearest class by appearance over the project's accepted annotations.
    - ``yoloworld*``: ``vocabulary`` ``{class_id: prompts}`` or the project's classes (name + prompts).
    - ``run:ID``: needs ``project``.
    Raises InputError for unknown names or missing inputs, WeightsMissingError for missing files.
    """
    name = canonical_name(name, project)
    if is_anomaly(name):
        return _anomaly(project, class_id, references)
    if name.startswith("yoloworld-v2-"):
        size = name.rsplit("-", 1)[1]
        if size not in YOLOWORLD_SIZES:
            raise InputError(f"YOLO-World size '{size}' is unknown; use one of {', '.join(YOLOWORLD_SIZES)}.")
        if vocabulary is None:
            if project is None:
                raise InputError("YOLO-World needs class prompts: give a project or a vocabulary.")
            vocabulary = project_vocabulary(project)
        cache_dir = project.path("cache", "text") if project is not None else None
        return YoloWorldProposer.from_weights(
            size, vocabulary, weights_folder(weights_dir), device_for(device), cache_dir=cache_dir
        )
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _FACTORIES:
        return _FACTORIES[prefix].create(rest, project=project, device=device_for(device))
    raise InputError(f"unknown proposer '{name}'; choose one of {', '.join(proposer_names())}.")


def project_vocabulary(project: Any) -> dict[int, tuple[str, ...]]:
    """``{class_id: (name, *synonyms)}``: the class name (underscores as spaces) plus the user's prompts."""
    vocab = {}
    for c in project.classes():
        words = [c.name.replace("_", " "), *c.prompts]
        seen: list[str] = []
        for w in words:
            w = clean_name(w)
            if w and w not in seen:
                seen.append(w)
        vocab[c.id] = tuple(seen)
    if not vocab:
        raise InputError("the project has no classes; add one before asking YOLO-World for proposals.")
    return vocab


def _anomaly(project: Any, class_id: int | None, references: list[np.ndarray] | None) -> Proposer:
    if references is None:
        if project is None:
            raise InputError("the anomaly proposer needs reference images or a project with 'good' images.")
        goods = project.images(status="good")
        if not goods:
            raise InputError(
                "the anomaly proposer compares with defect-free images, and this project has none: "
                "mark a few images as 'good' first."
            )
        pick = np.linspace(0, len(goods) - 1, min(len(goods), MAX_REFERENCES)).round().astype(int)
        references = [project.load_image(goods[i].id) for i in sorted(set(pick.tolist()))]
    classifier = None
    if class_id is None and project is not None:
        feats, ids = _class_examples(project, region_features)
        classifier = NearestClass(feats, ids)  # raises a clear InputError when there are no examples
    return AnomalyProposer(references, class_id=class_id, classifier=classifier)


def _class_examples(project: Any, featurize: Any) -> tuple[np.ndarray, np.ndarray]:
    feats, ids = [], []
    for rec in project.images():
        ann = project.annotations(rec.id, statuses=("accepted",))
        if not len(ann):
            continue
        image = project.load_image(rec.id)
        for a in ann:
            feats.append(featurize(image, a.full_mask(0)))
            ids.append(int(a.class_id[0]))
        if len(feats) >= MAX_CLASS_EXAMPLES:
            break
    return (np.array(feats) if feats else np.zeros((0, 8))), np.array(ids, dtype=np.int64)


# ------------------------------------------------------------------ listing
def proposer_statuses(weights_dir: str | None = None, device: str = "auto") -> list[ModelStatus]:
    """Rows for ``python app.py models`` (kind ``proposer``)."""
    folder = weights_folder(weights_dir)
    dev = device_for(device)
    rows = [
        ModelStatus("anomaly", "proposer", "builtin", "-", "-", "cpu",
                       "weight-free: compares with the project's 'good' images"),
    ]
    clip_ok = (folder / CLIP_FILE).is_file()
    broken = clip_problem()
    for s in YOLOWORLD_SIZES:
        f = yoloworld_file(s)
        ok = (folder / f).is_file()
        missing = [x for x, present in ((f, ok), (CLIP_FILE, clip_ok)) if not present]
        note = "text prompts per class" if not missing else f"unavailable: needs {' and '.join(missing)}"
        if broken:
            note += f"; {broken}"
        rows.append(ModelStatus(f"yoloworld-v2-{s}", "proposer", "found" if not missing else "missing",
                                   f, str(folder), dev, note))
    rows.extend(f.status(dev) for f in _FACTORIES.values())
    return rows

