"""Every segmenter by name, lazily built (importing this module imports no torch).

Names (also the ``source`` stored on annotations): ``sam-vit-h``, ``sam-vit-l``,
``sam-vit-b`` (segment-anything checkpoints), ``sam2.1-l``/``-b``/``-s``/``-t`` and
``mobile-sam`` (Ultralytics), ``classical`` (weight-free fallback).

The default is the most accurate segmenter whose weights are present and that is fast enough on
the device (``cpu_ok``: on a CPU the ViT-L/H and SAM 2.1-b/l encoders take many seconds per
image); with none present it is ``classical``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from annotate.cache import DEFAULT_MAX_BYTES, EmbeddingCache
from annotate.segmenters.base import Segmenter
from annotate.segmenters.classical import ClassicalSegmenter
from annotate.segmenters.sam import SamSegmenter, build_sam
from annotate.segmenters.ultralytics_sam import UltralyticsSamSegmenter, build_model
from data.errors import InputError, StudioError, WeightsMissingError
from runtime.status import ModelStatus
from runtime.weights import WeightSpec, find_weights, resolve_device, weight_state, weights_dir

Family = Literal["segment-anything", "ultralytics", "classical"]

_SA_URL = "https://github.com/facebookresearch/segment-anything#model-checkpoints"
_UL_URL = "https://github.com/ultralytics/assets/releases"


@dataclass(frozen=True)
class SegmenterSpec:
    name: str
    family: Family
    weights: WeightSpec | None
    cpu_ok: bool  # fast enough to be the default on a CPU
    rank: int  # accuracy rank, 1 = most accurate
    variant: str = ""  # segment-anything registry key
    description: str = ""


# Sizes are the published checkpoint sizes; ``min_bytes`` sits a little below them so a
# truncated download is caught. Hashes are not pinned (not verifiable offline here).
SPECS: dict[str, SegmenterSpec] = {
    s.name: s
    for s in [
        SegmenterSpec("sam-vit-h", "segment-anything", WeightSpec("sam_vit_h_4b8939.pth", 2_400_000_000, None, False, _SA_URL),
                      False, 1, "vit_h", "SAM ViT-H (segment-anything), most accurate, slow"),
        SegmenterSpec("sam2.1-l", "ultralytics", WeightSpec("sam2.1_l.pt", 200_000_000, None, True, _UL_URL),
                      False, 2, "", "SAM 2.1 large (Ultralytics)"),
        SegmenterSpec("sam-vit-l", "segment-anything", WeightSpec("sam_vit_l_0b3195.pth", 1_150_000_000, None, False, _SA_URL),
                      False, 3, "vit_l", "SAM ViT-L (segment-anything)"),
        SegmenterSpec("sam2.1-b", "ultralytics", WeightSpec("sam2.1_b.pt", 70_000_000, None, True, _UL_URL),
                      False, 4, "", "SAM 2.1 base+ (Ultralytics)"),
        SegmenterSpec("sam-vit-b", "segment-anything", WeightSpec("sam_vit_b_01ec64.pth", 350_000_000, None, False, _SA_URL),
                      True, 5, "vit_b", "SAM ViT-B (segment-anything)"),
        SegmenterSpec("sam2.1-s", "ultralytics", WeightSpec("sam2.1_s.pt", 35_000_000, None, True, _UL_URL),
                      True, 6, "", "SAM 2.1 small (Ultralytics)"),
        SegmenterSpec("sam2.1-t", "ultralytics", WeightSpec("sam2.1_t.pt", 30_000_000, None, True, _UL_URL),
                      True, 7, "", "SAM 2.1 tiny (Ultralytics)"),
        SegmenterSpec("mobile-sam", "ultralytics", WeightSpec("mobile_sam.pt", 35_000_000, None, True, _UL_URL),
                      True, 8, "", "MobileSAM (Ultralytics), fastest SAM"),
        SegmenterSpec("classical", "classical", None, True, 99, "",
                      "weight-free: deviation from the surround + threshold sweep (fallback)"),
    ]
}
FALLBACK = "classical"


def names() -> list[str]:
    """Registry names, most accurate first."""
    return sorted(SPECS, key=lambda n: SPECS[n].rank)


def get_spec(name: str) -> SegmenterSpec:
    spec = SPECS.get(name)
    if spec is None:
        raise InputError(f"unknown segmenter '{name}': choose one of {', '.join(names())}")
    return spec


def model_statuses(weights: str | Path | None = None, device: str = "auto") -> list[ModelStatus]:
    """Every segmenter with the state of its weight file and the device it would run on."""
    folder = weights_dir(weights)
    dev = resolve_device(device)
    out = []
    for n in names():
        spec = SPECS[n]
        if spec.weights is None:
            out.append(ModelStatus(n, "segmenter", "builtin", "-", "-", "cpu", "no weight file needed"))
            continue
        state, note = weight_state(spec.weights, folder)
        if state in ("found", "downloadable") and dev == "cpu" and not spec.cpu_ok:
            note = (note + "; " if note else "") + "slow on CPU: not chosen by default"
        out.append(ModelStatus(n, "segmenter", state, spec.weights.filename, str(folder), dev, note))
    return out


def default_segmenter_name(weights: str | Path | None = None, device: str = "auto") -> tuple[str, str]:
    """``(name, reason)``: the most accurate present segmenter fast enough on the device."""
    folder = weights_dir(weights)
    dev = resolve_device(device)
    for n in names():
        spec = SPECS[n]
        if spec.weights is None:
            continue
        if dev == "cpu" and not spec.cpu_ok:
            continue
        if weight_state(spec.weights, folder)[0] == "found":
            return n, f"most accurate segmenter whose weights are in {folder} and that is fast enough on {dev}"
    best = next(SPECS[n] for n in names() if SPECS[n].weights is not None and (dev != "cpu" or SPECS[n].cpu_ok))
    return FALLBACK, (
        f"no SAM weights found in {folder}: using the weight-free '{FALLBACK}' segmenter. For better masks put "
        f"'{best.weights.filename}' ({best.name}) there ({best.weights.url_hint})"
    )


def create_segmenter(
    name: str | None = None,
    weights: str | Path | None = None,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    random_init: bool = False,
    cache_bytes: int | None = None,
) -> Segmenter:
    """Build ``name`` (``None``: the default) on ``device``.

    ``cache_dir`` is the project's embeddings folder (``annotate.cache.embeddings_dir``);
    ``random_init`` builds the real architecture with random weights (tests and latency only).
    Raises ``WeightsMissingError`` when the file is missing or corrupt.
    """
    if name is None or name == "auto":
        name = default_segmenter_name(weights, device)[0]
    spec = get_spec(name)
    if spec.family == "classical":
        return ClassicalSegmenter()
    dev = resolve_device(device)
    cache = EmbeddingCache(name, cache_bytes or DEFAULT_MAX_BYTES, cache_dir)
    ckpt = None
    if not random_init:
        assert spec.weights is not None
        ckpt = str(find_weights(spec.weights, weights_dir(weights), model=name))
    try:
        if spec.family == "segment-anything":
            seg = SamSegmenter(name, build_sam(spec.variant, ckpt), dev, cache)
        else:
            seg = UltralyticsSamSegmenter(name, build_model(name, ckpt), dev, sam2=name.startswith("sam2"),
                                          cache=cache)
    except (StudioError, ImportError):
        raise
    except Exception as err:  # a file that passes the size check but is not this model's checkpoint
        if ckpt is None:
            raise
        assert spec.weights is not None
        raise WeightsMissingError(name, spec.weights.filename, str(Path(ckpt).parent),
                                  f"the file is corrupt or not a {name} checkpoint: {type(err).__name__}: {err}",
                                  corrupt=True) from err
    seg.random_weights = random_init  # type: ignore[attr-defined]
    return seg
