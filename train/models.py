"""Base models, augmentation presets and training settings.

Pure data and validation: nothing here imports Ultralytics, so the CLI and the
UI can check a user's choices instantly; the worker process resolves the model
to a file (:func:`resolve_base_model`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data.errors import InputError, WeightsMissingError
from runtime.status import ModelStatus
from runtime.weights import WeightSpec, find_weights, resolve_device
from runtime.weights import weights_dir as resolve_weights_dir

Task = Literal["detect", "segment"]
TASKS: tuple[str, ...] = ("detect", "segment")
FAMILIES: tuple[str, ...] = ("yolov8", "yolo11", "yolo26")
SIZES: tuple[str, ...] = ("n", "s", "m", "l", "x")


def base_model_names(task: Task | None = None) -> list[str]:
    """Every base model name, e.g. ``yolov8n``, ``yolo11s-seg``."""
    names = []
    for fam in FAMILIES:
        for size in SIZES:
            if task in (None, "detect"):
                names.append(f"{fam}{size}")
            if task in (None, "segment"):
                names.append(f"{fam}{size}-seg")
    return names


# Augmentation presets. "defects": small datasets of small defects on a fixed
# part. Orientation is arbitrary (both flips, small rotations), the part's scale
# barely changes (low scale jitter, so chips stay a few pixels wide), colour is
# mostly fixed by the lighting (low HSV), and mosaic is useful early for context
# variety but is switched off for the last third so the model ends on real
# full-image statistics.
PRESETS: dict[str, dict[str, Any]] = {
    "defects": {
        "fliplr": 0.5,
        "flipud": 0.5,
        "degrees": 10.0,
        "translate": 0.1,
        "scale": 0.25,
        "hsv_h": 0.0,
        "hsv_s": 0.3,
        "hsv_v": 0.2,
        "mosaic": 1.0,
        "mixup": 0.0,
        "close_mosaic_fraction": 0.3,
    },
    "ultralytics-default": {},
    "none": {
        "fliplr": 0.0,
        "flipud": 0.0,
        "degrees": 0.0,
        "translate": 0.0,
        "scale": 0.0,
        "hsv_h": 0.0,
        "hsv_s": 0.0,
        "hsv_v": 0.0,
        "mosaic": 0.0,
        "mixup": 0.0,
        "copy_paste": 0.0,
        "erasing": 0.0,
        "close_mosaic": 0,
    },
}


@dataclass(frozen=True)
class TrainSettings:
    """What a user chooses for one training run. Defaults suit a CPU laptop: they are what
    ``bench train`` measured to learn on a 2-core machine in 15 minutes (mask mAP50 0.82 on the
    sample from scratch): 448 px, a 15-minute budget of up to 300 epochs, and :data:`RECIPE`."""

    task: Task = "segment"
    model: str = "yolov8n-seg"  # a base model name or a path to a .pt / .yaml
    epochs: int = 300
    imgsz: int = 448
    batch: int = 8
    device: str = "auto"
    patience: int = 30
    seed: int = 0
    preset: str = "defects"
    val_fraction: float = 0.2
    workers: int = 2
    time_hours: float | None = 0.25  # Ultralytics' time budget (stops at it or at ``epochs``); None: epochs only
    threads: int = 0  # CPU threads for training; 0: every core (Ultralytics alone would leave one idle)
    nice: int = 0  # raise the training process's niceness by this much (assist rounds: 10, clicks come first)
    weights_dir: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # extra Ultralytics train() arguments

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})


def validate_settings(s: TrainSettings) -> TrainSettings:
    """Check a user's settings; raises :class:`InputError` saying what to change."""
    if s.task not in TASKS:
        raise InputError(f"--task must be one of {', '.join(TASKS)}, not '{s.task}'.")
    check_model_for_task(s.model, s.task)
    if s.preset not in PRESETS:
        raise InputError(f"--preset must be one of {', '.join(PRESETS)}, not '{s.preset}'.")
    for name, value, low in (("epochs", s.epochs, 1), ("imgsz", s.imgsz, 32), ("batch", s.batch, 1),
                             ("patience", s.patience, 0), ("seed", s.seed, 0), ("workers", s.workers, 0),
                             ("threads", s.threads, 0), ("nice", s.nice, 0)):
        if int(value) != value or value < low:
            raise InputError(f"--{name} must be a whole number >= {low}, got {value!r}.")
    if s.imgsz % 32:
        raise InputError(f"--imgsz must be a multiple of 32 (YOLO's stride), got {s.imgsz}; try {round(s.imgsz / 32) * 32 or 32}.")
    if not 0.0 <= s.val_fraction < 1.0:
        raise InputError(f"--val-fraction must be in [0, 1), got {s.val_fraction}.")
    if s.device not in ("auto", "cpu", "cuda", "mps") and not str(s.device).replace(",", "").isdigit():
        raise InputError(f"--device must be auto, cpu, cuda, mps or a GPU index, not '{s.device}'.")
    if s.time_hours is not None and s.time_hours <= 0:
        raise InputError(f"the time budget must be positive, got {s.time_hours} hours.")
    return s


def check_model_for_task(model: str, task: Task) -> None:
    """A base model name must exist and match the task (``yolov8n`` detects, ``yolov8n-seg`` segments)."""
    if _looks_like_path(model):
        path = Path(model)
        if path.suffix == ".yaml" and path.stem in base_model_names() and not path.is_file():
            _check_suffix(path.stem, task, model)  # Ultralytics' own architecture file: explicitly from scratch
            return
        if not path.is_file():
            raise InputError(f"model file {model} does not exist; pass a base model name such as 'yolov8n-seg' or an existing .pt/.yaml.")
        if path.suffix == ".yaml":
            _check_suffix(path.stem, task, model)
        return
    if model not in base_model_names():
        raise InputError(
            f"unknown model '{model}'; use one of {', '.join(base_model_names(task)[:6])}, ... "
            f"(families {', '.join(FAMILIES)}, sizes {''.join(SIZES)}) or a path to a .pt/.yaml."
        )
    _check_suffix(model, task, model)


def _check_suffix(stem: str, task: Task, shown: str) -> None:
    is_seg = stem.endswith("-seg")
    if task == "segment" and not is_seg:
        raise InputError(f"--task segment needs a segmentation model: use '{stem}-seg' instead of '{shown}'.")
    if task == "detect" and is_seg:
        raise InputError(f"--task detect needs a detection model: use '{stem[:-4]}' instead of '{shown}'.")


def _looks_like_path(model: str) -> bool:
    return model.endswith((".pt", ".yaml", ".yml")) or os.sep in model or "/" in model


def training_threads(s: TrainSettings) -> int:
    """The CPU threads a run trains with: ``threads``, or every core when it is 0."""
    return int(s.threads) or max(1, os.cpu_count() or 1)


# How a small dataset learns on a CPU, measured by ``bench train`` on the sample (see its module):
# one optimizer step per batch (Ultralytics accumulates to 64 images, which on a few dozen images
# is one step an epoch), AdamW at a fixed rate, a one-epoch warmup, images cached in RAM (Ultralytics
# checks the memory first and falls back to reading the files).
RECIPE: dict[str, Any] = {"optimizer": "AdamW", "lr0": 0.002, "warmup_epochs": 1, "cache": "ram"}


# Early stopping needs a validation set that can tell a plateau from noise. On a few images one
# found or missed defect moves mAP by a large step, the best epoch comes early by chance, and the
# run stops: in ``bench loop`` a training with a 23-minute budget stopped at epoch 48 (patience
# 30, 4 validation images) at test mask mAP50 0.20, where the same labels trained to the budget
# reached 0.58. Below this many validation images a run trains to its epochs or its time budget.
MIN_VAL_EARLY_STOP = 10


def early_stop_off(s: TrainSettings, n_val: int | None) -> bool:
    """Whether a run's early stopping is switched off for its small validation split."""
    return n_val is not None and n_val < MIN_VAL_EARLY_STOP and bool(s.patience)


def ultralytics_args(s: TrainSettings, n_val: int | None = None) -> dict[str, Any]:
    """The settings as Ultralytics ``train()`` keyword arguments (preset and :data:`RECIPE` expanded;
    ``overrides`` win). ``n_val``: validation images of the run's dataset (early stopping is off
    below :data:`MIN_VAL_EARLY_STOP`)."""
    aug = dict(PRESETS[s.preset])
    fraction = aug.pop("close_mosaic_fraction", None)
    if fraction is not None:
        aug["close_mosaic"] = max(1, round(s.epochs * fraction)) if aug.get("mosaic", 1.0) > 0 else 0
    args: dict[str, Any] = {
        "epochs": int(s.epochs),
        "imgsz": int(s.imgsz),
        "batch": int(s.batch),
        # 0 means "never stop early" to users
        "patience": 10**6 if early_stop_off(s, n_val) else int(s.patience) or 10**6,
        "seed": int(s.seed),
        "deterministic": True,
        "workers": int(s.workers),
        # Plots cost seconds per epoch on a CPU and try to download a font offline.
        "plots": False,
        "nbs": int(s.batch),  # one optimizer step per batch
        **RECIPE,
        **aug,
    }
    if s.time_hours:
        args["time"] = float(s.time_hours)
    args.update(s.overrides)
    return args


@dataclass(frozen=True)
class ModelChoice:
    """What the worker builds the model from."""

    source: str  # a .pt or .yaml path/name YOLO() accepts
    pretrained: bool
    notice: str | None  # shown to the user, e.g. "training from scratch"


def resolve_base_model(model: str, task: Task, weights_dir: str | None, allow_download: bool = True) -> ModelChoice:
    """Pretrained weights from the weights folder, else Ultralytics' download, else the yaml (from scratch)."""
    check_model_for_task(model, task)
    if _looks_like_path(model):
        path = Path(model)
        if path.suffix == ".pt":
            return ModelChoice(str(path.resolve()), True, None)
        source = str(path.resolve()) if path.is_file() else model  # a bare name: Ultralytics' bundled yaml
        return ModelChoice(source, False, _scratch_notice(path.stem))

    folder = resolve_weights_dir(weights_dir)
    # min_bytes: the smallest pretrained YOLO (yolov8n.pt) is about 6 MB; anything far below is truncated.
    spec = WeightSpec(filename=f"{model}.pt", min_bytes=1_000_000, downloadable_by_ultralytics=allow_download)
    try:
        return ModelChoice(str(find_weights(spec, folder, model, download=allow_download)), True, None)
    except WeightsMissingError:
        return ModelChoice(_yaml_name(model), False, _scratch_notice(model, folder))


def _yaml_name(model: str) -> str:
    return f"{model}.yaml"


def _scratch_notice(model: str, folder: Path | None = None) -> str:
    where = f" (put {model}.pt in {folder} to fine-tune instead)" if folder else ""
    return (f"training from scratch: no pretrained weights for {model}{where}; "
            f"a model from scratch needs many more epochs.")


def base_model_statuses(weights_dir: str | None = None, device: str = "auto") -> list[ModelStatus]:
    """Rows for ``python app.py models``: each base model's pretrained file, or the yaml fallback."""
    folder = resolve_weights_dir(weights_dir)
    dev = resolve_device(device)
    rows = []
    for name in base_model_names():
        if name[-1] in "lx" or name.endswith(("l-seg", "x-seg")):
            continue  # listed sizes: n, s, m (l and x are accepted too, but slow on a laptop)
        present = (folder / f"{name}.pt").is_file()
        rows.append(ModelStatus(
            name, "base model", "found" if present else "downloadable", f"{name}.pt", str(folder), dev,
            "" if present else f"downloaded when online; offline: {name}.yaml, from scratch",
        ))
    return rows
