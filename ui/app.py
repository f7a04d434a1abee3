"""The studio app: Project, Label, Review, Export (and room for Train and Predict) in one ``gr.Blocks``.

Handlers here are thin: they call ``data/`` and ``annotate/`` and turn results into tables,
text and pictures. The Label screen is a ``gr.HTML`` canvas (``ui.label_component``) whose
clicks bypass the event queue; everything else uses normal Gradio events. Long work
(import, auto-label, export) streams progress and runs under its own ``concurrency_id``,
so it never blocks another tab's events (and the click path does not use the queue at all).
The Review, Train and Predict screens live in their own modules (``ui.review_tab``,
``ui.train_tab``, ``ui.predict_tab``); this one keeps the wiring between the tabs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import gradio as gr

from annotate.segmenters.base import Segmenter
from data import scratch
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
from ui.review_tab import build_review_tab, class_choices, image_of, proposer_choices
from ui.train_tab import build_train_tab, mark_done

TITLE = "Defect Studio"
MAX_FILE_SIZE = "512mb"
IMAGE_COLUMNS = ["id", "name", "status", "saved", "proposed"]
CLASS_COLUMNS = ["id", "name", "colour", "accepted", "proposed", "rejected"]




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
    waiting = f" ({im['with_proposals']} of them with proposals to review)" if im["with_proposals"] else ""
    # unlabeled + done + good is the total: images with proposals are among the unlabeled, never added on
    return (f"**{im['total']} images**: {im['unlabeled']} unlabeled{waiting}, {im['done']} done, "
            f"{im['good']} good (defect-free) &middot; project folder `{s['project']}`")


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


NEXT_ORDERS = ["in order", "least sure first"]


def set_next_order(project: Project, service: LabelService, order: str) -> None:
    """The Label screen's D key: the next image in order, or the one the assist model is least sure of."""
    if order == NEXT_ORDERS[1]:
        service.next_chooser = lambda todo: assist.next_unsure(project, assist.load(project), todo)
    else:
        service.next_chooser = None


def build_app(project: Project, segmenter: Segmenter, weights_dir: str | None = None,
              import_dir: str | Path | None = None, service: LabelService | None = None,
              assist_on: bool = False) -> gr.Blocks:
    """The app. ``assist_on``: start the assist (background model rounds) switched on; the server
    does (``python app.py serve``), tests and benches leave it off unless they test it."""
    register_run_proposer()  # the server may be built without app.py (tests, notebooks)
    service = service or LabelService(project, segmenter, weights_dir=weights_dir)
    helper = assist.Runner(project, enabled=assist_on, segmenter=segmenter)

    jobs.refresh(project)  # a job left "running" by a previous server is marked interrupted (resumable)

    with gr.Blocks(title=TITLE) as demo:
        token = gr.State("")
        rev = gr.State(0)
        gr.Markdown(f"## {TITLE}")
        with gr.Tabs() as tabs:
            with gr.Tab("Project", id="project") as project_tab:
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
                        import_report = gr.Markdown(min_height=80)  # room for the progress bar
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
                    next_order = gr.Radio(NEXT_ORDERS, value=NEXT_ORDERS[0], label="Next image (D)",
                                          info="least sure first: the assist model's least certain image "
                                               "(in order until a model exists)", scale=1)
                    assist_md = gr.Markdown(helper.view())
                assist_timer = gr.Timer(5.0)

            with gr.Tab("Review", id="review") as review_tab:
                rv = build_review_tab(project, segmenter, token, weights_dir=weights_dir, tab=review_tab)

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
                ex_msg = gr.Markdown(min_height=80)  # room for the progress bar
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

        project_outputs = [summary, images_df, classes_df, edit_cls, del_cls, move_to, *rv.class_boxes, canvas, rev]

        def project_now():
            """The Project screen as the project is now (labeling, review and jobs change it elsewhere)."""
            return summary_md(project), image_rows(project), class_rows(project)

        project_tab.select(project_now, None, [summary, images_df, classes_df], show_progress="hidden")
        demo.load(project_now, None, [summary, images_df, classes_df], show_progress="hidden")

        def do_import(files, empty_is_good=False, progress=gr.Progress()):
            if not files:
                raise gr.Error("Choose files to upload first.")
            paths = [Path(f if isinstance(f, str) else f.name) for f in files]
            with scratch.temp_dir("upload-", project.path("cache")) as tmp:
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
        def refine(t: str, r: int, ann_id):
            image_id = image_of(project, ann_id)
            r = int(r or 0) + 1
            return page_value(t, open_image=image_id, rev=r), r, gr.Tabs(selected="label")

        rv.refine.click(refine, [token, rev, rv.selected], [canvas, rev, tabs])

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
            return gr.update(choices=proposer_choices(project, weights_dir), value=f"run:{run_id}"), gr.Tabs(selected="review")

        predict.use_as_proposer.click(use_as_proposer, [predict.run], [rv.proposer, tabs])
        rv.wire_load(demo)  # the Review queue is filled when the page opens

        def set_assist(on):
            helper.enabled = bool(on)
            return helper.view()

        assist_box.change(set_assist, [assist_box], [assist_md])
        next_order.change(lambda o: set_next_order(project, service, o), [next_order], None)
        assist_timer.tick(helper.view, None, [assist_md], show_progress="hidden", concurrency_id="assist-view")
    demo.ds_service = service  # tests and benches reach the session store through the app
    demo.ds_assist = helper
    return demo


def launch_kwargs(project: Project, host: str = "127.0.0.1", port: int | None = None,
                  auth: tuple[str, str] | None = None) -> dict[str, Any]:
    """Safe defaults: bind locally, limit uploads, and serve nothing but the project's exports."""
    return dict(server_name=host, server_port=port, auth=auth, max_file_size=MAX_FILE_SIZE,
                allowed_paths=[str(project.path("exports"))], show_error=True)
