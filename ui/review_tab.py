"""The Review screen: one queue of every proposal on every image, reviewed with the Label canvas's keys.

Handlers are plain functions over ``annotate.review`` and the store (tested without a
browser); each returns a :class:`ReviewView`, the whole screen as plain values.
:func:`build_review_tab` lays it out and wires it. The queue is sorted by score (highest
first) or by the model's uncertainty (score closest to 0.5 first); proposals without a score
come last either way. After an accept or reject the proposal now at the same place in the
queue is selected, so Y / X can be pressed again and again. Keys (Y accept, X reject, J / K
next / previous, 1-9 class, Ctrl+Z undo) are a document listener that clicks this screen's
buttons, and only while the screen is shown (the Label canvas has its own keys).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
import numpy as np

from annotate import review
from annotate.autolabel import autolabel as run_autolabel
from annotate.autolabel import format_report
from annotate.proposers.registry import create_proposer, proposer_names, proposer_statuses
from annotate.segmenters.base import Segmenter
from data import render
from data.errors import NotFoundError, StudioError
from data.store import Project
from train import jobs
from ui.errors import user_error

QUEUE_COLUMNS = ["id", "image", "class", "score", "source"]
ORDERS = ("score", "uncertainty")
UNDO_DEPTH = 200
UndoStep = tuple[int, str, str]  # (annotation id, its status before, its image's status before)
KEYS = {"y": "ds-rv-accept", "x": "ds-rv-reject", "j": "ds-rv-next", "k": "ds-rv-prev"}
LEGEND = ("<div class='ds-rv-legend'>Keys: <b>Y</b> accept · <b>X</b> reject · <b>J</b> / <b>K</b> next / previous"
          " · <b>1-9</b> class (in the project's order) · <b>Ctrl+Z</b> undo</div>")
# Clicks this screen's buttons; runs once per mounted legend, and a legend that is not shown
# (another tab) or no longer in the page (offsetParent null either way) does nothing.
KEYS_JS = """
const ids = KEYS;
document.addEventListener("keydown", (e) => {
  const t = e.target, tag = t && t.tagName, k = (e.key || "").toLowerCase();
  if (element.offsetParent === null || tag === "TEXTAREA" || tag === "SELECT" || (t && t.isContentEditable)) return;
  if (tag === "INPUT" && !["radio", "checkbox", "range", "button"].includes(t.type)) return;
  let id = null;
  if ((e.ctrlKey || e.metaKey) && k === "z" && !e.shiftKey && !e.altKey) id = "ds-rv-undo";
  else if (e.ctrlKey || e.metaKey || e.altKey) return;
  else id = ids[k] || (k.length === 1 && k >= "1" && k <= "9" ? "ds-rv-class-" + k : null);
  if (!id || (e.repeat && k !== "j" && k !== "k")) return;  // a held Y must not accept a whole queue
  const el = document.getElementById(id), b = el && (el.tagName === "BUTTON" ? el : el.querySelector("button"));
  if (b) { e.preventDefault(); b.click(); }
});
""".replace("KEYS", json.dumps(KEYS), 1)


@dataclass(frozen=True)
class ReviewView:
    """The screen after one action: its message, the queue, the selected proposal and its pictures."""

    message: str
    rows: list[list[Any]]
    selected: int | None
    image: np.ndarray | None
    zoom: np.ndarray | None
    where: str
    undo: list[UndoStep] = field(default_factory=list)


# ------------------------------------------------------------------ the queue
def _rank(order: str, score: float, ann_id: int) -> tuple:
    """Sort key: by score, highest first, or by uncertainty, nearest 0.5 first; no score last."""
    if np.isnan(score):
        return (1, 0.0, ann_id)
    return (0, -score if order == "score" else abs(score - 0.5), ann_id)


def queue_rows(project: Project, order: str = "score") -> list[list[Any]]:
    """One row per proposal on every image (``QUEUE_COLUMNS``), in ``order`` (one of ``ORDERS``)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    names = project.class_names()
    counts = project.annotation_counts()
    scored: list[tuple[float, list[Any]]] = []
    for rec in project.images():
        if not counts.get(rec.id, {}).get("proposed"):
            continue
        ann = project.annotations(rec.id, statuses=("proposed",), with_masks=False)
        for i in range(len(ann)):
            s = float(ann.confidence[i])
            scored.append((s, [int(ann.ids[i]), f"{rec.name} (#{rec.id})", names.get(int(ann.class_id[i]), "?"),
                               None if np.isnan(s) else round(s, 3), str(ann.source[i])]))
    return [row for _, row in sorted(scored, key=lambda t: _rank(order, t[0], t[1][0]))]


def _pictures(project: Project, ann_id: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The proposal's image with its annotations (the proposal boxed) and the proposal close up."""
    try:
        image_id, _ = project.annotation(ann_id)
        image = project.load_image(image_id)
    except NotFoundError:
        return None, None  # deleted by another session since the queue was read
    ann = project.annotations(image_id, statuses=("accepted", "proposed"))
    at = np.flatnonzero(ann.ids == ann_id)
    colors = {c.id: c.color for c in project.classes()}
    view = render.draw_annotations(image, ann, colors)
    if not len(at):
        return view, None
    i = int(at[0])
    pad = 2 * render.line_width(*image.shape[:2])
    x0, y0, x1, y1 = (float(v) for v in ann.xyxy[i])
    render.box(view, (x0 - pad, y0 - pad, x1 + pad, y1 + pad), render.class_rgb(colors, int(ann.class_id[i])), pad)
    return view, render.zoom_on(image, ann, i, colors)


def screen(project: Project, order: str, ann_id: int | None, position: int | None = None, message: str = "",
           undo: list[UndoStep] | None = None) -> ReviewView:
    """The queue with ``ann_id`` selected; if it is not in the queue (any more), the proposal at
    ``position`` (the last one when the queue got shorter), or none when ``position`` is None."""
    rows = queue_rows(project, order)
    ids = [r[0] for r in rows]
    if ann_id is not None and int(ann_id) in ids:
        k: int | None = ids.index(int(ann_id))
    elif position is not None and rows:
        k = min(max(int(position), 0), len(rows) - 1)
    else:
        k = None
    if k is None:
        where = "The queue is empty: every proposal is reviewed." if not rows else "No proposal selected."
        return ReviewView(message, rows, None, None, None, where, list(undo or []))
    row = rows[k]
    score = "no score" if row[3] is None else f"score {row[3]:.3f}"
    where = f"**{k + 1} / {len(rows)}** · #{row[0]} on {row[1]} · {row[2]} · {score} · {row[4]}"
    return ReviewView(message, rows, row[0], *_pictures(project, row[0]), where, list(undo or []))


def refresh(project: Project, order: str, ann_id: int | None, undo: list[UndoStep] | None = None) -> ReviewView:
    """The screen as it is now, the selection kept when it is still a proposal (else the first)."""
    return screen(project, order, ann_id, 0, undo=undo)


def select(project: Project, order: str, ann_id: int | None, undo: list[UndoStep] | None = None) -> ReviewView:
    """A queue row picked; a proposal another session reviewed meanwhile selects nothing (not another row)."""
    v = screen(project, order, ann_id, None, undo=undo)
    if ann_id is not None and v.selected is None:
        return screen(project, order, None, None, f"#{int(ann_id)} is no longer a proposal (reviewed elsewhere).",
                      undo)
    return v


def step(project: Project, order: str, ann_id: int | None, delta: int,
         undo: list[UndoStep] | None = None) -> ReviewView:
    """J / K: the next / previous proposal of the queue (round the end, as on the Label canvas)."""
    ids = [r[0] for r in queue_rows(project, order)]
    if not ids:
        return screen(project, order, None, None, "No proposals to review.", undo)
    k = ids.index(int(ann_id)) if ann_id is not None and int(ann_id) in ids else (-1 if delta > 0 else 0)
    k = (k + delta) % len(ids)
    return screen(project, order, ids[k], None, f"Proposal #{ids[k]}: Y accepts, X rejects, 1-9 sets its class.",
                  undo)


# ------------------------------------------------------------------ actions
def _nothing_selected(project: Project, order: str, undo: list[UndoStep] | None) -> ReviewView:
    return screen(project, order, None, 0, "Select a proposal in the queue first (J selects the first).", undo)


def decide(project: Project, order: str, ann_id: int | None, verdict: str,
           undo: list[UndoStep] | None = None) -> ReviewView:
    """Accept (``verdict="accepted"``) or reject the selected proposal, then select the proposal now
    at its place in the queue. The step goes on the undo stack."""
    undo = list(undo or [])
    if ann_id is None:
        return _nothing_selected(project, order, undo)
    aid = int(ann_id)
    ids = [r[0] for r in queue_rows(project, order)]
    pos = ids.index(aid) if aid in ids else None
    image_id, ann = project.annotation(aid)
    image_before = project.image(image_id).status
    res = review.accept(project, [aid]) if verdict == "accepted" else review.reject(project, [aid])
    if res.skipped:
        msg = f"#{aid} is no longer a proposal (it is {ann.status[0]}); nothing changed."
    else:
        undo = [*undo, (aid, "proposed", image_before)][-UNDO_DEPTH:]
        msg = (f"#{aid} rejected instead: it duplicates an accepted label (overlap above IoU "
               f"{review.DUPLICATE_IOU}). Ctrl+Z undoes." if res.dropped_duplicates else
               f"#{aid} {verdict}. Ctrl+Z undoes.")
    return screen(project, order, None, pos, msg, undo)


def undo_last(project: Project, order: str, ann_id: int | None, undo: list[UndoStep] | None) -> ReviewView:
    """Ctrl+Z: the last accept or reject of this page is a proposal again (and selected); its image,
    if marked done or good meanwhile, is unlabeled again (a proposal to review: not done)."""
    undo = list(undo or [])
    if not undo:
        return screen(project, order, ann_id, 0, "Nothing to undo.", undo)
    aid, before, _image_before = undo.pop()
    try:
        image_id, _ = project.annotation(aid)
        project.update_annotation(aid, status=before)
    except NotFoundError:
        return screen(project, order, ann_id, 0, f"#{aid} was deleted meanwhile; nothing to undo for it.", undo)
    msg = f"Undone: #{aid} is {before} again."
    rec = project.image(image_id)
    if before == "proposed" and rec.status in ("done", "good"):
        project.set_image_status(image_id, "unlabeled")
        msg += f" {rec.name} is unlabeled again (it had been marked {rec.status}): it has a proposal to review."
    return screen(project, order, aid, 0, msg, undo)


def set_class(project: Project, order: str, ann_id: int | None, class_id: int | None,
              undo: list[UndoStep] | None = None) -> ReviewView:
    """The selected proposal's class; it stays selected."""
    if ann_id is None:
        return _nothing_selected(project, order, undo)
    if class_id is None:
        return screen(project, order, ann_id, 0, "Pick the class first.", undo)
    review.change_class(project, int(ann_id), int(class_id))
    name = project.get_class(int(class_id)).name
    return screen(project, order, ann_id, 0, f"#{int(ann_id)} is now {name}; Y accepts it.", undo)


def set_class_key(project: Project, order: str, ann_id: int | None, digit: int,
                  undo: list[UndoStep] | None = None) -> ReviewView:
    """Digit ``digit`` (1-9): the project's ``digit``-th class, as on the Label canvas."""
    classes = project.classes()
    if not 1 <= digit <= len(classes):
        return screen(project, order, ann_id, 0, f"No class {digit}: the project has {len(classes)}.", undo)
    return set_class(project, order, ann_id, classes[digit - 1].id, undo)


def accept_above(project: Project, order: str, ann_id: int | None, score: float, scope: str,
                 undo: list[UndoStep] | None = None) -> ReviewView:
    """Accept every proposal at or above ``score``: on the selected proposal's image, or all images."""
    image_id = None
    if scope != "all images":
        if ann_id is None:
            return _nothing_selected(project, order, undo)
        image_id = project.annotation(int(ann_id))[0]
    res = review.accept_above(project, float(score), image_id)
    return screen(project, order, ann_id, 0, f"Accepted {res.changed} proposals at or above {score:.2f} "
                  f"({res.dropped_duplicates} dropped as duplicates).", undo)


def image_of(project: Project, ann_id: int | None) -> int:
    """The image of the selected proposal (for "Refine with clicks in Label")."""
    if ann_id is None:
        raise gr.Error("Select a proposal in the queue first.")
    try:
        return project.annotation(int(ann_id))[0]
    except StudioError as err:
        raise user_error(err) from err


def proposer_choices(project: Project, weights_dir: str | None = None) -> list[tuple[str, str]]:
    """(label, name) of every proposer: the ones that cannot run here say what they need."""
    notes = {s.name: s.note for s in proposer_statuses(weights_dir) if s.state == "missing"}
    names = [(n if n not in notes else f"{n} ({notes[n]})", n) for n in proposer_names() if n != "run:ID"]
    try:
        names += [(f"run:{r.id} (trained here)", f"run:{r.id}") for r in jobs.list_runs(project)
                  if r.status == "succeeded"]
    except StudioError:
        pass  # an unreadable run registry must not keep the Review screen from opening
    return names


def class_choices(project: Project) -> list[tuple[str, int]]:
    return [(c.name, c.id) for c in project.classes()]


# ------------------------------------------------------------------ layout
@dataclass
class ReviewTab:
    selected: gr.Number
    refine: gr.Button
    proposer: gr.Dropdown
    class_boxes: list[gr.Dropdown]
    wire_load: Callable[[gr.Blocks], None]


def build_review_tab(project: Project, segmenter: Segmenter, token: gr.State, weights_dir: str | None = None,
                     tab: gr.Tab | None = None) -> ReviewTab:
    """Lay out and wire the Review screen (call inside ``tab``; opening it refreshes the queue)."""
    cancel_events: dict[str, threading.Event] = {}
    with gr.Row():
        with gr.Column(scale=3):
            order = gr.Radio(list(ORDERS), value="score", label="Queue order",
                             info="score: highest first · uncertainty: the model least sure (score near 0.5) first")
            table = gr.Dataframe(headers=QUEUE_COLUMNS, interactive=False, max_height=360, elem_id="ds-rv-queue",
                                 label="Proposals on every image (select a row)")
            view = gr.Image(label="Its image: proposals outlined, saved annotations filled, the selected one boxed",
                            interactive=False, height=420)
        with gr.Column(scale=2):
            gr.HTML(LEGEND, js_on_load=KEYS_JS, elem_id="ds-rv-keys")
            where = gr.Markdown(elem_id="ds-rv-where")
            msg = gr.Markdown(elem_id="ds-rv-msg")
            with gr.Row():
                accept_btn = gr.Button("Accept (Y)", variant="primary", elem_id="ds-rv-accept")
                reject_btn = gr.Button("Reject (X)", variant="stop", elem_id="ds-rv-reject")
            with gr.Row():
                prev_btn = gr.Button("Previous (K)", elem_id="ds-rv-prev")
                next_btn = gr.Button("Next (J)", elem_id="ds-rv-next")
                undo_btn = gr.Button("Undo (Ctrl+Z)", elem_id="ds-rv-undo")
            with gr.Row():
                cls = gr.Dropdown(label="Class (keys 1-9)", choices=class_choices(project), value=None,
                                  elem_id="ds-rv-class")
                cls_btn = gr.Button("Set class", elem_id="ds-rv-set-class")
            # the actions first, then the close-up: at 1280x720 every action is in view
            zoom = gr.Image(label="Selected proposal, close up", interactive=False, height=240)
            sel = gr.Number(label="Selected proposal id", precision=0, value=None, interactive=False,
                            elem_id="ds-rv-sel")
            digit_btns = [gr.Button(str(d), visible="hidden", elem_id=f"ds-rv-class-{d}") for d in range(1, 10)]
            refine_btn = gr.Button("Refine with clicks in Label", elem_id="ds-rv-refine")
            with gr.Row():
                score = gr.Slider(0, 1, value=0.5, step=0.01, label="Accept all at or above score")
                scope = gr.Radio(["this image", "all images"], value="this image", label="Scope",
                                 info="this image: the selected proposal's")
            above_btn = gr.Button("Accept all above score")
    gr.Markdown("### Auto-label a batch")
    with gr.Row():
        proposer = gr.Dropdown(label="Proposer", choices=proposer_choices(project, weights_dir), value="anomaly")
        al_select = gr.Radio([("not yet done (unlabeled)", "unlabeled"), ("done ones too", "all")],
                             value="unlabeled", label="Images",
                             info="good images never get proposals; none covers an accepted label")
        al_min = gr.Slider(0, 1, value=0.5, step=0.01, label="Minimum score")
        al_class = gr.Dropdown(label="Class for anomaly proposals (empty: nearest by appearance)",
                               choices=class_choices(project), value=None)
    with gr.Row():
        al_start = gr.Button("Start auto-label", variant="primary")
        al_cancel = gr.Button("Cancel")
    al_msg = gr.Markdown("No auto-label running.", min_height=80, elem_id="ds-al-msg")  # room for its progress bar
    undo = gr.State([])
    shown = gr.State(None)  # the queue rows last sent to this page (not sent again when unchanged)

    outputs = [msg, table, sel, view, zoom, where, undo, shown]

    def send(fn: Callable[..., ReviewView]) -> Callable[..., tuple]:
        def handler(last, *args):
            try:
                v = fn(*args)
            except StudioError as err:
                raise user_error(err) from err
            rows = v.rows if v.rows != last else gr.skip()  # an unchanged queue keeps its scroll
            return v.message, rows, v.selected, v.image, v.zoom, v.where, v.undo, v.rows
        return handler

    state = [order, sel, undo]
    keyed = [(accept_btn, lambda o, a, u: decide(project, o, a, "accepted", u)),
             (reject_btn, lambda o, a, u: decide(project, o, a, "rejected", u)),
             (next_btn, lambda o, a, u: step(project, o, a, 1, u)), (prev_btn, lambda o, a, u: step(project, o, a, -1, u)),
             (undo_btn, lambda o, a, u: undo_last(project, o, a, u)),
             *[(b, lambda o, a, u, d=d: set_class_key(project, o, a, d, u)) for d, b in enumerate(digit_btns, 1)]]
    for btn, fn in keyed:  # keys press these: no progress veil over the pictures at every key
        btn.click(send(fn), [shown, *state], outputs, show_progress="hidden")
    cls_btn.click(send(lambda o, a, u, c: set_class(project, o, a, c, u)), [shown, *state, cls], outputs)
    above_btn.click(send(lambda o, a, u, s, sc: accept_above(project, o, a, s, sc, u)),
                    [shown, *state, score, scope], outputs)
    do_refresh = send(lambda o, a, u: refresh(project, o, a, u))
    order.change(do_refresh, [shown, *state], outputs)

    def pick_row(last, o, u, evt: gr.SelectData):
        row = evt.row_value or []
        if not row or not str(row[0]).strip().isdigit():
            return (gr.skip(),) * len(outputs)
        return send(lambda: select(project, o, int(row[0]), u))(last)

    table.select(pick_row, [shown, order, undo], outputs, show_progress="hidden")

    def autolabel(t: str, name: str, which: str, min_score: float, class_id, progress=gr.Progress()):
        ev = threading.Event()
        cancel_events[t] = ev
        cid = None if class_id is None else int(class_id)
        try:
            prop = create_proposer(name, project=project, weights_dir=weights_dir, class_id=cid)
            progress((0, 1), desc="starting")
            rep = run_autolabel(project, prop, segmenter, select=which, min_score=float(min_score), class_id=cid,
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

    al_start.click(autolabel, [token, proposer, al_select, al_min, al_class], [al_msg],
                   concurrency_id="batch").then(do_refresh, [shown, *state], outputs)
    al_cancel.click(cancel, [token], [al_msg], queue=False)
    if tab is not None:
        tab.select(do_refresh, [shown, *state], outputs, show_progress="hidden")
    return ReviewTab(selected=sel, refine=refine_btn, proposer=proposer, class_boxes=[cls, al_class],
                     wire_load=lambda demo: demo.load(do_refresh, [shown, *state], outputs))
