"""Ultralytics MobileSAM and SAM 2.1 (t/s/b/l) behind the segmenter interface.

Uses ``ultralytics.models.sam``'s ``Predictor`` / ``SAM2Predictor``: ``set_image`` fills
``predictor.features`` (a tensor for SAM/MobileSAM, a dict with ``image_embed`` and
``high_res_feats`` for SAM 2), which is cached per image key (a second predictor on the same
model encodes, so a click never waits for a background encode); a click runs the predictor's
prompt-only path (``_prepare_prompts`` + ``_inference_features``) on the cached features, and
the low-res logits are kept so the chosen candidate feeds the next click. The bare library
call used for the bench's ratio is ``predictor.inference_features`` on the same features.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from annotate.cache import EmbeddingCache
from annotate.segmenters.base import Prompt
from annotate.segmenters.sam import CachedSegmenter
from runtime.checkpoints import state_dict

IMGSZ = 1024


class UltralyticsSamSegmenter(CachedSegmenter):
    def __init__(
        self, name: str, model: Any, device: str, sam2: bool, cache: EmbeddingCache | None = None, imgsz: int = IMGSZ
    ) -> None:
        # ``imgsz`` below 1024 is for tests only (the weights are trained at 1024).
        super().__init__(name, device, cache)
        self.imgsz = int(imgsz)
        from ultralytics.models.sam.predict import Predictor, SAM2Predictor

        cls = SAM2Predictor if sam2 else Predictor
        overrides = dict(conf=0.25, task="segment", mode="predict", imgsz=self.imgsz, save=False, verbose=False, device=device)
        self.predictor = cls(overrides=overrides)
        self.predictor.setup_model(model=model, verbose=False)
        # A second predictor on the same model for encoding: ``set_image`` fills predictor state,
        # and a click decodes with ``self.predictor`` while a background encode runs.
        self._encoder = cls(overrides=overrides)
        self._encoder.setup_model(model=model, verbose=False)
        self.sam2 = sam2

    def _encode(self, image: np.ndarray) -> dict:
        p = self._encoder
        p.set_image(np.ascontiguousarray(image[..., ::-1]))  # Ultralytics expects BGR arrays
        feats = p.features
        p.reset_image()
        return {"features": feats, "src_shape": (int(image.shape[0]), int(image.shape[1]))}

    def _features(self, emb: dict) -> Any:
        feats = emb["features"]
        dev = self.predictor.device
        if isinstance(feats, dict):
            if feats["image_embed"].device != dev:
                feats = emb["features"] = {
                    "image_embed": feats["image_embed"].to(dev),
                    "high_res_feats": [f.to(dev) for f in feats["high_res_feats"]],
                }
        elif feats.device != dev:
            feats = emb["features"] = feats.to(dev)
        return feats

    @staticmethod
    def _prompt_arrays(prompt: Prompt) -> tuple[Any, Any, Any]:
        # One object with K points: shape (1, K, 2); Ultralytics reads (K, 2) as K objects.
        pts = prompt.points[None] if len(prompt.points) else None
        lbl = prompt.labels[None] if len(prompt.points) else None
        box = None if prompt.box is None else prompt.box[None]
        return box, pts, lbl

    def _decode(self, emb: dict, prompt: Prompt, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch
        from ultralytics.utils import ops

        p = self.predictor
        feats = self._features(emb)
        src = emb["src_shape"]
        dst = (self.imgsz, self.imgsz)
        box, pts, lbl = self._prompt_arrays(prompt)
        masks_t = None
        if prompt.mask_input is not None:
            side = self.imgsz // 4
            m = np.asarray(prompt.mask_input, dtype=np.float32).reshape(1, 1, side, side)
            masks_t = torch.as_tensor(m, dtype=p.torch_dtype, device=p.device)
        with torch.inference_mode():
            prepared = p._prepare_prompts(dst, src, box, pts, lbl, None)
            if self.sam2:
                points, labels, _ = prepared
                low, scores = p._inference_features(feats, points, labels, masks_t, multimask)
            else:
                bboxes, points, labels, _ = prepared
                low, scores = p._inference_features(feats, bboxes, points, labels, masks_t, multimask)
            # Same up-scaling as Predictor.inference_features, keeping the logits.
            gain = min(i / o for i, o in zip(dst, src, strict=False))
            ratio = [round(o * gain) * m / i / o for o, m, i in zip(src, low.shape[1:], dst, strict=False)]
            full = ops.scale_masks(low[None].float(), src, (ratio, (0, 0)), padding=False)[0]
            masks = (full > p.model.mask_threshold).cpu().numpy()
        return masks, scores.float().cpu().numpy(), low.float().cpu().numpy()

    def bare_call_ms(self, key: str, prompt: Prompt) -> float:
        emb = self.cache.get(key)
        box, pts, lbl = self._prompt_arrays(prompt)
        multimask = len(prompt.points) == 1 and prompt.box is None
        with self._lock:
            feats = self._features(emb)
            t0 = time.perf_counter()
            self.predictor.inference_features(
                feats, emb["src_shape"], (self.imgsz, self.imgsz), bboxes=box, points=pts, labels=lbl, multimask_output=multimask
            )
            return (time.perf_counter() - t0) * 1000


BUILDERS = {
    "mobile-sam": "build_mobile_sam",
    "sam2.1-t": "build_sam2_t",
    "sam2.1-s": "build_sam2_s",
    "sam2.1-b": "build_sam2_b",
    "sam2.1-l": "build_sam2_l",
}


def build_model(name: str, checkpoint: str | None = None) -> Any:
    """The real Ultralytics architecture for ``name``; random weights without a checkpoint.

    The checkpoint is read weights-only (:func:`runtime.checkpoints.state_dict`): Ultralytics'
    SAM builders unpickle the file with code execution allowed whatever its safe-load flag says."""
    from ultralytics.models.sam import build

    model = getattr(build, BUILDERS[name])(None)
    if checkpoint is not None:
        model.load_state_dict(state_dict(checkpoint))
        model.eval()
    return model
