"""Project-screen tables and the class-deletion wording, without a browser."""

from __future__ import annotations

from data.annotations import Annotations
from ui.app import build_app, class_rows, delete_consequence, image_rows


def test_image_rows_say_unlabeled_proposals_labeled_good(project):
    import numpy as np

    m = np.zeros((60, 80), bool)
    m[5:10, 5:10] = True
    project.add_annotations(1, Annotations.from_masks(m, 1, 0.8, source="anomaly", status="proposed"))
    project.add_annotations(2, Annotations.from_masks(m, 2))
    project.set_image_status(3, "good")
    rows = {r[0]: r for r in image_rows(project)}
    assert rows[1][2] == "has proposals" and rows[1][4] == 1
    assert rows[2][2].startswith("labeled") and rows[2][3] == 1
    assert rows[3][2] == "good"
    assert class_rows(project)[0][3:] == [0, 1, 0]


def test_delete_consequence_spells_out_move_or_delete(project):
    import numpy as np

    m = np.zeros((60, 80), bool)
    m[5:10, 5:10] = True
    project.add_annotations(1, Annotations.from_masks(m, 1))
    assert "**deletes** its 1 annotations (1 accepted" in delete_consequence(project, 1, None)
    assert "moves its 1 annotations" in delete_consequence(project, 1, 2)


def test_build_app_has_every_screen(project, fake):
    demo = build_app(project, fake)
    labels = {getattr(b, "label", None) for b in demo.blocks.values()}
    assert {"Project", "Label", "Review", "Export", "Train", "Predict"} <= labels
    demo.ds_service.close()


def _review_fn(demo, name: str, kind: str | None = None):
    """A Review handler as wired in the app (the Blocks keep every event's function)."""
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if getattr(fn, "__name__", "") != name:
            continue
        cells = [c.cell_contents for c in (fn.__closure__ or ()) if isinstance(c.cell_contents, str)]
        if kind is None or kind in cells:
            return fn
    raise AssertionError(f"no {name} handler wired")


def test_review_accept_and_accept_above_update_the_store(project, fake):
    import numpy as np

    m = np.zeros((60, 80), bool)
    m[5:15, 5:15] = True
    ids = project.add_annotations(1, Annotations.from_masks(m, 1, 0.9, source="anomaly", status="proposed"))
    m2 = np.zeros((60, 80), bool)
    m2[30:40, 30:40] = True
    project.add_annotations(2, Annotations.from_masks(m2, 1, 0.7, source="anomaly", status="proposed"))
    demo = build_app(project, fake)
    try:
        msg, *_ = _review_fn(demo, "handler", "accept")(1, ids[0])
        assert "accepted 1" in msg and project.annotations(1).status.tolist() == ["accepted"]
        msg, *_ = _review_fn(demo, "accept_above")(2, 0.5, "all images")
        assert msg.startswith("Accepted 1 proposals") and project.annotations(2).status.tolist() == ["accepted"]
    finally:
        demo.ds_service.close()


def test_review_selects_the_first_proposal_and_shows_it_close_up(project, fake):
    """Opening an image selects its first proposal and zooms on it; accepting moves to the next."""
    import numpy as np

    small = np.zeros((60, 80), bool)
    small[40:44, 60:65] = True  # a 5x4 px proposal: a speck in the full view
    other = np.zeros((60, 80), bool)
    other[5:15, 5:15] = True
    ids = project.add_annotations(1, Annotations.from_masks(np.stack([small, other]), 1, 0.9, source="anomaly",
                                                             status="proposed"))
    demo = build_app(project, fake)
    try:
        view, rows, sel, zoom = _review_fn(demo, "show_review")(1)
        assert [r[0] for r in rows] == ids and sel == ids[0]
        assert zoom is not None and max(zoom.shape[:2]) == 360  # the speck's box and 24 px around, enlarged
        _, _, sel2, zoom2 = _review_fn(demo, "show_review")(1, ids[1])
        assert sel2 == ids[1] and not np.array_equal(zoom, zoom2)
        from types import SimpleNamespace

        sel, zoom_row = _review_fn(demo, "pick_row")(1, SimpleNamespace(row_value=[ids[1], "x", 0.9, "anomaly"]))
        assert sel == ids[1] and np.array_equal(zoom_row, zoom2)  # a row click: that proposal, close up
        assert _review_fn(demo, "pick_row")(1, SimpleNamespace(row_value=["", "", "", ""])) == (None, None)
        for kind, args in (("accept", (1, None)), ("change", (1, ids[1], None))):
            msg, *rest = _review_fn(demo, "handler", kind)(*args)  # nothing chosen: a notice, no change
            assert msg.startswith(("Select a proposal", "Pick the new class")) and len(rest) == 5
        _, _, _, _, sel, _ = _review_fn(demo, "handler", "change")(1, ids[1], 2)
        assert sel == ids[1]  # a re-classed proposal stays selected
        msg, _, _, rows, sel, _ = _review_fn(demo, "handler", "accept")(1, ids[0])
        assert [r[0] for r in rows] == [ids[1]] and sel == ids[1]
        # A row clicked after another session took that proposal selects nothing, not another row.
        assert _review_fn(demo, "show_review")(1, ids[0])[2:] == (None, None)
    finally:
        demo.ds_service.close()


def test_uploaded_coco_json_finds_the_images_uploaded_with_it(tmp_path, project):
    """Gradio keeps each upload in its own folder; the import must still see them together."""
    import json

    from data.importers import import_sources
    from data.sample import generate
    from ui.app import gather_uploads

    src = tmp_path / "src"
    generate(src, n=3, seed=0)
    uploads = []
    for i, f in enumerate(sorted((src / "images").iterdir()) + [src / "ground_truth.json"]):
        d = tmp_path / "gradio" / f"hash{i}"  # one folder per uploaded file, as Gradio does
        d.mkdir(parents=True)
        uploads.append(d / f.name)
        uploads[-1].write_bytes(f.read_bytes())
    dest = tmp_path / "together"
    dest.mkdir()
    sources = gather_uploads(uploads, dest)
    assert sources[0].name == "ground_truth.json" and len(sources) == 1  # the json names all three
    rep = import_sources(project, sources)
    n_gt = len(json.loads((src / "ground_truth.json").read_text())["annotations"])
    assert rep.imported == 3 and rep.annotations_added == n_gt
