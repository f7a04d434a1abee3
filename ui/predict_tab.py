"""The Predict screen: a trained run on an uploaded image, a webcam frame or a project image.

The model runs once per image, at the low floor ``RAW_CONF`` / ``RAW_IOU``; the raw result
(its masks as crops inside their boxes) and the image stay in this page's ``gr.State``, and
the confidence and IoU sliders re-filter that result (``train.predict.refilter``) and redraw
it without running the model again. The sliders' ranges stop at the floor, so a re-run is
never needed from them; :func:`rerender` still falls back to a re-run if a cached result
cannot answer exactly. Predictors are loaded once per run and cached (``train.predict.predictor_for``).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np

from data.errors import InputError, StudioError
from data.store import Project
from train import advice, jobs, runs
from train.predict import RAW_CONF, RAW_IOU, RawPrediction, class_colors, predictor_for, refilter, render
from ui.errors import user_error

DEFAULT_CONF = 0.25
DEFAULT_IOU = 0.7


@dataclass(frozen=True)
class Cached:
    """One page's last prediction: the image, the run, and the raw result at the floor."""

    run_id: str
    image: np.ndarray
    raw: RawPrediction


def run_choices(project: Project) -> list[tuple[str, str]]:
    out = []
    for r in jobs.list_runs(project):
        if r.status == "succeeded":
            flop = " · did not learn (mAP50 < 0.05)" if advice.learned(runs.short_metrics(r.metrics)) is False else ""
            out.append((f"{r.id} · {r.model} · {', '.join(r.class_names)}{flop}", r.id))
    return out


def default_run(project: Project) -> str | None:
    """The run Predict shows first: the newest succeeded one that learned (a run that did not is
    listed, marked, but never picked for the user)."""
    for r in jobs.list_runs(project):
        if r.status == "succeeded" and advice.learned(runs.short_metrics(r.metrics)) is not False:
            return r.id
    return None


def image_choices(project: Project) -> list[tuple[str, int]]:
    return [(f"{r.name} (#{r.id}, {r.status})", r.id) for r in project.images()]


def _as_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        img = img[..., :3]
    return np.ascontiguousarray(img.astype(np.uint8, copy=False))


def _colors(project: Project, run_id: str, raw: RawPrediction) -> dict[str, str]:
    """Each model class in the colour of the project class the run maps it to (renamed ones included)."""
    return class_colors(project, run_id, raw.names)


def info_md(raw: RawPrediction, counts: dict[str, int], rerun: bool) -> str:
    per_class = ", ".join(f"{name}: **{n}**" for name, n in counts.items()) or "no classes"
    how = "model run" if rerun else "cached prediction re-filtered, model not re-run"
    noun = "detection" if len(raw) == 1 else "detections"
    return (f"**{len(raw)} {noun}** at confidence ≥ {raw.conf:.2f}, IoU {raw.iou:.2f} — {per_class}\n\n"
            f"Inference {raw.inference_ms:.1f} ms ({how}).")


def predict(project: Project, run_id: str | None, image: np.ndarray | None, conf: float, iou: float,
            device: str = "auto") -> tuple[np.ndarray, str, Cached]:
    """Run the model once (at the floor) and draw the result at the sliders' thresholds."""
    if not run_id:
        raise InputError("pick a trained run first (runs that succeeded in the Train tab).")
    if image is None:
        raise InputError("upload an image, take a webcam frame, or pick a project image.")
    rgb = _as_rgb(image)
    raw = predictor_for(project, run_id, device).predict_raw(rgb, RAW_CONF, RAW_IOU)
    cached = Cached(run_id, rgb, raw)
    shown = refilter(raw, max(float(conf), raw.conf), min(float(iou), raw.iou))
    r = render(rgb, shown, _colors(project, run_id, raw))
    return r.image, info_md(shown, r.counts, rerun=True), cached


def rerender(project: Project, cached: Cached | None, conf: float, iou: float,
             device: str = "auto") -> tuple[np.ndarray, str, Cached] | None:
    """New thresholds over the cached prediction; re-runs the model only when the cache cannot answer."""
    if cached is None:
        return None
    conf, iou = float(conf), float(iou)
    if conf >= cached.raw.conf and iou <= cached.raw.iou:
        shown, rerun = refilter(cached.raw, conf, iou), False
    else:
        shown = predictor_for(project, cached.run_id, device).predict(cached.image, conf, iou, cached=cached.raw)
        cached, rerun = Cached(cached.run_id, cached.image, shown), True
    r = render(cached.image, shown, _colors(project, cached.run_id, cached.raw))
    return r.image, info_md(shown, r.counts, rerun), cached


# ------------------------------------------------------------------ layout
@dataclass
class PredictTab:
    run: gr.Dropdown
    use_as_proposer: gr.Button




def build_predict_tab(project: Project, device: str = "auto", tab: gr.Tab | None = None) -> PredictTab:
    """Lay out and wire the Predict screen (call inside ``tab``; opening it refreshes the run list)."""
    runs = run_choices(project)
    with gr.Row():
        run = gr.Dropdown(runs, value=default_run(project), label="Trained run (succeeded runs)", scale=3)
        refresh_btn = gr.Button("Refresh runs", scale=1)
        use_btn = gr.Button("Use this run as proposer (Review auto-label)", scale=2)
    with gr.Row():
        with gr.Column(scale=2):
            src = gr.Image(sources=["upload", "webcam"], type="numpy", label="Image: upload or webcam frame",
                           height=360)
            pick = gr.Dropdown(image_choices(project), value=None, label="... or a project image")
            conf = gr.Slider(RAW_CONF, 1.0, value=DEFAULT_CONF, step=0.01, label="Confidence threshold")
            iou = gr.Slider(0.1, RAW_IOU, value=DEFAULT_IOU, step=0.01, label="NMS IoU threshold")
            go = gr.Button("Predict", variant="primary")
        with gr.Column(scale=3):
            out = gr.Image(label="Prediction", interactive=False, height=560, format="png")
            info = gr.Markdown(elem_id="ds-predict-info")
    state = gr.State(None)

    def do_predict(run_id, image, c, i):
        if image is None:
            return None, "", None
        try:
            return predict(project, run_id, image, c, i, device)
        except StudioError as err:
            raise user_error(err) from err

    def do_rerender(cached, c, i):
        try:
            res = rerender(project, cached, c, i, device)
        except StudioError as err:
            raise user_error(err) from err
        return res if res is not None else (gr.skip(), gr.skip(), gr.skip())

    def load_pick(image_id):
        if image_id is None:
            return gr.skip()
        try:
            return project.load_image(int(image_id))
        except StudioError as err:
            raise user_error(err) from err

    def refresh(current):
        ch = run_choices(project)
        ids = [v for _, v in ch]
        value = current if current in ids else default_run(project)  # newest run that learned, by default
        return gr.update(choices=ch, value=value), gr.update(choices=image_choices(project))

    predict_inputs = [run, src, conf, iou]
    go.click(do_predict, predict_inputs, [out, info, state], concurrency_id="predict")
    src.change(do_predict, predict_inputs, [out, info, state], concurrency_id="predict")
    run.change(do_predict, predict_inputs, [out, info, state], concurrency_id="predict")
    pick.change(load_pick, [pick], [src])
    for slider in (conf, iou):
        slider.change(do_rerender, [state, conf, iou], [out, info, state], show_progress="hidden",
                     trigger_mode="always_last")
    refresh_btn.click(refresh, [run], [run, pick])
    if tab is not None:
        tab.select(refresh, [run], [run, pick], show_progress="hidden")
    return PredictTab(run=run, use_as_proposer=use_btn)
