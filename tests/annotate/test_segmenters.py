"""SAM backends on the real architectures with random weights (tiny / low-res for speed)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from annotate.cache import EmbeddingCache
from annotate.segmenters import registry
from annotate.segmenters.base import Prompt
from annotate.segmenters.prefetch import Prefetcher
from annotate.segmenters.sam import SamSegmenter, build_tiny_sam
from data.errors import InputError, ModelUnavailableError, WeightsMissingError


@pytest.fixture(scope="module")
def tiny_model():
    return build_tiny_sam()


def _img(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


def test_sam_candidates_shapes_and_feedback(tiny_model):
    seg = SamSegmenter("sam-tiny", tiny_model, "cpu")
    seg.set_image(_img(200, 320), "a")
    one = seg.predict("a", Prompt.make([[100, 50]]))
    assert one.masks.shape == (3, 200, 320) and one.masks.dtype == bool
    assert list(one.scores) == sorted(one.scores, reverse=True)  # best first
    assert one.low_res.shape == (3, 1, 256, 256)
    two = seg.predict("a", Prompt.make([[100, 50], [10, 10]], [1, 0], box=[5, 5, 150, 120], mask_input=one.low_res[0]))
    assert two.masks.shape == (1, 200, 320)


@pytest.mark.parametrize("h,w", [(120, 400), (333, 150), (64, 64)])  # wide, tall, tiny
def test_sam_coordinates_round_trip(tiny_model, h, w):
    """The prompt reaches the decoder where the user clicked: same answer as SamPredictor on that image."""
    from segment_anything import SamPredictor

    img = _img(h, w, seed=h)
    seg = SamSegmenter("sam-tiny", tiny_model, "cpu")
    seg.set_image(img, "k")
    bare = SamPredictor(tiny_model)
    bare.set_image(img)
    pt, box = [[w * 0.7, h * 0.3]], [w * 0.1, h * 0.2, w * 0.8, h * 0.9]
    ours = seg.predict("k", Prompt.make(pt, box=box))
    ref, scores, _ = bare.predict(np.array(pt, np.float32), np.array([1]), np.array(box, np.float32), multimask_output=False)
    assert np.array_equal(ours.masks[0], ref[0])
    assert np.allclose(ours.scores, scores, atol=1e-5)


def test_encoder_runs_once_and_disk_cache_survives_restart(tiny_model, tmp_path):
    seg = SamSegmenter("sam-tiny", tiny_model, "cpu", EmbeddingCache("sam-tiny", disk_dir=tmp_path))
    img = _img(100, 150)
    for _ in range(3):
        seg.set_image(img, "h1")
        seg.predict("h1", Prompt.make([[20, 20]]))
    assert seg.encoder_calls == 1
    again = SamSegmenter("sam-tiny", tiny_model, "cpu", EmbeddingCache("sam-tiny", disk_dir=tmp_path))
    again.set_image(img, "h1")
    assert again.encoder_calls == 0  # restart: read from the project's disk cache
    assert again.is_ready("h1")
    a = seg.predict("h1", Prompt.make([[20, 20]]))
    b = again.predict("h1", Prompt.make([[20, 20]]))
    assert np.array_equal(a.masks, b.masks)


def test_concurrent_predict_never_mixes_keys(tiny_model):
    seg = SamSegmenter("sam-tiny", tiny_model, "cpu")
    imgs = {"a": _img(90, 130, 1), "b": _img(90, 130, 2)}
    for k, im in imgs.items():
        seg.set_image(im, k)
    prompt = Prompt.make([[60, 40]])
    ref = {k: seg.predict(k, prompt).masks for k in imgs}
    assert not np.array_equal(ref["a"], ref["b"])
    bad = []

    def worker(k):
        for _ in range(6):
            if not np.array_equal(seg.predict(k, prompt).masks, ref[k]):
                bad.append(k)

    ts = [threading.Thread(target=worker, args=(k,)) for k in ("a", "b", "a", "b")]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not bad


def test_prefetch_encodes_queue_in_background(tiny_model):
    seg = SamSegmenter("sam-tiny", tiny_model, "cpu")
    pf = Prefetcher(seg)
    loads = []

    def loader(i):
        def f():
            loads.append(i)
            if i == 2:
                raise OSError("unreadable")
            return _img(80, 100, i)

        return f

    pf.prefetch([(f"k{i}", loader(i)) for i in range(4)])
    assert pf.wait_idle(60)
    assert seg.is_ready("k0") and seg.is_ready("k3") and not seg.is_ready("k2")
    assert "k2" in pf.errors
    assert seg.encoder_calls == 3
    seg.predict("k3", Prompt.make([[10, 10]]))  # ready: no encode on the click
    assert seg.encoder_calls == 3
    pf.close()


def test_encoding_matches_sampredictor_set_image(tiny_model):
    """The segmenter encodes with SamPredictor.set_image's steps, without its state."""
    from segment_anything import SamPredictor

    img = _img(130, 210, 5)
    seg = SamSegmenter("sam-tiny", tiny_model, "cpu")
    seg.set_image(img, "a")
    ref = SamPredictor(tiny_model)
    ref.set_image(img)
    emb = seg.cache.get("a")
    assert np.allclose(emb["features"].numpy(), ref.features.numpy(), atol=1e-6)
    assert emb["original_size"] == tuple(ref.original_size) and emb["input_size"] == tuple(ref.input_size)


def _blocked_encoder(seg):
    """Make the segmenter's next encode block until the returned event is set."""
    started, release = threading.Event(), threading.Event()
    real = seg._encode

    def slow(image):
        started.set()
        assert release.wait(30)
        return real(image)

    seg._encode = slow
    return started, release


@pytest.mark.parametrize("backend", ["sam", "mobile-sam"])
def test_a_click_does_not_wait_for_a_background_encode(tiny_model, backend):
    if backend == "sam":
        seg = SamSegmenter("sam-tiny", tiny_model, "cpu")
    else:
        from annotate.segmenters.ultralytics_sam import UltralyticsSamSegmenter, build_model

        seg = UltralyticsSamSegmenter(backend, build_model(backend), "cpu", sam2=False, imgsz=256)
    seg.set_image(_img(90, 120, 1), "ready")
    started, release = _blocked_encoder(seg)
    encoding = threading.Thread(target=seg.set_image, args=(_img(90, 120, 2), "next"))
    encoding.start()
    try:
        assert started.wait(30)
        done = []
        click = threading.Thread(target=lambda: done.append(seg.predict("ready", Prompt.make([[60, 40]]))))
        click.start()
        click.join(20)
        assert done, "the click waited for the encode in progress"
        assert done[0].masks.shape[1:] == (90, 120)
    finally:
        release.set()
        encoding.join(30)
    assert seg.is_ready("next")
    # The encode that ran beside the click stored its own image, not the click's.
    again = SamSegmenter("sam-tiny", tiny_model, "cpu") if backend == "sam" else None
    if again is not None:
        again.set_image(_img(90, 120, 2), "next")
        assert np.allclose(again.cache.get("next")["features"].numpy(), seg.cache.get("next")["features"].numpy())


def test_unknown_key_raises(tiny_model):
    with pytest.raises(KeyError):
        SamSegmenter("sam-tiny", tiny_model, "cpu").predict("zzz", Prompt.make([[1, 1]]))


@pytest.mark.parametrize("name", ["mobile-sam", "sam2.1-t"])
def test_ultralytics_backends_random_init(name):
    from annotate.segmenters.ultralytics_sam import UltralyticsSamSegmenter, build_model

    seg = UltralyticsSamSegmenter(name, build_model(name), "cpu", sam2=name.startswith("sam2"), imgsz=256)
    seg.set_image(_img(150, 260), "u")
    seg.set_image(_img(150, 260), "u")
    assert seg.encoder_calls == 1
    one = seg.predict("u", Prompt.make([[100, 40]]))
    assert one.masks.shape == (3, 150, 260)
    two = seg.predict("u", Prompt.make([[100, 40], [5, 5]], [1, 0], box=[50, 10, 200, 120], mask_input=one.low_res[0]))
    assert two.masks.shape == (1, 150, 260) and two.low_res.shape == (1, 1, 64, 64)
    assert seg.bare_call_ms("u", Prompt.make([[100, 40]])) > 0


# ------------------------------------------------------------------ registry
def test_registry_default_is_classical_without_weights(tmp_path):
    name, reason = registry.default_segmenter_name(tmp_path, "cpu")
    assert name == "classical" and "sam_vit_b_01ec64.pth" in reason
    states = {s.name: s.state for s in registry.model_statuses(tmp_path, "cpu")}
    assert states["classical"] == "builtin"
    assert states["sam-vit-b"] == "missing" and states["mobile-sam"] == "downloadable"


def test_registry_default_prefers_present_cpu_ok(tmp_path):
    (tmp_path / "mobile_sam.pt").write_bytes(b"\0" * 10)  # too small: corrupt, not chosen
    assert registry.default_segmenter_name(tmp_path, "cpu")[0] == "classical"
    states = {s.name: s.state for s in registry.model_statuses(tmp_path, "cpu")}
    assert states["mobile-sam"] == "corrupt"


def test_missing_and_corrupt_weights_are_messages(tmp_path, monkeypatch):
    with pytest.raises(WeightsMissingError, match="sam_vit_b_01ec64.pth"):
        registry.create_segmenter("sam-vit-b", tmp_path, "cpu")
    (tmp_path / "sam_vit_b_01ec64.pth").write_bytes(b"x" * 100)
    with pytest.raises(WeightsMissingError, match="corrupt"):
        registry.create_segmenter("sam-vit-b", tmp_path, "cpu")
    # Ultralytics' download offline fails: still the weights message, naming file and folder.
    import ultralytics.utils.downloads as dl

    def offline(*a, **k):
        raise ConnectionError("Download failure, Environment may be offline")

    monkeypatch.setattr(dl, "attempt_download_asset", offline)
    with pytest.raises(WeightsMissingError, match=r"mobile_sam.pt.*automatic download failed"):
        registry.create_segmenter("mobile-sam", tmp_path, "cpu")


def test_unknown_name_and_device():
    with pytest.raises(InputError):
        registry.create_segmenter("sam-vit-x")
    with pytest.raises(ModelUnavailableError):
        registry.model_statuses(None, "tpu")


def test_registry_import_is_lazy():
    import subprocess
    import sys

    code = "import sys, annotate.segmenters.registry, bench.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["sam-vit-b", "mobile-sam"])
def test_a_corrupt_checkpoint_is_a_message_naming_the_file(tmp_path, monkeypatch, name):
    from annotate.segmenters import registry
    from data.errors import WeightsMissingError

    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"\x9b" * 4096)  # past the size check, but not a checkpoint
    monkeypatch.setattr(registry, "find_weights", lambda *a, **k: bad)
    with pytest.raises(WeightsMissingError, match="corrupt or not a"):
        registry.create_segmenter(name, str(tmp_path), "cpu")
