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


def _wired(demo, elem_id: str):
    """The handler an element with ``elem_id`` triggers, as wired in the app (the Blocks keep every event)."""
    for block_fn in demo.fns.values():
        if any(getattr(demo.blocks.get(bid), "elem_id", None) == elem_id for bid, _ in block_fn.targets):
            return block_fn.fn
    raise AssertionError(f"nothing wired to #{elem_id}")


def test_review_keys_and_buttons_are_wired_to_the_queue(project, fake):
    """Every key's button is in the app; Y accepts and selects the next; J does not resend an unchanged
    queue; Refine opens the selected proposal's image in Label."""
    import json

    import numpy as np

    from ui.review_tab import KEYS, KEYS_JS

    m = np.zeros((2, 60, 80), bool)
    m[0, 5:15, 5:15] = m[1, 30:40, 30:40] = True
    a = project.add_annotations(1, Annotations.from_masks(m[:1], 1, 0.9, source="anomaly", status="proposed"))
    b = project.add_annotations(2, Annotations.from_masks(m[1:], 1, 0.7, source="anomaly", status="proposed"))
    demo = build_app(project, fake)
    try:
        ids = {getattr(blk, "elem_id", None) for blk in demo.blocks.values()}
        keyed = {*KEYS.values(), "ds-rv-undo", *(f"ds-rv-class-{d}" for d in range(1, 10))}
        assert keyed <= ids and "ds-rv-keys" in ids and "ds-rv-undo" in KEYS_JS and "ds-rv-class-" in KEYS_JS
        msg, rows, sel, view, zoom, where, undo, shown = _wired(demo, "ds-rv-accept")(None, "score", a[0], [])
        assert "accepted" in msg and [r[0] for r in rows] == b and sel == b[0] and undo == [(a[0], "proposed",
                                                                                          "unlabeled")]
        assert view.shape == (60, 80, 3) and zoom is not None and shown == rows
        out = _wired(demo, "ds-rv-next")(shown, "score", sel, undo)
        assert not isinstance(out[1], list) and out[2] == b[0]  # gr.skip(): the table keeps its scroll
        out = _wired(demo, "ds-rv-undo")(shown, "score", sel, undo)
        assert out[2] == a[0] and project.annotation(a[0])[1].status[0] == "proposed"
        page, rev, _ = _wired(demo, "ds-rv-refine")("tok", 0, b[0])
        assert json.loads(page)["open"] == 2 and rev == 1
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


def test_next_image_order_least_sure_first_uses_the_assist_model(project, fake, monkeypatch):
    """The Label screen's "Next image (D)" choice: in order, or the image the assist model is least sure of."""
    from train import assist
    from ui.app import NEXT_ORDERS, set_next_order
    from ui.label_api import LabelService

    service = LabelService(project, fake)
    try:
        state = assist.load(project)
        state.unsure = {"3": 0.9, "2": 0.1}
        monkeypatch.setattr(assist, "load", lambda p: state)
        set_next_order(project, service, NEXT_ORDERS[1])
        assert service.next_chooser([2, 3]) == 3
        set_next_order(project, service, NEXT_ORDERS[0])
        assert service.next_chooser is None
    finally:
        service.close()


def test_project_summary_counts_sum_to_the_images(project):
    import re

    import numpy as np

    from ui.app import summary_md

    m = np.zeros((60, 80), bool)
    m[5:10, 5:10] = True
    project.add_annotations(1, Annotations.from_masks(m, 1, 0.8, source="anomaly", status="proposed"))
    project.set_image_status(3, "good")
    text = summary_md(project)
    total, unlabeled, done, good = (int(re.search(p, text).group(1)) for p in (
        r"\*\*(\d+) images", r"(\d+) unlabeled", r"(\d+) done", r"(\d+) good"))
    assert unlabeled + done + good == total == 3 and "1 of them with proposals to review" in text
