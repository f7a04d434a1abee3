"""YOLO-World (Ultralytics, v2 s/m/l/x) with text prompts per project class.

- The vocabulary is ``{class_id: (prompt, ...)}``: each class's name plus the user's synonyms.
  Every prompt is one YOLO-World "class"; a detection of any prompt of a class maps back to
  that class id.
- Text embeddings come from CLIP ViT-B/32 loaded from the weights folder (``ViT-B-32.pt``;
  ``clip.load`` accepts a file path, so nothing is downloaded). They are computed once per
  vocabulary: cached in memory keyed by the prompt tuple, and on disk in the project's cache.
- ``set_classes`` would mutate the shared model; instead the proposer keeps the text features
  per vocabulary and sets them on the model under its own lock, with the prediction, so two
  sessions with different vocabularies never see each other's classes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import threading
import types
from pathlib import Path

import numpy as np
import packaging.version

from annotate.proposers.base import Proposer
from data.annotations import Annotations
from data.errors import InputError, ModelUnavailableError, WeightsMissingError
from runtime.checkpoints import load_torchscript, load_yolo

CLIP_FILE = "ViT-B-32.pt"
# The SHA-256 the clip package publishes for ViT-B/32 (the folder name of its download URL).
CLIP_SHA256 = "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af"
EMBED_DIM = 512
YOLOWORLD_SIZES = ("s", "m", "l", "x")


def yoloworld_file(size: str) -> str:
    return f"yolov8{size}-worldv2.pt"


def _prompt_list(vocabulary: dict[int, tuple[str, ...]]) -> tuple[list[str], np.ndarray]:
    """Flat prompt list (first class wins a prompt shared by two) and each prompt's class id."""
    prompts, owners = [], []
    for class_id, words in vocabulary.items():
        for w in words:
            if w not in prompts:
                prompts.append(w)
                owners.append(class_id)
    return prompts, np.array(owners, dtype=np.int64)


def import_clip():
    """The ``clip`` module (clip-anytorch). It imports ``pkg_resources`` for ``packaging`` alone, and
    setuptools 81 and later no longer ship ``pkg_resources``: a stand-in with the real ``packaging``
    is registered for that import when the real one is absent."""
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        sys.modules.setdefault("pkg_resources", types.SimpleNamespace(packaging=packaging))  # type: ignore[arg-type]
    import clip

    return clip


def clip_problem() -> str | None:
    """Why the ``clip`` module cannot be used: not installed, or installed but broken; None when it imports."""
    if importlib.util.find_spec("clip") is None:
        return "the 'clip' module is not installed: pip install clip-anytorch (it is in requirements.txt)."
    try:
        import_clip()
    except Exception as err:  # noqa: BLE001 - any failure of a package's import is reported, not raised
        return (f"the 'clip' module (clip-anytorch) is installed but cannot be imported ({type(err).__name__}: "
                f"{err}); reinstall it with pip install --force-reinstall clip-anytorch.")
    return None


class ClipText:
    """CLIP's text encoder from a local file; raises WeightsMissingError when it is absent."""

    def __init__(self, folder: Path, device: str = "cpu") -> None:
        path = Path(folder) / CLIP_FILE
        if not path.is_file():
            raise WeightsMissingError("YOLO-World text encoder (CLIP ViT-B/32)", CLIP_FILE, str(folder))
        problem = clip_problem()
        if problem:
            raise ModelUnavailableError(f"YOLO-World's text encoder: {problem}")
        clip = import_clip()
        try:
            # What clip.load(jit=False) does, minus its fallback to unpickling a file that is not
            # TorchScript: the archive is hash-checked, loaded by torch.jit, and its tensors rebuilt.
            archive = load_torchscript(path, CLIP_SHA256)
            self.model = clip.model.build_model(archive.state_dict()).to(device)
            if str(device) == "cpu":
                self.model.float()
        except (RuntimeError, OSError, ValueError) as err:  # corrupt or truncated file
            raise WeightsMissingError("YOLO-World text encoder (CLIP ViT-B/32)", CLIP_FILE, str(folder),
                                      f"cannot be loaded: {err}") from err
        self.device = device
        self._clip = clip

    def encode(self, prompts: list[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            tokens = self._clip.tokenize(prompts, truncate=True).to(self.device)
            feats = self.model.encode_text(tokens).float()
            feats = feats / feats.norm(dim=-1, keepdim=True)  # as Ultralytics' CLIP wrapper does
        return feats.cpu().numpy()


class TextCache:
    """Text features per prompt tuple: memory, then ``cache_dir`` (npy), then the encoder."""

    def __init__(self, encoder_factory, cache_dir: Path | None = None) -> None:
        self._factory = encoder_factory
        self._encoder = None
        self._memory: dict[tuple[str, ...], np.ndarray] = {}
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.encoded = 0  # how many times the encoder ran (tests prove the cache with it)
        self._lock = threading.Lock()

    def features(self, prompts: list[str]) -> np.ndarray:
        key = tuple(prompts)
        with self._lock:
            if key in self._memory:
                return self._memory[key]
            path = None
            if self.cache_dir is not None:
                digest = hashlib.sha256("\n".join(key).encode("utf-8")).hexdigest()[:24]
                path = self.cache_dir / f"clip-vitb32-{digest}.npy"
                if path.is_file():
                    feats = np.load(path)
                    if feats.shape == (len(key), EMBED_DIM):
                        self._memory[key] = feats
                        return feats
            if self._encoder is None:
                self._encoder = self._factory()
            feats = self._encoder.encode(list(key)).astype(np.float32)
            self.encoded += 1
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp.npy")
                np.save(tmp, feats)
                tmp.replace(path)
            self._memory[key] = feats
            return feats


class YoloWorldProposer(Proposer):
    """Boxes from YOLO-World for the project's text prompts."""

    keeps_masks = False
    predicts_classes = True

    def __init__(
        self,
        model,
        vocabulary: dict[int, tuple[str, ...]],
        text: TextCache,
        name: str = "yoloworld-v2-s",
        device: str = "cpu",
        imgsz: int = 640,
        conf: float = 0.01,
    ) -> None:
        """``model``: an ``ultralytics.YOLOWorld``. ``conf`` is the model's own floor; ``--min-score`` filters later."""
        self.model = model
        self.text = text
        self.name = name
        self.device = device
        self.imgsz = imgsz
        self.conf = conf
        self._lock = threading.Lock()
        self.set_vocabulary(vocabulary)

    @classmethod
    def from_weights(
        cls, size: str, vocabulary: dict[int, tuple[str, ...]], folder: Path, device: str = "cpu",
        cache_dir: Path | None = None,
    ) -> YoloWorldProposer:
        name = f"yoloworld-v2-{size}"
        file = yoloworld_file(size)
        missing = [f for f in (file, CLIP_FILE) if not (Path(folder) / f).is_file()]
        if missing:
            raise WeightsMissingError(f"{name} (needs {' and '.join([file, CLIP_FILE])})", missing[0], str(folder))
        try:
            model = load_yolo(Path(folder) / file, kind="YOLOWorld")
        except (RuntimeError, OSError, ValueError, KeyError, TypeError) as err:  # damaged (a refused file is not)
            raise WeightsMissingError(name, file, str(folder), f"cannot be loaded: {err}") from err
        text = TextCache(lambda: ClipText(folder, device), cache_dir)
        return cls(model, vocabulary, text, name=name, device=device)

    def set_vocabulary(self, vocabulary: dict[int, tuple[str, ...]]) -> None:
        prompts, owners = _prompt_list(vocabulary)
        if not prompts:
            raise InputError("YOLO-World needs at least one text prompt; give each class a name or synonyms.")
        feats = self.text.features(prompts)
        with self._lock:
            self._prompts, self._owners, self._feats = prompts, owners, feats

    def _apply_text(self) -> None:
        """Put this vocabulary's features on the model (caller holds the lock)."""
        import torch

        inner = self.model.model
        inner.txt_feats = torch.from_numpy(self._feats).reshape(1, len(self._prompts), -1)
        inner.model[-1].nc = len(self._prompts)
        inner.names = {i: p for i, p in enumerate(self._prompts)}
        self.model.predictor = None  # rebuilt with the new names on the next call

    def propose(self, image: np.ndarray, key: str) -> Annotations:
        h, w = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1])  # Ultralytics takes numpy images as BGR
        with self._lock:  # text features and prediction together: the model is shared
            self._apply_text()
            results = self.model.predict(bgr, imgsz=self.imgsz, conf=self.conf, device=self.device, verbose=False)
            owners = self._owners
        found = Annotations.from_ultralytics(results[0], source=self.name)  # class ids: prompt indices
        if not len(found):
            return Annotations.empty(h, w)
        return found.with_class_ids(np.asarray(owners)[found.class_id])
