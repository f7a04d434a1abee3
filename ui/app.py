"""The studio app: Project, Label, Review, Export (and room for Train and Predict) in one ``gr.Blocks``.

Handlers here are thin: they call ``data/`` and ``annotate/`` and turn results into tables,
text and pictures. The Label screen is a ``gr.HTML`` canvas (``ui.label_component``) whose
clicks bypass the event queue; everything else uses normal Gradio events. Long work
(import, auto-label, export) streams progress and runs under its own ``concurrency_id``,
so it never blocks another tab's events (and the click path does not use the queue at all).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from annotate import review
from annotate.autolabel import autolabel as run_autolabel
from annotate.autolabel import format_report
from annotate.proposers.registry import create_proposer, proposer_names
from annotate.segmenters.base import Segmenter
from data import render
from data.errors import StudioError
from data.export import export_project, not_done_message, zip_export
from data.import_report import markdown as import_markdown
from data.importers import import_sources
from data.store import Project
from train import assist, jobs
from train.proposer import register as register_run_proposer
from ui.errors import user_error
from ui.label_api import LabelService
from ui.label_component import label_canvas, page_value
from ui.predict_tab import build_predict_tab
from ui.train_tab import build_train_tab, mark_done

TITLE = "Defect Studio"
MAX_FILE_SIZE = "512mb"
IMAGE_COLUMNS = ["id", "name", "status", "saved", "proposed"]
CLASS_COLUMNS = ["id", "name", "colour", "accepted", "proposed", "rejected"]
PROPOSAL_COLUMNS = ["id", "class", "score", "source"]




# ------------------------------------------------------------------ tables
def image_rows(project: Project) -> list[list[Any]]:
    """One row per image with the status a user reads: unlabeled / has proposals / labeled / good."""
    counts = project.annotation_counts()
    rows = []
    for r in project.images():
        c = counts.get(r.id, {})
        saved, proposed = c.get("accepted", 0), c.get("proposed", 0)
        if r.status == "good":
            label = "good"
        elif r.status == "done" or saved:
            label = "labeled" + ("" if r.status == "done" else " (not marked done)")
        elif proposed:
            label = "has proposals"
        else:
            label = "unlabeled"
        rows.append([r.id, r.name, label, saved, proposed])
    return rows


def class_rows(project: Project) -> list[list[Any]]:
    by_class = project.stats()["annotations"]
    return [[c.id, c.name, c.color, by_class[c.name]["accepted"], by_class[c.name]["proposed"],
             by_class[c.name]["rejected"]] for c in project.classes()]


def summary_md(project: Project) -> str:
    s = project.stats()
    im = s["images"]
    return (f"**{im['total']} images**: {im['unlabeled']} unlabeled, {im['with_proposals']} with proposals, "
            f"{im['done']} done, {im['good']} good (defect-free) &middot; project folder `{s['project']}`")


def class_choices(project: Project) -> list[tuple[str, int]]:
    return [(c.name, c.id) for c in project.classes()]


def delete_consequence(project: Project, class_id: int | None, move_to: int | None) -> str:
    """What deleting a class does to its annotations, spelled out before the user confirms."""
    if class_id is None:
        return "Pick a class to delete."
    c = project.get_class(class_id)
    n = project.stats()["annotations"][c.name]
    total = sum(n.values())
    what = f"{n['accepted']} accepted, {n['proposed']} proposed, {n['rejected']} rejected"
    if move_to is not None and move_to != class_id:
        return (f"Deleting **{c.name}** moves its {total} annotations ({what}) to "
                f"**{project.get_class(move_to).name}**; their masks and statuses stay.")
    return f"Deleting **{c.name}** **deletes** its {total} annotations ({what}). This cannot be undone."


# ------------------------------------------------------------------ app
def gather_uploads(paths: list[Path], dest: Path) -> list[Path]:
    """Put the files of one upload side by side, as the user had them.

    Gradio stores every uploaded file in a folder of its own, so a COCO JSON would never
    find the images uploaded with it. Copies (links where possible) go into ``dest`` under
    their own names; a JSON then imports with its images, and images it does not name
    import on their own.
    """
    copied: list[Path] = []
    for src in paths:
        target = dest / src.name
        n = 1
        while target.exists():  # equal names from different folders stay apart
            target = dest / f"{src.stem}_{n}{src.suffix}"
            n += 1
        try:
            os.link(src, target)
        except OSError:
            shutil.copyfile(src, target)
        copied.append(target)
    jsons = [p for p in copied if p.suffix.lower() == ".json"]
    if not jsons:
        return copied
    named: set[str] = set()
    for j in jsons:
        try:
            named |= {Path(im.get("file_name", "")).name for im in json.loads(j.read_text("utf-8")).get("images", [])}
        except (OSError, ValueError, AttributeError):
            pass  # the importer reports an unreadable JSON with its reason
    return jsons + [p for p in copied if p.suffix.lower() != ".json" and p.name not in named]


def export_markdown(res) -> str:
    """The Export screen's report: counts, what polygons changed, what was left out and how to add it."""
    n = res.n_images
    lines = [f"Exported {n.get('train', 0)} train + {n.get('val', 0)} val images, {res.n_annotations} annotations, "
             f"classes {', '.join(res.class_names)}.", f"Folder: `{res.out_path}`",
             f"Dataset hash `{res.content_hash[:16]}`"]
    if res.holes_filled or res.multi_part:
        lines.append(f"{res.holes_filled} masks had holes, filled (polygons cannot hold them; RLE keeps them); "
                     f"{res.multi_part} masks are in several parts.")
    left = not_done_message(*res.not_done, "**Mark labelled images done** adds those whose proposals are all "
                            "reviewed; then export again.")
    if left:
        lines.append(f"⚠️ {left}")
    return "\n\n".join(lines)


def build_app(project: Project, segmenter: Segmenter, weights_dir: str | None = None,
              import_dir: str | Path | None = None, service: LabelService | None = None,
              assist_on: bool = False) -> gr.Blocks:
    """The app. ``assist_on``: start the assist (background model rounds) switched on; the server
    does (``python app.py serve``), tests and benches leave it off unless they test it."""
    register_run_proposer()  # the server may be built without app.py (tests, notebooks)
    service = service or LabelService(project, segmenter, weights_dir=weights_dir)
    helper = assist.Runner(project, enabled=assist_on)

    jobs.refresh(project)  # a job left "running" by a previous server is marked interrupted (resumable)
    cancel_events: dict[str, threading.Event] = {}

    with gr.Blocks(title=TITLE) as demo:
        token = gr.State("")
        rev = gr.State(0)
        gr.Markdown(f"## {TITLE}")
        with gr.Tabs() as tabs:
            with gr.Tab("Project", id="project"):
                summary = gr.Markdown(summary_md(project))
                with gr.Row():
                    with gr.Column(scale=3):
                        gr.Markdown("### Images (select a row to label it)")
                        images_df = gr.Dataframe(value=image_rows(project), headers=IMAGE_COLUMNS,
                                                 interactive=False, max_height=420)
                    with gr.Column(scale=2):
                        gr.Markdown("### Import")
                        upload = gr.File(label="Images, a zip (a COCO or YOLO dataset zip, e.g. an export, brings its "
                                               "labels), a COCO JSON with its images, or a server folder (--import-dir)",
                                         file_count="multiple")
                        empty_good = gr.Checkbox(
                            value=False, label="COCO images without annotations are background (good)",
                            info="Leave off when the dataset may hold images not labelled yet (CVAT and Label Studio "
                                 "list those too). YOLO images with an empty label file are background either way.")
                        import_btn = gr.Button("Import uploaded files", variant="primary")
                        dir_btn = gr.Button(f"Import server folder {import_dir}", visible=import_dir is not None)
                        import_report = gr.Markdown()
                gr.Markdown("### Classes")
                classes_df = gr.Dataframe(value=class_rows(project), headers=CLASS_COLUMNS, interactive=False)
                with gr.Row():
                    with gr.Column():
                        new_name = gr.Textbox(label="New class name")
                        new_color = gr.ColorPicker(label="Colour (empty: next in palette)", value=None)
                        add_btn = gr.Button("Add class")
                    with gr.Column():
                        edit_cls = gr.Dropdown(label="Class", choices=class_choices(project), value=None)
                        edit_name = gr.Textbox(label="Rename to")
                        edit_color = gr.ColorPicker(label="Recolour to")
                        edit_btn = gr.Button("Rename / recolour")
                    with gr.Column():
                        del_cls = gr.Dropdown(label="Delete class", choices=class_choices(project), value=None)
                        move_to = gr.Dropdown(label="Move its annotations to (empty: delete them)",
                                              choices=class_choices(project), value=None)
                        del_note = gr.Markdown("Pick a class to delete.")
                        del_btn = gr.Button("Delete class", variant="stop")
                class_msg = gr.Markdown()

            with gr.Tab("Label", id="label"):
                canvas = label_canvas(service)
                with gr.Row():
                    assist_box = gr.Checkbox(value=assist_on, label="Assist: a model keeps proposing while you label",
                                             info=f"trains in the background (one CPU thread, low priority) once "
                                                  f"{assist.MIN_DONE} images are done, and proposes on the images "
                                                  f"not yet done when it beats the last model", scale=1)
                    assist_md = gr.Markdown(helper.view())
                assist_timer = gr.Timer(5.0)

            with gr.Tab("Review", id="review"):
                with gr.Row():
                    with gr.Column(scale=3):
                        rv_image = gr.Dropdown(label="Image with proposals", choices=[], value=None)
                        rv_view = gr.Image(label="Proposals (dashed) and saved annotations", interactive=False,
                                           height=520)
                    with gr.Column(scale=2):
                        rv_table = gr.Dataframe(headers=PROPOSAL_COLUMNS, interactive=False,
                                                label="Proposals on this image (select a row)")
                        rv_sel = gr.Number(label="Selected proposal id", precision=0, value=None)
                        rv_zoom = gr.Image(label="Selected proposal, close up", interactive=False, height=300)
                        with gr.Row():
                            rv_accept = gr.Button("Accept", variant="primary")
                            rv_reject = gr.Button("Reject", variant="stop")
                        with gr.Row():
                            rv_class = gr.Dropdown(label="Change class to", choices=class_choices(project))
                            rv_change = gr.Button("Change class")
                        rv_refine = gr.Button("Refine with clicks in Label")
                        with gr.Row():
                            rv_score = gr.Slider(0, 1, value=0.5, step=0.01, label="Accept all at or above score")
                            rv_scope = gr.Radio(["this image", "all images"], value="this image", label="Scope")
                        rv_above = gr.Button("Accept all above score")
                        rv_msg = gr.Markdown()
                gr.Markdown("### Auto-label a batch")
                with gr.Row():
                    al_proposer = gr.Dropdown(label="Proposer", choices=_proposer_choices(project), value="anomaly")
                    al_select = gr.Radio([("not yet done (unlabeled)", "unlabeled"), ("done ones too", "all")],
                                         value="unlabeled", label="Images",
                                         info="good images never get proposals; none covers an accepted label")
                    al_min = gr.Slider(0, 1, value=0.5, step=0.01, label="Minimum score")
                    al_class = gr.Dropdown(label="Class for anomaly proposals (empty: nearest by appearance)",
                                           choices=class_choices(project), value=None)
                with gr.Row():
                    al_start = gr.Button("Start auto-label", variant="primary")
                    al_cancel = gr.Button("Cancel")
                al_msg = gr.Markdown()

            with gr.Tab("Export", id="export"):
                with gr.Row():
                    ex_fmt = gr.Radio(["coco", "yolo-segment", "yolo-detect"], value="coco", label="Format")
                    ex_val = gr.Slider(0, 0.9, value=0.2, step=0.05, label="Validation fraction")
                    ex_seed = gr.Number(value=0, precision=0, label="Split seed")
                with gr.Row():
                    ex_rle = gr.Checkbox(label="COCO masks as RLE (keeps holes)")
                    ex_prop = gr.Checkbox(label="Include proposals (not yet reviewed)")
                gr.Markdown("Only images marked **done** or **good** are exported (good ones as background images).")
                with gr.Row():
                    ex_btn = gr.Button("Export", variant="primary")
                    ex_done_btn = gr.Button("Mark labelled images done")
                ex_msg = gr.Markdown()
                ex_file = gr.File(label="Download (zip)")

            with gr.Tab("Train", id="train") as train_tab:
                build_train_tab(project, weights_dir=weights_dir, tab=train_tab)
            with gr.Tab("Predict", id="predict") as predict_tab:
                predict = build_predict_tab(project, tab=predict_tab)

        # -------------------------------------------------------- session
        def on_load(request: gr.Request):
            t = service.open_page(getattr(request, "session_hash", "") or "")
            return page_value(t), t

        def on_unload(request: gr.Request):
            service.sessions.close_owner(getattr(request, "session_hash", "") or "")

        demo.load(on_load, outputs=[canvas, token], queue=False)
        demo.unload(on_unload)

        # -------------------------------------------------------- project
        def refresh_project(t: str, r: int):
            choices = class_choices(project)
            r = int(r or 0) + 1
            return (summary_md(project), image_rows(project), class_rows(project),
                    gr.update(choices=choices), gr.update(choices=choices), gr.update(choices=choices),
                    gr.update(choices=choices), gr.update(choices=choices), page_value(t, rev=r), r)

        project_outputs = [summary, images_df, classes_df, edit_cls, del_cls, move_to, rv_class, al_class, canvas, rev]

        def do_import(files, empty_is_good=False, progress=gr.Progress()):
            if not files:
                raise gr.Error("Choose files to upload first.")
            paths = [Path(f if isinstance(f, str) else f.name) for f in files]
            with tempfile.TemporaryDirectory(prefix="upload-", dir=project.path("cache")) as tmp:
                return _import(gather_uploads(paths, Path(tmp)), empty_is_good, progress)

        def do_import_dir(empty_is_good=False, progress=gr.Progress()):
            return _import([Path(import_dir)], empty_is_good, progress)

        def _import(paths: list[Path], empty_is_good: bool, progress) -> str:
            try:
                rep = import_sources(project, paths, progress=lambda d, n: progress((d, n), desc="importing"),
                                     empty_as="good" if empty_is_good else "unlabeled")
            except StudioError as err:
                raise user_error(err) from err
            return import_markdown(rep)

        import_btn.click(do_import, [upload, empty_good], [import_report], concurrency_id="batch").then(
            refresh_project, [token, rev], project_outputs)
        dir_btn.click(do_import_dir, [empty_good], [import_report], concurrency_id="batch").then(
            refresh_project, [token, rev], project_outputs)

        def open_in_label(t: str, r: int, evt: gr.SelectData):
            row = evt.row_value if evt.row_value else None
            if not row:
                return gr.update(), r, gr.update()
            r = int(r or 0) + 1
            return page_value(t, open_image=int(row[0]), rev=r), r, gr.Tabs(selected="label")

        images_df.select(open_in_label, [token, rev], [canvas, rev, tabs])

        def add_class(name: str, color: str | None):
            try:
                c = project.add_class(name, color or None)
            except StudioError as err:
                raise user_error(err) from err
            return f"Added class **{c.name}**."

        def edit_class(cid: int | None, name: str, color: str | None):
            if cid is None:
                raise gr.Error("Pick the class to change.")
            try:
                c = project.update_class(int(cid), name=name or None, color=color or None)
            except StudioError as err:
                raise user_error(err) from err
            return f"Class #{c.id} is now **{c.name}** ({c.color}); its annotations keep their class."

        def delete_class(cid: int | None, to: int | None):
            if cid is None:
                raise gr.Error("Pick the class to delete.")
            try:
                name = project.get_class(int(cid)).name
                n = project.delete_class(int(cid), move_to=None if to in (None, cid) else int(to))
            except StudioError as err:
                raise user_error(err) from err
            action = "moved" if to not in (None, cid) else "deleted"
            return f"Deleted class **{name}**; {n} annotations {action}."

        add_btn.click(add_class, [new_name, new_color], [class_msg]).then(refresh_project, [token, rev],
                                                                           project_outputs)
        edit_btn.click(edit_class, [edit_cls, edit_name, edit_color], [class_msg]).then(
            refresh_project, [token, rev], project_outputs)
        del_btn.click(delete_class, [del_cls, move_to], [class_msg]).then(refresh_project, [token, rev],
                                                                           project_outputs)
        for comp in (del_cls, move_to):
            comp.change(lambda c, m: delete_consequence(project, c, m), [del_cls, move_to], [del_note])

        # -------------------------------------------------------- review
        def review_images():
            ids = [r[0] for r in image_rows(project) if r[4] > 0]
            names = {r.id: r.name for r in project.images()}
            return [(f"{names[i]} (#{i})", i) for i in ids]

        def show_review(image_id: int | None, ann_id: int | None = None):
            """The image with its annotations, the proposals table, and the selected proposal with
            its close-up: ``ann_id``, or the first one when None (nothing when ``ann_id`` is no longer
            a proposal here: another session took it, and a different row must not be selected)."""
            if image_id is None:
                return None, [], None, None
            ann = project.annotations(int(image_id), statuses=("accepted", "proposed"))
            colors = {c.id: c.color for c in project.classes()}
            image = project.load_image(int(image_id))
            view = render.draw_annotations(image, ann, colors)
            names = project.class_names()
            rows = [[int(ann.ids[i]), names.get(int(ann.class_id[i]), "?"),
                     None if np.isnan(ann.confidence[i]) else round(float(ann.confidence[i]), 3), str(ann.source[i])]
                    for i in range(len(ann)) if ann.status[i] == "proposed"]
            return view, rows, *close_up(image, ann, colors, ann_id)

        def close_up(image: np.ndarray, ann, colors: dict[int, str], ann_id: int | None):
            """(selected proposal id, its close-up), or (None, None)."""
            proposed = [i for i in range(len(ann)) if ann.status[i] == "proposed"]
            chosen = proposed[:1] if ann_id is None else [i for i in proposed if int(ann.ids[i]) == int(ann_id)]
            if not chosen:
                return None, None
            return int(ann.ids[chosen[0]]), render.zoom_on(image, ann, chosen[0], colors)

        def refresh_review(image_id, ann_id: int | None = None):
            choices = review_images()
            ids = [c[1] for c in choices]
            if image_id not in ids:
                image_id, ann_id = (ids[0] if ids else None), None
            return gr.update(choices=choices, value=image_id), *show_review(image_id, ann_id)

        def pick_row(image_id, evt: gr.SelectData):
            row = evt.row_value or []
            if not row or not str(row[0]).strip().isdigit():
                return None, None
            if image_id is None:
                return None, None
            # Only the close-up changes: the image view and the table stay as drawn.
            ann = project.annotations(int(image_id), statuses=("accepted", "proposed"))
            colors = {c.id: c.color for c in project.classes()}
            return close_up(project.load_image(int(image_id)), ann, colors, int(row[0]))

        def act(kind: str):
            def handler(image_id, ann_id, class_id=None):
                missing = ("Select a proposal in the table first." if ann_id is None else
                           "Pick the new class." if kind == "change" and class_id is None else None)
                if missing:  # a choice not made yet, not a failure: a notice, and the screen stays as it is
                    gr.Warning(missing)
                    return (missing, *[gr.skip()] * (len(rv_outputs) - 1))
                try:
                    if kind == "accept":
                        res = review.accept(project, [int(ann_id)])
                        msg = f"#{int(ann_id)}: accepted {res.changed}, dropped as duplicate {res.dropped_duplicates}."
                    elif kind == "reject":
                        review.reject(project, [int(ann_id)])
                        msg = f"#{int(ann_id)} rejected."
                    else:
                        review.change_class(project, int(ann_id), int(class_id))
                        msg = f"#{int(ann_id)} is now {project.get_class(int(class_id)).name}."
                except StudioError as err:
                    raise user_error(err) from err
                # A re-classed proposal stays selected; after accept or reject the next one is.
                return (msg, *refresh_review(image_id, int(ann_id) if kind == "change" else None))
            return handler

        rv_outputs = [rv_msg, rv_image, rv_view, rv_table, rv_sel, rv_zoom]
        # .input: the user picked an image; updates from the handlers already carry the whole screen.
        rv_image.input(show_review, [rv_image], [rv_view, rv_table, rv_sel, rv_zoom])
        rv_table.select(pick_row, [rv_image], [rv_sel, rv_zoom])
        rv_accept.click(act("accept"), [rv_image, rv_sel], rv_outputs)
        rv_reject.click(act("reject"), [rv_image, rv_sel], rv_outputs)
        rv_change.click(act("change"), [rv_image, rv_sel, rv_class], rv_outputs)

        def accept_above(image_id, score, scope):
            res = review.accept_above(project, float(score), None if scope == "all images" else image_id)
            return (f"Accepted {res.changed} proposals at or above {score:.2f} ({res.dropped_duplicates} dropped as duplicates).",
                    *refresh_review(image_id))

        rv_above.click(accept_above, [rv_image, rv_score, rv_scope], rv_outputs)

        def refine(t: str, r: int, image_id):
            if image_id is None:
                raise gr.Error("Pick an image first.")
            r = int(r or 0) + 1
            return page_value(t, open_image=int(image_id), rev=r), r, gr.Tabs(selected="label")

        rv_refine.click(refine, [token, rev, rv_image], [canvas, rev, tabs])

        def autolabel(t: str, proposer: str, select: str, min_score: float, class_id, progress=gr.Progress()):
            ev = threading.Event()
            cancel_events[t] = ev
            try:
                prop = create_proposer(proposer, project=project, weights_dir=weights_dir,
                                       class_id=None if class_id is None else int(class_id))
                progress((0, 1), desc="starting")
                rep = run_autolabel(project, prop, segmenter, select=select, min_score=float(min_score),
                                    class_id=None if class_id is None else int(class_id),
                                    progress=lambda d, n: progress((d, n), desc="proposing"), cancel=ev)
            except StudioError as err:
                raise user_error(err) from err
            finally:
                cancel_events.pop(t, None)
            return format_report(rep)

        def cancel(t: str):
            ev = cancel_events.get(t)
            if ev is None:
                return "No auto-label running in this tab."
            ev.set()
            return "Cancelling after the image in flight (everything so far is kept; start again to resume)."

        al_start.click(autolabel, [token, al_proposer, al_select, al_min, al_class], [al_msg],
                       concurrency_id="batch").then(refresh_review, [rv_image], rv_outputs[1:])
        al_cancel.click(cancel, [token], [al_msg], queue=False)

        # -------------------------------------------------------- export
        def do_export(fmt, val, seed, rle, include, progress=gr.Progress()):
            stamp = time.strftime("%Y%m%d-%H%M%S")
            out = project.path("exports", f"{fmt}-{stamp}")
            kw = dict(val_fraction=float(val), seed=int(seed or 0), rle=bool(rle), include_proposed=bool(include))
            try:
                res = export_project(project, fmt, out, progress=lambda d, n: progress((d, n), desc="exporting"),
                                     **kw)
                z = zip_export(res.out_path)  # the folder just written: one snapshot, exported once
            except StudioError as err:
                raise user_error(err) from err
            return export_markdown(res), str(z)

        ex_btn.click(do_export, [ex_fmt, ex_val, ex_seed, ex_rle, ex_prop], [ex_msg, ex_file],
                     concurrency_id="export")
        ex_done_btn.click(lambda: mark_done(project), None, [ex_msg])

        def use_as_proposer(run_id):
            if not run_id:
                raise gr.Error("Pick a trained run first.")
            return gr.update(choices=_proposer_choices(project), value=f"run:{run_id}"), gr.Tabs(selected="review")

        predict.use_as_proposer.click(use_as_proposer, [predict.run], [al_proposer, tabs])

        # the Review tab lists images with proposals when opened
        demo.load(refresh_review, [rv_image], rv_outputs[1:])

        def set_assist(on):
            helper.enabled = bool(on)
            return helper.view()

        assist_box.change(set_assist, [assist_box], [assist_md])
        assist_timer.tick(helper.view, None, [assist_md], show_progress="hidden", concurrency_id="assist-view")
    demo.ds_service = service  # tests and benches reach the session store through the app
    demo.ds_assist = helper
    return demo


def _proposer_choices(project: Project) -> list[str]:
    names = [n for n in proposer_names() if n != "run:ID"]
    try:
        names += [f"run:{r.id}" for r in jobs.list_runs(project) if r.status == "succeeded"]
    except StudioError:
        pass  # an unreadable run registry must not keep the Review screen from opening
    return names


def launch_kwargs(project: Project, host: str = "127.0.0.1", port: int | None = None,
                  auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """Safe defaults: bind locally, limit uploads, and serve nothing but the project's exports."""
    return dict(server_name=host, server_port=port, auth=auth, max_file_size=MAX_FILE_SIZE,
                allowed_paths=[str(project.path("exports"))], show_error=True)
