from __future__ import annotations

import numpy as np
import torch

from annotate.cache import EmbeddingCache, embeddings_dir
from runtime.weights import WeightSpec, find_weights, weights_dir


def _emb(v: float) -> dict:
    return {"features": torch.full((1, 4, 8, 8), v), "original_size": (10, 20)}


def test_lru_is_bounded_by_bytes():
    one = 4 * 8 * 8 * 4
    c = EmbeddingCache("m", max_bytes=2 * one + 300)
    for k in "abc":
        c.put(k, _emb(1.0), persist=False)
    assert not c.in_memory("a") and c.in_memory("b") and c.in_memory("c")
    c.get("b")
    c.put("d", _emb(2.0), persist=False)
    assert c.in_memory("b") and not c.in_memory("c")
    assert c.memory_bytes <= c.max_bytes


def test_disk_round_trip_and_odd_keys(tmp_path):
    d = embeddings_dir(tmp_path)
    c = EmbeddingCache("sam-vit-b", disk_dir=d)
    c.put("bench:a/b.png", _emb(3.0))
    fresh = EmbeddingCache("sam-vit-b", disk_dir=d)
    got = fresh.get("bench:a/b.png")
    assert torch.equal(got["features"], _emb(3.0)["features"]) and tuple(got["original_size"]) == (10, 20)
    assert fresh.disk_hits == 1
    assert all(p.parent.name == "sam-vit-b" for p in d.rglob("*.pt"))


def test_corrupt_disk_file_is_a_miss(tmp_path):
    c = EmbeddingCache("m", disk_dir=tmp_path)
    c.put("k", _emb(1.0))
    next(tmp_path.rglob("*.pt")).write_bytes(b"garbage")
    assert EmbeddingCache("m", disk_dir=tmp_path).get("k") is None


def test_weights_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("DEFECT_STUDIO_WEIGHTS", str(tmp_path / "env"))
    assert weights_dir(str(tmp_path / "flag")) == tmp_path / "flag"
    assert weights_dir(None) == tmp_path / "env"
    monkeypatch.delenv("DEFECT_STUDIO_WEIGHTS")
    assert weights_dir(None).name == "weights"


def test_find_weights_hash_check(tmp_path):
    import hashlib

    data = np.arange(100, dtype=np.uint8).tobytes()
    (tmp_path / "w.pt").write_bytes(data)
    ok = WeightSpec("w.pt", 10, hashlib.sha256(data).hexdigest())
    assert find_weights(ok, tmp_path) == tmp_path / "w.pt"
    bad = WeightSpec("w.pt", 10, "0" * 64)
    import pytest

    from data.errors import WeightsMissingError

    with pytest.raises(WeightsMissingError, match="SHA-256"):
        find_weights(bad, tmp_path)
