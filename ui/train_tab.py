"""The Train screen: settings, start / cancel / resume, live progress, and the run registry.

Handlers are plain functions over ``train.jobs`` and ``train.runs`` (tested without a
browser); :func:`build_train_tab` lays them out and wires them. Progress is polled by a
``gr.Timer`` every :data:`POLL_S` seconds; each poll also calls ``jobs.refresh`` so a
finished worker's successor starts and a vanished one is marked interrupted. A poll only
sends what changed (plots and the table are skipped when no epoch or status moved), so
an idle tab costs a small database read every two seconds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import gradio as gr
from matplotlib.figure import Figure

from data.errors import InputError, StudioError
from data.export import not_done_counts, not_done_message
from data.store import Project
from train import advice, jobs, runs
from train.jobs import RunRecord
from train.models import PRESETS, TrainSettings, base_model_names, validate_settings
from train.runs import EpochMetrics
from ui.errors import user_error

POLL_S = 2.0
LOG_LINES = 30
DEVICES = ["auto", "cpu", "cuda", "mps"]
RUN_COLUMNS = ["id", "status", "task", "model", "epochs", "imgsz", "preset", "dataset", "images",
               "box mAP50", "box mAP50-95", "mask mAP50", "mask mAP50-95", "time (s)", "note"]
DEFAULTS = TrainSettings()  # defaults that work on a CPU laptop (train.models)
_LOSS_STYLE = {"train": "-", "val": "--"}
_METRICS = (("mAP50", "metrics/mAP50"), ("mAP50-95", "metrics/mAP50-95"),
            ("precision", "metrics/precision"), ("recall", "metrics/recall"))


# ------------------------------------------------------------------ dataset
@dataclass(frozen=True)
class DatasetSummary:
    done: int
    good: int
    accepted: int  # accepted annotations on done images (what a snapshot export contains)

    @property
    def usable(self) -> bool:
        return self.done > 0 and self.accepted > 0


def dataset_summary(project: Project) -> DatasetSummary:
    counts = project.annotation_counts()
    done = [r.id for r in project.images("done")]
    accepted = sum(counts.get(i, {}).get("accepted", 0) for i in done)
    return DatasetSummary(len(done), len(project.images("good")), accepted)


def dataset_line(project: Project) -> str:
    s = dataset_summary(project)
    line = (f"Training uses **{s.done} done** images with **{s.accepted} accepted annotations** and "
            f"**{s.good} good** (defect-free) images as background.")
    left = not_done_message(*not_done_counts(project), "**Mark labelled images done** below marks those whose "
                            "proposals are all reviewed.")
    if left:
        line += f" ⚠️ {left}"
    if not s.usable:
        line += (" **Nothing to train on yet**: accept annotations in Label or Review and mark images done "
                 "(or import labelled data in Project).")
    return line


def check_dataset(project: Project) -> None:
    s = dataset_summary(project)
    if not s.usable:
        raise InputError("no training data: no image is marked done with accepted annotations. Label images and "
                         "mark them done (Label), accept proposals (Review), or import labelled data (Project).")


# ------------------------------------------------------------------ actions
def settings_from_form(task: str, model: str, epochs: float, imgsz: float, batch: float, device: str,
                       patience: float, seed: float, preset: str, weights_dir: str | None = None,
                       time_min: float | None = None) -> TrainSettings:
    def whole(name: str, v: Any) -> int:
        if v is None or float(v) != int(float(v)):
            raise InputError(f"{name} must be a whole number, got {v!r}.")
        return int(float(v))

    s = TrainSettings(task=task, model=model, epochs=whole("epochs", epochs), imgsz=whole("image size", imgsz),
                      batch=whole("batch", batch), device=device or "auto", patience=whole("patience", patience),
                      seed=whole("seed", seed), preset=preset, weights_dir=weights_dir,
                      time_hours=(float(time_min) / 60 or None) if time_min is not None else DEFAULTS.time_hours)
    return validate_settings(s)


def advice_md(project: Project, settings: TrainSettings) -> str:
    """What would keep these settings from learning (empty when nothing)."""
    found = advice.check(project, settings)
    if not found:
        return ""
    lines = [f"- ⚠️ {a.problem}" for a in found]
    if any(a.change for a in found):
        lines.append("**Use recommended settings** sets them.")
    return "\n".join(lines)


def mark_done(project: Project) -> str:
    marked, waiting = project.mark_labeled_done()
    more = f"; {waiting} still have proposals to review (Review screen)" if waiting else ""
    return f"Marked {marked} labelled images done{more}."


def start(project: Project, settings: TrainSettings) -> tuple[str, str]:
    """Queue a run; returns its id and a message saying whether it started or waits."""
    check_dataset(project)
    run_id = jobs.submit(project, settings)
    rec = jobs.get(project, run_id)
    if rec.status == "queued":
        return run_id, f"Run `{run_id}` queued: it starts when the running job ends (one job at a time)."
    return run_id, f"Run `{run_id}` started."


def export_onnx(project: Project, run_id: str) -> str:
    """ONNX export copied into the project's exports folder (the only folder the server serves)."""
    onnx = runs.export_onnx(project, run_id)
    out = project.path("exports", f"run-{run_id}.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx, out)
    return str(out)


def delete(project: Project, run_id: str | None, confirm: str) -> str:
    if not run_id:
        raise InputError("pick the run to delete.")
    if (confirm or "").strip() != run_id:
        raise InputError(f"type the run id {run_id} in the confirmation box to delete it.")
    runs.delete(project, run_id)
    return f"Deleted run `{run_id}` (its weights, metrics and folder)."


# ------------------------------------------------------------------ views
def _duration(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def status_md(rec: RunRecord | None, queue_ahead: str | None = None) -> str:
    if rec is None:
        return "No run selected. Choose settings and press **Start training**."
    head = f"**Run `{rec.id}`** ({rec.model}, {rec.task}): "
    if rec.status == "queued":
        wait = f" behind `{queue_ahead}`" if queue_ahead else ""
        return head + f"queued{wait}; it starts when the running job ends."
    if rec.status == "running":
        epochs = rec.epochs or rec.settings.epochs
        phase = f" ({rec.phase})" if rec.phase and rec.phase != "training" else ""
        batch = f", batch {rec.batch_i}/{rec.n_batches}" if rec.n_batches else ""
        eta = f", ETA {_duration(rec.eta_s)}" if rec.eta_s is not None else ""
        cancel = " (cancelling...)" if rec.cancel_requested else ""
        return head + f"running{phase}: epoch {rec.epoch}/{epochs}{batch}{eta}{cancel}"
    took = f" in {_duration(rec.wall_s)}" if rec.wall_s else ""
    if rec.status == "succeeded":
        m = runs.short_metrics(rec.metrics)
        labels = {"box_map50": "box mAP50", "mask_map50": "mask mAP50", "mask_map50_95": "mask mAP50-95"}
        shown = ", ".join(f"{label} {m[k]:.3f}" for k, label in labels.items() if k in m)
        flop = f" ⚠️ It {advice.NOT_LEARNED_HINT}." if advice.learned(m) is False else ""
        return head + f"succeeded{took}, {rec.epoch} epochs. {shown}{flop}"
    resume = " You can **resume** it from its last checkpoint." if rec.can_resume else ""
    return head + f"{rec.status}{took}: {rec.reason or 'no reason recorded'}.{resume}"


def notice_md(rec: RunRecord | None) -> str:
    return f"⚠️ {rec.notice}" if rec is not None and rec.notice else ""


def loss_figure(history: list[EpochMetrics]) -> Figure | None:
    """Train (solid) and val (dashed) losses per epoch."""
    if not history:
        return None
    fig = Figure(figsize=(6, 3.2), dpi=90, layout="constrained")
    ax = fig.add_subplot()
    keys = sorted({k for e in history for k in e.metrics if k.startswith(("train/", "val/")) and "loss" in k})
    x = [e.epoch for e in history]
    names = sorted({k.split("/", 1)[1] for k in keys})
    for key in keys:
        split, name = key.split("/", 1)
        color = f"C{names.index(name) % 10}"  # train and val of one loss share a colour
        ax.plot(x, [e.metrics.get(key, float("nan")) for e in history], _LOSS_STYLE[split], marker=".",
                color=color, label=f"{split} {name.replace('_loss', '')}")
    ax.set(xlabel="epoch", ylabel="loss", title="Losses (train solid, val dashed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    return fig


def metric_figure(history: list[EpochMetrics]) -> Figure | None:
    """Box and mask mAP50, mAP50-95, precision and recall per epoch, where the run measured them."""
    present = {k for e in history for k in e.metrics}
    panels = [(tag, title) for tag, title in (("B", "Box"), ("M", "Mask"))
              if any(f"{prefix}({tag})" in present for _, prefix in _METRICS)]
    if not panels:
        return None
    fig = Figure(figsize=(6, 3.2), dpi=90, layout="constrained")
    x = [e.epoch for e in history]
    for i, (tag, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for label, prefix in _METRICS:
            key = f"{prefix}({tag})"
            if key in present:
                ax.plot(x, [e.metrics.get(key, float("nan")) for e in history], marker=".", label=label)
        ax.set(xlabel="epoch", title=f"{title} metrics (val)", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.3f}"


def runs_table(project: Project) -> list[list[Any]]:
    rows = []
    for r in runs.compare(project):
        images = r["images"] or {}
        rows.append([r["id"], r["status"], r["task"], r["model"], r["epochs"], r["imgsz"], r["preset"], r["dataset"],
                     " / ".join(f"{k} {v}" for k, v in images.items()), _fmt(r["box_map50"]),
                     _fmt(r["box_map50_95"]), _fmt(r["mask_map50"]), _fmt(r["mask_map50_95"]), r["wall_s"],
                     r["reason"] or (advice.NOT_LEARNED_HINT if r["learned"] is False else "")
                     or ("from scratch" if r["notice"] else "")])
    return rows


def run_choices(project: Project) -> list[tuple[str, str]]:
    return [(f"{r.id} · {r.status} · {r.model}", r.id) for r in jobs.list_runs(project)]


@dataclass(frozen=True)
class PollView:
    """What one poll shows; ``key`` says what changed since the last one."""

    status: str
    notice: str
    history: list[EpochMetrics]
    log: str
    table_key: tuple
    plot_key: tuple
    can_resume: bool
    can_cancel: bool


def poll_view(project: Project, run_id: str | None) -> PollView:
    jobs.refresh(project)
    all_runs = jobs.list_runs(project)
    table_key = tuple((r.id, r.status, r.epoch) for r in all_runs)
    rec = next((r for r in all_runs if r.id == run_id), None)
    if rec is None:
        return PollView(status_md(None), "", [], "", table_key, (None,), False, False)
    ahead = next((r.id for r in all_runs if r.status == "running"), None)
    history = runs.epochs(project, rec.id)
    return PollView(status_md(rec, ahead), notice_md(rec), history, runs.log_tail(project, rec.id, LOG_LINES),
                    table_key, (rec.id, len(history), history[-1].at if history else None), rec.can_resume,
                    rec.status in ("queued", "running"))


# ------------------------------------------------------------------ layout
@dataclass
class TrainTab:
    run: gr.Dropdown
    timer: gr.Timer




def build_train_tab(project: Project, weights_dir: str | None = None, tab: gr.Tab | None = None) -> TrainTab:
    """Lay out and wire the Train screen (call inside ``tab``; opening it refreshes the dataset line)."""
    with gr.Row():
        task = gr.Radio(["segment", "detect"], value=DEFAULTS.task, label="Task")
        model = gr.Dropdown(base_model_names(DEFAULTS.task), value=DEFAULTS.model, label="Base model",
                            info="pretrained weights from the weights folder, else trained from scratch (notice)")
        preset = gr.Dropdown(list(PRESETS), value=DEFAULTS.preset, label="Augmentation preset",
                             info="defects: flips, small rotations, low scale/colour jitter")
        device = gr.Dropdown(DEVICES, value=DEFAULTS.device, label="Device")
    with gr.Row():
        epochs = gr.Number(DEFAULTS.epochs, precision=0, minimum=1, label="Epochs")
        imgsz = gr.Number(DEFAULTS.imgsz, precision=0, minimum=32, step=32, label="Image size (multiple of 32)")
        batch = gr.Number(DEFAULTS.batch, precision=0, minimum=1, label="Batch")
        patience = gr.Number(DEFAULTS.patience, precision=0, minimum=0, label="Early-stop patience (0: never)")
        seed = gr.Number(DEFAULTS.seed, precision=0, minimum=0, label="Seed")
        time_min = gr.Number((DEFAULTS.time_hours or 0) * 60, minimum=0, label="Time budget (min, 0: epochs only)",
                             info="stops at the budget or after the epochs, whichever comes first")
    data_md = gr.Markdown(dataset_line(project))
    advice_box = gr.Markdown()
    with gr.Row():
        recommend_btn = gr.Button("Use recommended settings", size="sm")
        done_btn = gr.Button("Mark labelled images done", size="sm")
    with gr.Row():
        start_btn = gr.Button("Start training", variant="primary")
        cancel_btn = gr.Button("Cancel run", variant="secondary", interactive=False)  # live while a run is
        resume_btn = gr.Button("Resume run")
    msg = gr.Markdown()
    choices = run_choices(project)
    run = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Run shown below")
    status = gr.Markdown(elem_id="ds-train-status")
    notice = gr.Markdown()
    with gr.Row():
        loss_plot = gr.Plot(label="Losses", format="png", show_label=False)
        metric_plot = gr.Plot(label="Validation metrics", format="png", show_label=False)
    log = gr.Textbox(label="Log (last lines)", lines=10, max_lines=10, interactive=False, autoscroll=True)
    gr.Markdown("### Runs")
    table = gr.Dataframe(runs_table(project), headers=RUN_COLUMNS, interactive=False, wrap=True,
                         label="Select a row to show that run")
    with gr.Row():
        onnx_btn = gr.Button("Export shown run to ONNX")
        onnx_file = gr.File(label="ONNX download", interactive=False)
    with gr.Row():
        confirm = gr.Textbox(label="To delete the shown run, type its id here", max_lines=1)
        delete_btn = gr.Button("Delete run", variant="stop")
    seen = gr.State(((), ()))  # (table key, plot key) last sent to this page
    timer = gr.Timer(POLL_S)

    def on_task(t: str, current: str):
        names = base_model_names(t)
        if current in names:
            return gr.update(choices=names)
        swapped = current[:-4] if current.endswith("-seg") else f"{current}-seg"
        return gr.update(choices=names, value=swapped if swapped in names else names[0])

    task.change(on_task, [task, model], [model])

    form = [task, model, epochs, imgsz, batch, device, patience, seed, preset, time_min]

    def do_start(t, m, e, s, b, d, p, sd, pr, tm):
        try:
            settings = settings_from_form(t, m, e, s, b, d, p, sd, pr, weights_dir, tm)
            run_id, text = start(project, settings)
        except StudioError as err:
            raise user_error(err) from err
        return text, gr.update(choices=run_choices(project), value=run_id), dataset_line(project)

    start_btn.click(do_start, form, [msg, run, data_md], concurrency_id="train-control")

    def do_advice(*values):
        try:
            return advice_md(project, settings_from_form(*values[:9], weights_dir, values[9]))
        except StudioError as err:
            return f"⚠️ {err}"

    def do_recommend(*values):
        try:
            s = settings_from_form(*values[:9], weights_dir, values[9])
        except StudioError as err:
            raise user_error(err) from err
        r = advice.recommended(s, advice.check(project, s))
        return (r.epochs, r.imgsz, (r.time_hours or 0) * 60, advice_md(project, r))

    for field in (task, model, epochs, imgsz, time_min):
        field.change(do_advice, form, [advice_box], show_progress="hidden")
    recommend_btn.click(do_recommend, form, [epochs, imgsz, time_min, advice_box])
    done_btn.click(lambda: (mark_done(project), dataset_line(project)), None, [msg, data_md])

    def do_cancel(run_id):
        if not run_id:
            raise gr.Error("Pick the run to cancel.")
        try:
            rec = jobs.cancel(project, run_id)
        except StudioError as err:
            raise user_error(err) from err
        return f"Run `{run_id}` is {rec.status}."

    def do_resume(run_id):
        if not run_id:
            raise gr.Error("Pick the run to resume.")
        try:
            rec = jobs.resume(project, run_id)
        except StudioError as err:
            raise user_error(err) from err
        return f"Run `{run_id}` {'resumed' if rec.status == 'running' else 'queued to resume'} from its last checkpoint."

    cancel_btn.click(do_cancel, [run], [msg], concurrency_id="train-control")
    resume_btn.click(do_resume, [run], [msg], concurrency_id="train-control")

    def do_poll(run_id, last):
        try:
            v = poll_view(project, run_id)
        except StudioError as err:
            return (str(err), "", gr.skip(), gr.skip(), "", gr.skip(), gr.skip(), last, gr.skip())
        table_key, plot_key = last if last else ((), ())
        new_table = v.table_key != table_key
        new_plots = v.plot_key != plot_key
        return (v.status, v.notice,
                loss_figure(v.history) if new_plots else gr.skip(),
                metric_figure(v.history) if new_plots else gr.skip(),
                v.log,
                runs_table(project) if new_table else gr.skip(),
                gr.update(choices=run_choices(project)) if new_table else gr.skip(),
                (v.table_key, v.plot_key),
                gr.update(interactive=v.can_cancel))

    poll_outputs = [status, notice, loss_plot, metric_plot, log, table, run, seen, cancel_btn]
    timer.tick(do_poll, [run, seen], poll_outputs, show_progress="hidden", concurrency_id="train-poll",
               concurrency_limit=4)
    run.change(lambda r: do_poll(r, None), [run], poll_outputs, show_progress="hidden")

    def pick_run(evt: gr.SelectData):
        return evt.row_value[0] if evt.row_value else gr.skip()

    table.select(pick_run, None, [run])

    def do_onnx(run_id, progress=gr.Progress()):
        if not run_id:
            raise gr.Error("Pick a succeeded run to export.")
        progress((0, 1), desc="exporting to ONNX")
        try:
            return export_onnx(project, run_id)
        except StudioError as err:
            raise user_error(err) from err

    onnx_btn.click(do_onnx, [run], [onnx_file], concurrency_id="export")

    def do_delete(run_id, text):
        try:
            out = delete(project, run_id, text)
        except StudioError as err:
            raise user_error(err) from err
        ch = run_choices(project)
        return out, "", gr.update(choices=ch, value=ch[0][1] if ch else None), runs_table(project)

    if tab is not None:
        tab.select(lambda *v: (dataset_line(project), do_advice(*v)), form, [data_md, advice_box],
                   show_progress="hidden")
    delete_btn.click(do_delete, [run, confirm], [msg, confirm, run, table], concurrency_id="train-control")
    return TrainTab(run=run, timer=timer)
