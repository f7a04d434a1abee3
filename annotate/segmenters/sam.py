"""segment-anything backends (SAM ViT-B / ViT-L / ViT-H) and the shared cached-segmenter base.

The library's ``SamPredictor`` holds one image at a time. Here the segmenter keeps every
embedding in an :class:`~annotate.cache.EmbeddingCache` (memory LRU + project disk) keyed by
the image's content hash; ``predict(key, prompt)`` restores that key's embedding into the
predictor under the decoder's lock (a pointer swap, no copy) and calls the bare
``SamPredictor.predict``. So clicks never re-encode, and two sessions' images never mix.
Encoding runs the same steps as ``SamPredictor.set_image`` without touching the predictor,
under a lock of its own, so a click does not wait for a background encode.

Latency accounting: ``encoder_calls`` counts real encoder runs (tests prove cache hits with
it); ``bare_call_ms`` times the library call alone on the same embedding (the bench's ratio).
"""

from __future__ import annotations

import threading
import time
from abc import abstractmethod
from functools import partial
from typing import Any

import numpy as np

from annotate.cache import EmbeddingCache
from annotate.segmenters.base import Prediction, Prompt, Segmenter
from runtime.checkpoints import state_dict


class CachedSegmenter(Segmenter):
    """Embedding cache, locks and click-priority bookkeeping shared by the SAM backends.

    Subclasses implement ``_encode(image) -> embedding`` and ``_decode(emb, prompt, multimask)``.
    Two locks: ``_encode`` runs under the encode lock (one encode at a time) and must not touch
    any state ``_decode`` reads, because ``_decode`` runs under the decoder lock at the same
    time. So a click never waits for a background encode (SAM ViT-B takes ~30 s on a CPU);
    the two only share the CPU.
    """

    def __init__(self, name: str, device: str, cache: EmbeddingCache | None = None) -> None:
        self.name = name
        self.device = device
        self.cache = cache if cache is not None else EmbeddingCache(name)
        # The decoder's lock (the predictor's prompt state) and the encoder's: see the class docstring.
        self._lock = threading.RLock()
        self._encode_lock = threading.Lock()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._idle = threading.Condition(self._pending_lock)
        self.encoder_calls = 0

    # ------------------------------------------------------------------ public
    def set_image(self, image: np.ndarray, key: str) -> None:
        if self.cache.get(key) is not None:
            return
        image = np.ascontiguousarray(np.asarray(image)[..., :3])
        if image.dtype != np.uint8 or image.ndim != 3:
            raise ValueError(f"set_image expects an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
        with self._encode_lock:
            if self.cache.get(key) is not None:  # another thread encoded it meanwhile
                return
            emb = self._encode(image)
            self.encoder_calls += 1
            self.cache.put(key, emb)

    def is_ready(self, key: str) -> bool:
        return key in self.cache

    def predict(self, key: str, prompt: Prompt, multimask: bool | None = None) -> Prediction:
        t0 = time.perf_counter()
        with self._pending_lock:
            self._pending += 1
        try:
            emb = self.cache.get(key)
            if emb is None:
                raise KeyError(f"image {key!r} was never set on {self.name}")
            if prompt.is_empty:
                raise ValueError("a prompt needs at least one point or a box")
            if multimask is None:
                multimask = len(prompt.points) == 1 and prompt.box is None
            with self._lock:
                masks, scores, low = self._decode(emb, prompt, multimask)
        finally:
            with self._pending_lock:
                self._pending -= 1
                self._idle.notify_all()
        order = np.argsort(-scores, kind="stable")
        return Prediction(
            masks=masks[order], scores=scores[order], low_res=low[order][:, None], ms=(time.perf_counter() - t0) * 1000
        )

    # ------------------------------------------------------- click priority
    def clicks_pending(self) -> int:
        with self._pending_lock:
            return self._pending

    def wait_for_clicks(self, timeout: float = 5.0) -> None:
        """Block while a click is waiting or running (the background encoder calls this)."""
        with self._pending_lock:
            self._idle.wait_for(lambda: self._pending == 0, timeout=timeout)

    # ----------------------------------------------------------- subclasses
    @abstractmethod
    def _encode(self, image: np.ndarray) -> Any: ...

    @abstractmethod
    def _decode(self, emb: Any, prompt: Prompt, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(masks (C,H,W) bool, scores (C,), low_res (C,256,256))``."""

    def bare_call_ms(self, key: str, prompt: Prompt) -> float:
        """Milliseconds of the bare library call on ``key``'s cached embedding (bench only)."""
        raise NotImplementedError


class SamSegmenter(CachedSegmenter):
    """segment-anything ``SamPredictor`` behind the interface."""

    def __init__(self, name: str, sam_model: Any, device: str, cache: EmbeddingCache | None = None) -> None:
        super().__init__(name, device, cache)
        from segment_anything import SamPredictor

        sam_model.to(device).eval()
        self.predictor = SamPredictor(sam_model)
        # The embedding now in the predictor, held (not its id(): a freed dict's id can be reused
        # by the next one, which would silently keep the previous image's features).
        self._current: dict | None = None

    def _encode(self, image: np.ndarray) -> dict:
        """``SamPredictor.set_image``'s steps without its state: a click may be decoding meanwhile."""
        import torch

        p = self.predictor
        if p.model.image_format != "RGB":
            image = image[..., ::-1]
        x = torch.as_tensor(p.transform.apply_image(image), device=p.device).permute(2, 0, 1).contiguous()[None]
        with torch.no_grad():
            features = p.model.image_encoder(p.model.preprocess(x))
        return {
            "features": features,
            "original_size": (int(image.shape[0]), int(image.shape[1])),
            "input_size": tuple(int(v) for v in x.shape[-2:]),
        }

    def _restore(self, emb: dict) -> None:
        if self._current is emb:
            return
        p = self.predictor
        feats = emb["features"]
        if feats.device.type != self.device:
            feats = emb["features"] = feats.to(self.device)
        p.features = feats
        p.original_size = tuple(emb["original_size"])
        p.input_size = tuple(emb["input_size"])
        p.is_image_set = True
        self._current = emb

    @staticmethod
    def _args(prompt: Prompt, multimask: bool) -> dict:
        has_pts = len(prompt.points) > 0
        mask_input = None
        if prompt.mask_input is not None:
            mask_input = np.asarray(prompt.mask_input, dtype=np.float32).reshape(1, 256, 256)
        return dict(
            point_coords=prompt.points if has_pts else None,
            point_labels=prompt.labels if has_pts else None,
            box=prompt.box,
            mask_input=mask_input,
            multimask_output=multimask,
        )

    def _decode(self, emb: dict, prompt: Prompt, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._restore(emb)
        masks, scores, low = self.predictor.predict(**self._args(prompt, multimask))
        return masks, scores, low

    def bare_call_ms(self, key: str, prompt: Prompt) -> float:
        emb = self.cache.get(key)
        multimask = len(prompt.points) == 1 and prompt.box is None
        args = self._args(prompt, multimask)
        with self._lock:
            self._restore(emb)
            t0 = time.perf_counter()
            self.predictor.predict(**args)
            return (time.perf_counter() - t0) * 1000


# ---------------------------------------------------------------- builders
def build_sam(variant: str, checkpoint: str | None = None) -> Any:
    """The real segment-anything architecture (``vit_b``/``vit_l``/``vit_h``); random weights without a checkpoint.

    The checkpoint is read weights-only (:func:`runtime.checkpoints.state_dict`), never by the
    builder, which would unpickle it with code execution allowed."""
    from segment_anything import sam_model_registry

    model = sam_model_registry[variant](checkpoint=None)
    if checkpoint is not None:
        model.load_state_dict(state_dict(checkpoint))
    return model


def build_tiny_sam() -> Any:
    """SAM with a one-block, 32-wide ViT encoder and a shallow decoder: the real code path, fast in CI.

    A 256 px input with 4 px patches keeps the real models' 64x64 embedding grid and 256x256
    low-res logits, so prompt encoding, coordinate transforms (longest side resized, padded)
    and post-processing run the production code, at a fraction of the cost.
    """

    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=1, embed_dim=32, img_size=256, mlp_ratio=2, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=1, patch_size=4, qkv_bias=True, use_rel_pos=False, global_attn_indexes=(), window_size=8,
            out_chans=64,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=64, image_embedding_size=(64, 64), input_image_size=(256, 256), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=64, mlp_dim=64, num_heads=2),
            transformer_dim=64, iou_head_depth=2, iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
