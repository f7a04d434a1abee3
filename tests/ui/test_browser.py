"""The app in headless Chromium: click a defect, pick a candidate, accept, navigate, export COCO.

Runs the weight-free ``classical`` segmenter on a small sample project. Set
``DEFECT_STUDIO_SCREENSHOTS=docs/screenshots`` to also save the Label and Review screens for
the README (a normal run writes nothing into the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ui.browser import browser_unavailable

pytestmark = [pytest.mark.browser, pytest.mark.slow]

_why = browser_unavailable()
if _why:
    pytest.skip(f"browser tests skipped: {_why}", allow_module_level=True)

SHOTS = os.environ.get("DEFECT_STUDIO_SCREENSHOTS")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from annotate.segmenters.classical import ClassicalSegmenter
    from bench.ui import bench_project
    from ui.app import build_app
    from ui.browser import chromium, serve

    project, points = bench_project(tmp_path_factory.mktemp("ui"), n=6)
    by_name = {Path(r.name).name: r.id for r in project.images()}
    targets = {by_name[n]: ps for n, ps in points.items() if n in by_name}
    demo = build_app(project, ClassicalSegmenter())
    with serve(demo) as url, chromium() as browser:
        yield project, targets, url, browser
    demo.ds_service.close()


def _screen(browser, url, width: int = 1280, height: int = 720, tab: str | None = None):
    """A new page of the app at ``width`` x ``height``, on screen ``tab`` when given."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.goto(url)
    if tab:
        page.get_by_role("tab", name=tab).click()
    return ctx, page


def _assert_in_view(page, selectors, height: int) -> None:
    for el in selectors:
        box = page.locator(el).bounding_box()
        assert box and box["y"] >= 0 and box["y"] + box["height"] <= height, (el, box, height)


def _page(browser, url):
    from ui.browser import LabelPage

    ctx = browser.new_context(viewport={"width": 1400, "height": 950})
    return ctx, LabelPage(ctx.new_page(), url)


def test_click_pick_accept_navigate_export(app, tmp_path):
    from pycocotools.coco import COCO

    project, targets, url, browser = app
    ctx, lp = _page(browser, url)
    image_id, pts = sorted(targets.items())[0]
    lp.open(image_id)
    x, y = pts[0]
    lp.click(x, y)
    assert int(lp.data("candidates")) >= 1, lp.status()
    # A box around the defect gives the weight-free segmenter's tight and loose candidates.
    lp.page.keyboard.press("Escape")
    lp.drag(x - 30, y - 30, x + 30, y + 30)
    n = int(lp.data("candidates"))
    if n > 1:
        lp.page.locator("#ds-label .ds-cand").nth(1).click()
        lp.idle()
        assert lp.page.locator("#ds-label .ds-cand.on").get_attribute("data-index") == "1"
    lp.page.keyboard.press("2")  # class broken_small
    lp.page.keyboard.press("Enter")
    lp.page.wait_for_function("() => document.querySelector('#ds-label .ds-label').dataset.saved")
    assert "Saved #" in lp.status()
    ann = project.annotations(image_id)
    assert len(ann) == 1 and project.class_names()[int(ann.class_id[0])] == "broken_small"
    assert ann.full_mask(0)[int(y), int(x)]  # the saved mask covers the clicked defect
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        lp.click(*pts[-1]) if len(pts) > 1 else None
        lp.page.screenshot(path=str(Path(SHOTS) / "label.png"))
        lp.page.keyboard.press("Escape")
        lp.idle()
    lp.page.keyboard.press("d")
    lp.page.wait_for_function(f"() => document.querySelector('#ds-label .ds-label').dataset.imageId !== '{image_id}'")
    lp.page.keyboard.press("a")
    lp.page.wait_for_function(f"() => document.querySelector('#ds-label .ds-label').dataset.imageId === '{image_id}'")
    lp.idle()
    assert lp.data("annotations") == "1"  # still there after moving away and back
    lp.page.locator("#ds-label .ds-done").click()
    lp.idle()
    assert project.image(image_id).status == "done"

    lp.page.get_by_role("tab", name="Export").click()
    lp.page.get_by_role("button", name="Export", exact=True).click()
    lp.page.get_by_text("Folder:").wait_for(timeout=30000)
    folder = lp.page.get_by_text("Folder:").inner_text().split("Folder:")[1].strip().split("\n")[0].strip()
    coco_files = list(Path(folder).rglob("*.json"))
    assert coco_files, f"no COCO json in {folder}"
    gt = COCO(str(coco_files[0]))
    assert len(gt.getAnnIds()) == 1 and gt.loadCats(gt.getCatIds())[1]["name"] == "broken_small"
    area = int(gt.annToMask(gt.loadAnns(gt.getAnnIds())[0]).sum())
    assert abs(area - int(ann.area[0])) <= 0.25 * ann.area[0] + 10  # polygon of the saved mask
    ctx.close()


def test_two_sessions_label_different_images_at_once(app):
    project, targets, url, browser = app
    (id_a, pts_a), (id_b, pts_b) = sorted(targets.items())[1:3]
    ctx_a, a = _page(browser, url)
    ctx_b, b = _page(browser, url)
    a.open(id_a)
    b.open(id_b)
    before_a, before_b = len(a.metrics()), len(b.metrics())
    # Both clicks are in flight together: neither waits for the other's answer.
    for lp, (x, y) in ((a, pts_a[0]), (b, pts_b[0])):
        lp.page.mouse.click(*lp.to_page(x, y))
    a.page.wait_for_function(f"() => window.__ds.metrics.length > {before_a}")
    b.page.wait_for_function(f"() => window.__ds.metrics.length > {before_b}")
    for lp in (a, b):
        lp.page.keyboard.press("3")
        lp.page.keyboard.press("Enter")
    for lp in (a, b):
        lp.page.wait_for_function("() => document.querySelector('#ds-label .ds-label').dataset.saved")
    for image_id, (x, y) in ((id_a, pts_a[0]), (id_b, pts_b[0])):
        ann = project.annotations(image_id)
        assert len(ann) == 1 and ann.full_mask(0)[int(y), int(x)], f"image {image_id}: mask not on its own click"
    if SHOTS:
        _review_screenshot(project, a.page, Path(SHOTS))
    ctx_a.close()
    ctx_b.close()


def _review_screenshot(project, page, out: Path) -> None:
    """Real anomaly proposals (3 good references), then the Review screen."""
    from annotate.autolabel import autolabel
    from annotate.proposers.registry import create_proposer

    labeled = {r.id for r in project.images() if len(project.annotations(r.id))}
    free = [r.id for r in project.images() if r.id not in labeled][:3]
    for i in free:
        project.set_image_status(i, "good")
    autolabel(project, create_proposer("anomaly", project=project, class_id=project.classes()[2].id), None,
              select="unlabeled", min_score=0.3)
    page.reload()
    page.get_by_role("tab", name="Review").click()
    page.wait_for_timeout(2500)
    page.screenshot(path=str(out / "review.png"), full_page=True)


def test_review_proposals_with_keys_on_the_label_canvas(app):
    """J selects a proposal, Y accepts, X rejects; after the last one Mark done has the focus (Enter
    marks the image done); Ctrl+Z undoes the reject, and the image is not done any more."""
    import numpy as np

    from data.annotations import Annotations

    project, targets, url, browser = app
    image_id = sorted(targets)[-1]
    rec = project.image(image_id)
    masks = np.zeros((2, rec.height, rec.width), bool)
    masks[0, 5:25, 5:25] = True
    masks[1, 40:60, 40:60] = True
    cls = project.classes()[0].id
    ids = project.add_annotations(image_id, Annotations.from_masks(masks, cls, [0.9, 0.4], source="anomaly",
                                                                   status="proposed"))
    ctx, lp = _page(browser, url)
    lp.open(image_id)
    for key in ("j", "y"):
        lp.page.keyboard.press(key)
        lp.idle()
    assert "accepted (saved); 1 proposal left" in lp.status()
    lp.page.keyboard.press("x")
    lp.idle()
    assert "All proposals reviewed: press Enter to mark the image done" in lp.status()
    assert lp.page.evaluate("() => document.activeElement.classList.contains('ds-done')")
    statuses = {int(i): s for i, s in zip(*(lambda a: (a.ids, a.status))(
        project.annotations(image_id, statuses=("accepted", "proposed", "rejected"))), strict=True)}
    assert (statuses[ids[0]], statuses[ids[1]]) == ("accepted", "rejected")
    lp.page.keyboard.press("Enter")
    lp.page.wait_for_function("() => document.querySelector('#ds-label .ds-imgstatus').textContent === 'done'")
    assert project.image(image_id).status == "done"
    lp.page.keyboard.press("Control+z")
    lp.idle()
    assert "Undone: review of #" in lp.status()
    _, back = project.annotation(ids[1])
    assert back.status.tolist() == ["proposed"] and project.image(image_id).status == "unlabeled"
    ctx.close()


def test_review_queue_keys_accept_reject_undo(app):
    """On the Review screen Y accepts the selected proposal and selects the next, X rejects it,
    Ctrl+Z undoes the reject; on the Label screen the Review keys do nothing."""
    import numpy as np

    from data.annotations import Annotations

    project, targets, url, browser = app
    for rec in project.images():  # earlier tests' proposals (auto-label) would sit in the queue too
        project.set_annotation_status(project.annotations(rec.id, statuses=("proposed",), with_masks=False).ids
                                      .tolist(), "rejected")
    image_id = next(r.id for r in project.images() if not len(project.annotations(r.id, with_masks=False)))
    rec = project.image(image_id)  # no accepted label here: accepting is not refused as a duplicate
    masks = np.zeros((2, rec.height, rec.width), bool)
    masks[0, 5:25, 5:25] = True
    masks[1, 40:60, 40:60] = True
    ids = project.add_annotations(image_id, Annotations.from_masks(masks, project.classes()[0].id, [0.99, 0.98],
                                                                   source="anomaly", status="proposed"))
    ctx = browser.new_context(viewport={"width": 1400, "height": 950})
    page = ctx.new_page()
    page.goto(url)
    page.get_by_role("tab", name="Review").click()
    sel = "() => document.querySelector('#ds-rv-sel input')?.value"
    page.wait_for_function(f"() => ({sel})() === '{ids[0]}'", timeout=15000)  # the highest score first
    msg = "() => document.querySelector('#ds-rv-msg').innerText"
    for key, text in (("y", f"#{ids[0]} accepted"), ("x", f"#{ids[1]} rejected"), ("Control+z", f"Undone: #{ids[1]}")):
        page.keyboard.press(key)
        page.wait_for_function(f"() => ({msg})().includes({text!r})", timeout=10000)
    assert project.annotation(ids[0])[1].status[0] == "accepted"
    assert project.annotation(ids[1])[1].status[0] == "proposed" and page.evaluate(sel) == str(ids[1])
    page.get_by_role("tab", name="Label").click()
    page.keyboard.press("j")  # the Label canvas's key: the hidden Review screen must not step
    page.wait_for_timeout(400)
    assert page.evaluate(sel) == str(ids[1]) and project.annotation(ids[1])[1].status[0] == "proposed"
    ctx.close()


def test_two_pages_one_truth_a_stale_accept_is_refused_with_the_state(app):
    """Page B rejects a proposal with X; page A, opened before and still showing it, presses Y: A is
    told the proposal was rejected already, and the database keeps B's decision."""
    import numpy as np

    from data.annotations import Annotations

    project, targets, url, browser = app
    image_id = next(r.id for r in project.images() if not len(project.annotations(r.id, with_masks=False)))
    rec = project.image(image_id)
    m = np.zeros((1, rec.height, rec.width), bool)
    m[0, 10:40, 10:40] = True
    aid, = project.add_annotations(image_id, Annotations.from_masks(m, project.classes()[0].id, 0.9,
                                                                    source="anomaly", status="proposed"))
    pages = [_page(browser, url) for _ in range(2)]
    (ctx_a, a), (ctx_b, b) = pages
    for lp in (a, b):
        lp.open(image_id)
    for lp, key in ((b, "x"), (a, "y")):
        lp.page.keyboard.press("j")
        lp.idle()
        lp.page.keyboard.press(key)
        lp.idle()
    assert "changed by another page" in a.status() and "nothing changed" in a.status()
    assert project.annotation(aid)[1].status[0] == "rejected"
    for ctx in (ctx_a, ctx_b):
        ctx.close()


def test_zoom_readout_and_point_sign_tell_the_truth(app):
    project, targets, url, browser = app
    ctx, lp = _page(browser, url)
    lp.open(sorted(targets)[0])
    scale = lp.page.evaluate("() => window.__ds.state.scale")
    assert lp.root.locator(".ds-zoom").inner_text() == f"{round(scale * 100)}%" and scale < 1  # fitted, not 100%
    assert "idle" not in (lp.root.locator(".ds-sign").get_attribute("class") or "")
    lp.page.keyboard.press("b")  # the brush: clicks paint, the point sign is not lit
    assert "idle" in lp.root.locator(".ds-sign").get_attribute("class")
    ctx.close()


def test_the_project_screen_shows_the_project_as_it_is_now(app):
    """A change made elsewhere (another screen, another page) shows when the Project screen is opened."""
    import re

    project, targets, url, browser = app
    ctx, page = _screen(browser, url)
    page.wait_for_function("() => /\\d+ good/.test(document.body.innerText)")
    good = lambda: int(re.search(r"(\d+) good", page.inner_text("body")).group(1))  # noqa: E731
    before = good()
    image_id = next(r.id for r in project.images() if r.status == "unlabeled"
                    and not len(project.annotations(r.id, with_masks=False)))
    project.set_image_status(image_id, "good")  # as the Label screen or another page would
    page.get_by_role("tab", name="Label").click()
    page.get_by_role("tab", name="Project").click()
    page.wait_for_function(f"() => /{before + 1} good/.test(document.body.innerText)", timeout=10000)
    project.set_image_status(image_id, "unlabeled")
    ctx.close()


def test_edit_outline_saves_with_one_enter(app):
    project, targets, url, browser = app
    ctx, lp = _page(browser, url)
    image_id, pts = sorted(targets.items())[1]
    lp.open(image_id)
    before = len(project.annotations(image_id, with_masks=False))
    lp.page.keyboard.press("1")
    lp.click(*pts[0])
    lp.root.locator(".ds-outline").click()
    lp.idle()
    assert "Enter saves" in lp.status()
    lp.page.keyboard.press("Enter")
    lp.page.wait_for_function("() => document.querySelector('#ds-label .ds-status').innerText.startsWith('Saved #')",
                              timeout=15000)
    assert len(project.annotations(image_id, with_masks=False)) == before + 1
    ctx.close()


def test_review_actions_are_in_view_at_1280x720(app):
    project, targets, url, browser = app
    ctx, page = _screen(browser, url, tab="Review")
    page.wait_for_selector("#ds-rv-accept")
    _assert_in_view(page, ("#ds-rv-accept", "#ds-rv-reject", "#ds-rv-prev", "#ds-rv-next", "#ds-rv-undo",
                           "#ds-rv-set-class"), 720)
    ctx.close()


def test_label_canvas_and_status_are_in_view_at_both_sizes(app):
    project, targets, url, browser = app
    for width, height in ((1280, 720), (1440, 900)):
        ctx = browser.new_context(viewport={"width": width, "height": height})
        from ui.browser import LabelPage

        lp = LabelPage(ctx.new_page(), url)
        lp.open(sorted(targets)[0])
        _assert_in_view(lp.page, ("#ds-label .ds-canvas", "#ds-label .ds-status", "#ds-label .ds-accept"), height)
        ctx.close()
