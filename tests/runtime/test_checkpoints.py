"""Checkpoints load with nothing but tensors and known model classes; a rigged file runs no code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from data import run_registry
from data.store import Project
from runtime import checkpoints
from runtime.checkpoints import UnsafeCheckpointError
from runtime.weights import sha256_of


class _Rigged:
    """Unpickled the default way, this runs a shell command (it only touches a file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _rigged(path: Path, payload: dict) -> Path:
    torch.save(payload, path)
    return path


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    m = tmp_path / "code-ran"
    yield m
    assert not m.exists(), "a checkpoint ran code"


def test_a_rigged_yolo_checkpoint_is_refused_and_runs_nothing(tmp_path, marker):
    bad = _rigged(tmp_path / "evil.pt", {"model": _Rigged(marker), "train_args": {}})
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pt holds objects outside the allowed set.*posix\.system"):
        checkpoints.load_yolo(bad)
    import ultralytics.nn.tasks as tasks

    assert tasks.SAFE_LOAD and os.environ[checkpoints.SAFE_ENV] == "1"  # the flag of every later YOLO() too


def test_a_yolo_checkpoint_of_the_real_architecture_loads(tmp_path):
    from ultralytics import YOLO

    path = tmp_path / "yolov8n-seg-random.pt"
    YOLO("yolov8n-seg.yaml").save(str(path))  # a checkpoint as Ultralytics writes it
    model = checkpoints.load_yolo(path)
    assert model.task == "segment" and len(model.names) == 80


@pytest.mark.parametrize("name", ["mobile-sam", "sam-vit-b", "sam2.1-t"])
def test_a_rigged_sam_checkpoint_is_refused_through_the_segmenter_registry(tmp_path, monkeypatch, marker, name):
    from annotate.segmenters import registry

    bad = _rigged(tmp_path / "sam.pt", {"model": {"w": torch.zeros(2)}, "extra": _Rigged(marker)})
    monkeypatch.setattr(registry, "find_weights", lambda *a, **k: bad)
    with pytest.raises(UnsafeCheckpointError, match="possibly code, and was not loaded"):
        registry.create_segmenter(name, str(tmp_path), "cpu")


def test_a_sam_state_dict_loads_into_the_real_architecture(tmp_path):
    from annotate.segmenters.ultralytics_sam import build_model

    state = build_model("mobile-sam").state_dict()
    torch.save({"model": state}, tmp_path / "mobile_sam.pt")  # nested under "model", as Ultralytics ships it
    loaded = build_model("mobile-sam", str(tmp_path / "mobile_sam.pt"))
    key = next(iter(state))
    assert torch.equal(loaded.state_dict()[key], state[key])
    assert checkpoints.state_dict(tmp_path / "mobile_sam.pt").keys() == state.keys()


def test_torchscript_loads_by_jit_only_and_is_hash_checked(tmp_path, marker):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    path = tmp_path / "enc.ts"
    scripted.save(str(path))
    digest = sha256_of(path)
    assert checkpoints.load_torchscript(path, digest)(torch.zeros(1, 2)).shape == (1, 2)
    with pytest.raises(UnsafeCheckpointError, match="SHA-256 is not the one recorded"):
        checkpoints.load_torchscript(path, "0" * 64)
    pickled = _rigged(tmp_path / "ViT-B-32.pt", {"x": _Rigged(marker)})
    with pytest.raises(UnsafeCheckpointError, match="not a TorchScript archive"):
        checkpoints.load_torchscript(pickled)


def test_clip_text_encoder_is_refused_unless_it_is_the_published_file(tmp_path, marker):
    from annotate.proposers.yoloworld import CLIP_FILE, ClipText, import_clip

    assert import_clip().tokenize(["crack"]).shape == (1, 77)  # importable without setuptools' pkg_resources

    _rigged(tmp_path / CLIP_FILE, {"x": _Rigged(marker)})
    with pytest.raises(UnsafeCheckpointError, match="SHA-256 is not the one recorded"):
        ClipText(tmp_path)


def _run(project: Project, run_id: str, best: str) -> Path:
    run_registry.insert(project, run_id, "segment", "yolov8n-seg", {}, None)
    folder = project.path("runs", run_id, "train", "weights")
    folder.mkdir(parents=True)
    (folder / "best.pt").write_bytes(b"weights as written")
    run_registry.update(project, run_id, status="succeeded", best_weights=best)
    return folder / "best.pt"


def test_run_checkpoints_are_hashed_and_checked_and_paths_stay_in_the_project(tmp_path):
    from train import jobs

    project = Project.create(tmp_path / "p")
    best = _run(project, "r1", "train/weights/best.pt")
    rec = jobs.get(project, "r1")
    assert Path(rec.best_weights) == best
    assert jobs.record_checkpoints(project, rec) == {"train/weights/best.pt": sha256_of(best)}
    assert jobs.check_checkpoint(project, best) == best
    best.write_bytes(b"swapped afterwards")
    with pytest.raises(UnsafeCheckpointError, match="changed after it was written"):
        jobs.check_checkpoint(project, best)
    # An older record with the original project's absolute path: a copy loads its own file.
    other = _run(project, "r2", "/elsewhere/original/runs/r2/train/weights/best.pt")
    assert Path(jobs.get(project, "r2").best_weights) == other
    _run(project, "r3", "/etc/passwd")
    assert jobs.get(project, "r3").best_weights is None
