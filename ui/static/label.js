// Label screen client. Runs as gr.HTML js_on_load: element, trigger, props, server, upload, watch.
// Every call goes through server.api(token, method, ...args) (a gr.HTML server function, outside
// Gradio's queue); the page keeps only view state, the server keeps the prompts and the masks.
const $ = (sel) => element.querySelector(sel);
const root = $(".ds-label");
const canvas = $(".ds-canvas");
const ctx = canvas.getContext("2d");
const st = {
  token: null, rev: null, classes: [], images: [], cls: null, image: null, img: null,
  anns: [], pending: null, sel: null, tool: "prompt", neg: false, radius: 8,
  scale: 1, ox: 0, oy: 0, drag: null, stroke: null, poly: null, hover: null, space: false,
  chain: Promise.resolve(), bitmaps: new Map(), seq: 0,
};
window.__ds = window.__ds || { metrics: [] };
window.__ds.state = st;
// Hooks for the browser tests and `bench ui`: open an image by id, map image pixels to the page.
window.__ds.open = (id) => openImage(id);
window.__ds.toPage = (x, y) => { const r = canvas.getBoundingClientRect(); return [r.left + st.ox + x * st.scale, r.top + st.oy + y * st.scale]; };

// ------------------------------------------------------------------ server calls
async function api(method, ...args) {
  const res = await server.api(st.token, method, ...args);
  if (res && res.error) throw new Error(res.error);
  if (res && res.conflict) {  // another page or a job changed it first: show it as it is now, and why
    await applyChange(res); renderAnns(); draw();
    throw new Error(res.conflict);
  }
  return res;
}
// Calls that change the pending mask run one after another, so responses never cross.
function queued(fn) {
  const p = st.chain.then(fn, fn);
  st.chain = p.catch(() => {});
  return p;
}
function status(msg, kind) {
  const el = $(".ds-status");
  el.textContent = msg;
  el.className = "ds-status" + (kind ? " " + kind : "");
}
function fail(err) { status(String(err && err.message || err), "err"); }

// ------------------------------------------------------------------ masks
async function decodeMask(m) {
  if (!m || !m.png) return null;
  const bin = atob(m.png);
  const u8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
  return await createImageBitmap(new Blob([u8], { type: "image/png" }));
}
function tint(bitmap, color) {
  const c = document.createElement("canvas");
  c.width = bitmap.width; c.height = bitmap.height;
  const g = c.getContext("2d");
  g.drawImage(bitmap, 0, 0);
  g.globalCompositeOperation = "source-in";
  g.fillStyle = color; g.fillRect(0, 0, c.width, c.height);
  return c;
}
async function prepare(list) {
  await Promise.all(list.map(async (o) => { if (o.mask && !o.bitmap) o.bitmap = await decodeMask(o.mask); }));
}
const colorOf = (cid) => (st.classes.find((c) => c.id === cid) || { color: "#ff00ff" }).color;
const nameOf = (cid) => (st.classes.find((c) => c.id === cid) || { name: "?" }).name;

// ------------------------------------------------------------------ view
function resize() {
  const r = canvas.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(r.width * dpr));
  canvas.height = Math.max(1, Math.round(r.height * dpr));
  draw();
}
function fit() {
  if (!st.image) return;
  const r = canvas.getBoundingClientRect();
  const s = Math.min(r.width / st.image.width, r.height / st.image.height) * 0.98;
  st.scale = s; st.ox = (r.width - st.image.width * s) / 2; st.oy = (r.height - st.image.height * s) / 2;
  $(".ds-zoom").textContent = `${Math.round(st.scale * 100)}%`;  // the readout follows every fit
  draw();
}
function toImage(ev) {
  const r = canvas.getBoundingClientRect();
  return [(ev.clientX - r.left - st.ox) / st.scale, (ev.clientY - r.top - st.oy) / st.scale];
}
function inside(p) { return st.image && p[0] >= 0 && p[1] >= 0 && p[0] < st.image.width && p[1] < st.image.height; }

function drawMask(o, color, alpha, lineWidth, dash) {
  const m = o.mask;
  if (!m) return;
  if (o.bitmap) {
    if (!o.tinted || o.tintColor !== color) { o.tinted = tint(o.bitmap, color); o.tintColor = color; }
    ctx.globalAlpha = alpha;
    ctx.drawImage(o.tinted, m.x, m.y, m.w, m.h);
    ctx.globalAlpha = 1;
  }
  ctx.setLineDash(dash ? [6 / st.scale, 4 / st.scale] : []);
  ctx.lineWidth = lineWidth / st.scale;
  ctx.strokeStyle = color;
  for (const poly of m.outline) {
    ctx.beginPath();
    for (let i = 0; i < poly.length; i += 2) ctx[i ? "lineTo" : "moveTo"](poly[i] + 0.5, poly[i + 1] + 0.5);
    ctx.closePath(); ctx.stroke();
  }
  ctx.setLineDash([]);
}
function tag(a, sel) {
  // a proposal's class and score above its box, in screen-sized type
  const text = `${nameOf(a.class_id)}${a.score != null ? " " + a.score.toFixed(2) : ""}`;
  const fs = 12 / st.scale, x = a.mask.x, y = Math.max(fs, a.mask.y - 3 / st.scale);
  ctx.font = `${sel ? "bold " : ""}${fs}px sans-serif`;
  const w = ctx.measureText(text).width + 6 / st.scale;
  ctx.fillStyle = "rgba(0,0,0,0.6)"; ctx.fillRect(x, y - fs, w, fs + 3 / st.scale);
  ctx.fillStyle = colorOf(a.class_id); ctx.fillText(text, x + 3 / st.scale, y);
}
function draw() {
  const dpr = window.devicePixelRatio || 1;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!st.img) return;
  ctx.setTransform(dpr * st.scale, 0, 0, dpr * st.scale, dpr * st.ox, dpr * st.oy);
  ctx.imageSmoothingEnabled = st.scale < 2;
  ctx.drawImage(st.img, 0, 0);
  for (const a of st.anns) {
    if (st.pending && st.pending.editing === a.id) continue;
    const sel = st.sel === a.id;
    drawMask(a, colorOf(a.class_id), a.status === "proposed" ? (sel ? 0.3 : 0.18) : (sel ? 0.5 : 0.32), sel ? 3 : 1.5, a.status === "proposed");
    if (a.status === "proposed" && a.mask) tag(a, sel);
  }
  const p = st.pending;
  if (p && p.candidates.length) {
    const c = p.candidates[p.chosen];
    if (c) { drawMask(c, colorOf(st.cls), 0.5, 1.5); drawMask({ mask: c.mask }, "#ffffff", 0, 2.5); drawMask({ mask: c.mask }, colorOf(st.cls), 0, 1.2); }
  }
  if (p && p.box) {
    ctx.lineWidth = 2 / st.scale; ctx.strokeStyle = "#facc15"; ctx.setLineDash([5 / st.scale, 3 / st.scale]);
    ctx.strokeRect(p.box[0], p.box[1], p.box[2] - p.box[0], p.box[3] - p.box[1]); ctx.setLineDash([]);
  }
  if (p) for (const [x, y, l] of p.points) dot(x, y, l ? "#22c55e" : "#ef4444", l ? "+" : "-");
  if (st.drag && st.drag.kind === "box" && st.drag.moved) {
    const [x0, y0] = st.drag.start, [x1, y1] = st.drag.now;
    ctx.lineWidth = 2 / st.scale; ctx.strokeStyle = "#facc15"; ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
  }
  if (st.stroke) {
    ctx.lineCap = "round"; ctx.lineJoin = "round"; ctx.lineWidth = 2 * st.radius;
    ctx.strokeStyle = st.stroke.mode === "brush" ? "rgba(34,197,94,0.5)" : "rgba(239,68,68,0.5)";
    ctx.beginPath(); st.stroke.pts.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"](x, y));
    if (st.stroke.pts.length === 1) ctx.lineTo(st.stroke.pts[0][0] + 0.01, st.stroke.pts[0][1]);
    ctx.stroke();
  }
  if (st.poly) drawPoly();
  if ((st.tool === "brush" || st.tool === "eraser") && st.hover) {
    ctx.lineWidth = 1.5 / st.scale; ctx.strokeStyle = "#fff";
    ctx.beginPath(); ctx.arc(st.hover[0], st.hover[1], st.radius, 0, 2 * Math.PI); ctx.stroke();
  }
}
function dot(x, y, color, sign) {
  const r = 6 / st.scale;
  ctx.beginPath(); ctx.arc(x, y, r, 0, 2 * Math.PI); ctx.fillStyle = color; ctx.fill();
  ctx.lineWidth = 1.5 / st.scale; ctx.strokeStyle = "#fff"; ctx.stroke();
  ctx.fillStyle = "#fff"; ctx.font = `${10 / st.scale}px sans-serif`; ctx.textAlign = "center"; ctx.textBaseline = "middle";
  ctx.fillText(sign, x, y + 0.5 / st.scale);
}
function drawPoly() {
  const pts = st.poly.pts;
  if (!pts.length) return;
  ctx.lineWidth = 2 / st.scale; ctx.strokeStyle = "#f472b6"; ctx.fillStyle = "rgba(244,114,182,0.2)";
  ctx.beginPath(); pts.forEach(([x, y], i) => ctx[i ? "lineTo" : "moveTo"](x, y));
  if (st.poly.closed) { ctx.closePath(); ctx.fill(); } else if (st.hover) ctx.lineTo(st.hover[0], st.hover[1]);
  ctx.stroke();
  pts.forEach(([x, y], i) => {
    ctx.beginPath(); ctx.rect(x - 4 / st.scale, y - 4 / st.scale, 8 / st.scale, 8 / st.scale);
    ctx.fillStyle = i === 0 ? "#facc15" : "#fff"; ctx.fill(); ctx.strokeStyle = "#be185d"; ctx.stroke();
  });
}

// ------------------------------------------------------------------ panels
function renderClasses() {
  const box = $(".ds-classes");
  box.innerHTML = "";
  st.classes.forEach((c, i) => {
    const chip = document.createElement("span");
    chip.className = "ds-chip" + (c.id === st.cls ? " on" : "");
    chip.dataset.cls = c.id;
    chip.innerHTML = `<i></i><span></span>${i < 9 ? `<kbd>${i + 1}</kbd>` : ""}`;
    chip.querySelector("i").style.background = c.color;
    chip.querySelector("span").textContent = c.name;
    chip.onclick = () => setClass(c.id);
    box.appendChild(chip);
  });
  if (!st.classes.length) box.textContent = "No classes yet: add one in the Project tab.";
}
function setClass(cid) {
  st.cls = cid; renderClasses(); renderPending(); draw();
}
function renderImage() {
  const im = st.image;
  $(".ds-imgname").textContent = im ? `${im.index + 1} / ${im.total}  ${im.name}` : "no image";
  $(".ds-imgname").title = im ? im.name : "";  // the full name where the toolbar cuts it
  const s = $(".ds-imgstatus");
  s.textContent = im ? im.status : ""; s.className = "ds-imgstatus " + (im ? im.status : "");
  $(".ds-prev").disabled = !im || im.prev == null;
  $(".ds-next").disabled = !im || im.next == null;
  root.dataset.imageId = im ? im.id : "";
}
function renderPending() {
  const p = st.pending, el = $(".ds-pending"), cands = $(".ds-cands");
  cands.innerHTML = "";
  const n = p ? p.candidates.length : 0;
  root.dataset.candidates = n;
  el.className = "ds-pending" + (n ? " has" : "") + (p && p.editing ? " editing" : "");
  if (!p || (!n && !p.points.length && !p.box)) {
    el.textContent = st.poly ? "Polygon: click vertices; Enter or the first vertex closes it." : "Nothing pending. Click a defect (right click: negative point, drag: box).";
  } else if (!n) {
    el.textContent = "No mask found for these prompts: add a point or draw a box.";
  } else {
    const c = p.candidates[p.chosen];
    const what = p.editing ? `Editing annotation #${p.editing}` : (p.manual ? "Hand-drawn mask" : `Candidate ${p.chosen + 1}/${n}`);
    const score = c.score != null ? ` score ${c.score.toFixed(2)}` : "";
    el.textContent = `${what}${score}, ${c.mask.area} px. Enter saves it as "${nameOf(st.cls)}".`;
  }
  if (n > 1) p.candidates.forEach((c, i) => {
    const d = document.createElement("div");
    d.className = "ds-cand" + (i === p.chosen ? " on" : "");
    d.dataset.index = i;
    const cv = document.createElement("canvas"); cv.width = 72; cv.height = 72;
    d.appendChild(cv);
    const lab = document.createElement("span");
    lab.textContent = `${i + 1}: ${c.score != null ? c.score.toFixed(2) : "-"}`;
    d.appendChild(lab);
    d.onclick = () => choose(i);
    cands.appendChild(d);
    thumb(cv, c, p.candidates);
  });
  $(".ds-accept").disabled = !n;
  $(".ds-undo").disabled = !(p && p.can_undo);
}
function thumb(cv, c, all) {
  // The crop around all candidates, so the thumbnails compare at the same scale.
  let x0 = 1e9, y0 = 1e9, x1 = -1e9, y1 = -1e9;
  for (const o of all) { const m = o.mask; x0 = Math.min(x0, m.x); y0 = Math.min(y0, m.y); x1 = Math.max(x1, m.x + m.w); y1 = Math.max(y1, m.y + m.h); }
  const side = Math.max(x1 - x0, y1 - y0) * 1.2 + 8, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const g = cv.getContext("2d"), s = 72 / side, sx = cx - side / 2, sy = cy - side / 2;
  g.drawImage(st.img, sx, sy, side, side, 0, 0, 72, 72);
  if (c.bitmap) {
    if (!c.tinted || c.tintColor !== colorOf(st.cls)) { c.tinted = tint(c.bitmap, colorOf(st.cls)); c.tintColor = colorOf(st.cls); }
    g.globalAlpha = 0.6; g.drawImage(c.tinted, (c.mask.x - sx) * s, (c.mask.y - sy) * s, c.mask.w * s, c.mask.h * s); g.globalAlpha = 1;
  }
}
function renderAnns() {
  const box = $(".ds-anns");
  box.innerHTML = "";
  $(".ds-count").textContent = `(${st.anns.filter((a) => a.status === "accepted").length} saved, ${st.anns.filter((a) => a.status === "proposed").length} proposed)`;
  root.dataset.annotations = st.anns.filter((a) => a.status === "accepted").length;
  if (!st.anns.length) { box.textContent = "None yet."; return; }
  for (const a of st.anns) {
    const row = document.createElement("div");
    row.className = "ds-ann" + (st.sel === a.id ? " sel" : "") + (a.status === "proposed" ? " proposed" : "");
    row.dataset.id = a.id;
    const sw = document.createElement("i"); sw.style.background = colorOf(a.class_id); row.appendChild(sw);
    const sel = document.createElement("select");
    for (const c of st.classes) { const o = document.createElement("option"); o.value = c.id; o.textContent = c.name; o.selected = c.id === a.class_id; sel.appendChild(o); }
    sel.onchange = () => run(() => api("set_class", a.id, Number(sel.value)), (r) => { applyChange(r); status(`#${a.id} is now ${nameOf(Number(sel.value))} (saved)`, "ok"); });
    sel.title = "change class";
    row.appendChild(sel);
    const meta = document.createElement("span"); meta.className = "meta";
    meta.textContent = `#${a.id} ${a.status === "proposed" ? "proposed" : "saved"} · ${a.source}${a.score != null ? " " + a.score.toFixed(2) : ""}`;
    row.appendChild(meta);
    const btn = (label, title, fn) => { const b = document.createElement("button"); b.textContent = label; b.title = title; b.onclick = (e) => { e.stopPropagation(); fn(); }; row.appendChild(b); };
    if (a.status === "proposed") {
      const said = (r, verdict) => status(`#${a.id} ${r.reviewed === verdict ? (verdict === "accepted" ? "accepted (saved)" : "rejected") : "rejected: it covers a saved label"}`, "ok");
      btn("✓", "accept this proposal", () => run(() => api("review", a.id, "accepted"), (r) => { applyChange(r); said(r, "accepted"); }));
      btn("✗", "reject this proposal", () => run(() => api("review", a.id, "rejected"), (r) => { applyChange(r); said(r, "rejected"); }));
    }
    btn("Edit", "refine this mask with clicks, brush or polygon; Enter saves it", () => editAnn(a.id));
    btn("Del", "delete this annotation", () => run(() => api("delete", a.id), (r) => { applyChange(r); status(`#${a.id} deleted`, "ok"); }));
    row.onclick = () => { st.sel = st.sel === a.id ? null : a.id; renderAnns(); draw(); };
    box.appendChild(row);
  }
}
function renderTools() {
  element.querySelectorAll("[data-tool]").forEach((b) => b.classList.toggle("on", b.dataset.tool === st.tool));
  const sign = $(".ds-sign");
  sign.textContent = st.neg ? "- point" : "+ point"; sign.classList.toggle("neg", st.neg);
  sign.classList.toggle("idle", st.tool !== "prompt");  // lit only while clicks are prompts
  canvas.style.cursor = st.tool === "pan" ? "grab" : "crosshair";
  $(".ds-zoom").textContent = `${Math.round(st.scale * 100)}%`;
}

// ------------------------------------------------------------------ actions
function run(call, then) {
  return queued(async () => { try { const r = await call(); await then(r); } catch (e) { fail(e); } });
}
async function setPending(p) {
  await prepare(p.candidates);
  st.pending = p; renderPending(); draw();
}
async function applyChange(r) {
  await prepare(r.annotations);
  st.anns = r.annotations;
  if (r.image_status && st.image) { st.image.status = r.image_status; renderImage(); }
  await setPending(r.pending);
  renderAnns();
}
async function openImage(id) {
  if (id == null) return;
  st.poly = null; st.sel = null; st.stroke = null;
  return run(() => api("open_image", id), async (r) => {
    const img = new Image(); img.src = r.src; await img.decode();
    const first = !st.image || st.image.width !== r.image.width || st.image.height !== r.image.height;
    st.img = img; st.image = r.image;
    if (document.activeElement && element.contains(document.activeElement)) document.activeElement.blur();  // no ring carried over
    await prepare(r.annotations); st.anns = r.annotations;
    if (first) fit();
    renderImage(); renderAnns(); await setPending(r.pending);
    status(`Opened ${r.image.name} (${r.image.width}x${r.image.height}). Click a defect.`);
  });
}
function prompt(kind, coords) {
  const t0 = performance.now();
  const seq = ++st.seq;
  return run(() => api("prompt", kind, coords), async (r) => {
    await setPending(r);
    const browser = performance.now() - t0;
    window.__ds.metrics.push({ seq, kind, browser_ms: browser, server_ms: r.server_ms, predict_ms: r.predict_ms });
    root.dataset.overlaySeq = seq;
    const n = r.candidates.length;
    status(n ? `${n} candidate${n > 1 ? "s" : ""} (predict ${r.predict_ms.toFixed(0)} ms, shown in ${browser.toFixed(0)} ms). Enter saves as "${nameOf(st.cls)}".` : "No mask here: try another point or a box.", n ? "" : "err");
  });
}
function choose(i) { run(() => api("choose", i), (r) => setPending(r)); }
function accept() {
  if (st.cls == null) return fail("Pick a class first (number keys or the chips).");
  const cls = st.cls;
  return run(() => api("accept", cls), async (r) => { await applyChange(r); st.sel = r.saved; renderAnns(); draw(); status(`Saved #${r.saved} as ${nameOf(cls)}.`, "ok"); root.dataset.saved = r.saved; });
}
function clearPrompt() {
  if (st.poly) { st.poly = null; renderPending(); draw(); status("Polygon cancelled."); return; }
  run(() => api("clear"), async (r) => { await setPending(r); status("Prompt cleared."); });
}
function undo() {
  if (st.poly && st.poly.pts.length && !st.poly.closed) { st.poly.pts.pop(); draw(); return; }
  run(() => api("undo"), async (r) => { await applyChange(r); status(`Undone: ${r.undone}.`, "ok"); });
}
function editAnn(id) {
  run(() => api("edit", id), async (r) => { st.sel = id; if (r.class_id != null) st.cls = r.class_id; renderClasses(); await setPending(r); renderAnns(); status(`Editing #${id}: click to refine, or use the brush, eraser or Edit outline; Enter saves.`); });
}
function editOutline() {
  run(() => api("polygon_of"), (r) => { st.poly = { pts: r.points, closed: true, outline: true }; setTool("polygon", true); status("Drag vertices to move them, right click a vertex to delete it, click an edge to add one; Enter saves."); draw(); });
}
function commitPoly() {
  const pts = st.poly && st.poly.pts, save = st.poly && st.poly.outline;  // an edited outline: one Enter saves
  if (!pts || pts.length < 3) return fail("A polygon needs at least 3 points.");
  st.poly = null;
  run(() => api("polygon", pts), async (r) => {
    await setPending(r);
    if (save) { accept(); return; }  // queued after this call (awaiting it here would wait on itself)
    status("Polygon applied as a hand-made mask. Enter saves it.", "ok");
  });
}
function setTool(t, keepPoly) {
  st.tool = t; if (t !== "polygon" && !keepPoly) st.poly = null;
  if (t === "polygon" && !st.poly) st.poly = { pts: [], closed: false };
  renderTools(); renderPending(); draw();
}
function move(dir) {
  if (!st.image) return;
  const id = dir < 0 ? st.image.prev : st.image.next;
  if (id != null) openImage(id);
}
const proposals = () => st.anns.filter((a) => a.status === "proposed");
function selected() { return st.anns.find((a) => a.id === st.sel && a.status === "proposed"); }
function stepProposal(dir) {
  const ps = proposals();
  if (!ps.length) return status("No proposals on this image.");
  const k = ps.findIndex((a) => a.id === st.sel);
  const a = ps[k < 0 ? (dir > 0 ? 0 : ps.length - 1) : (k + dir + ps.length) % ps.length];
  st.sel = a.id; renderAnns(); draw();
  status(`Proposal #${a.id}: ${nameOf(a.class_id)}${a.score != null ? " " + a.score.toFixed(2) : ""} (${a.source}). ` +
         "Y accept, X reject, 1-9 its class, click inside to refine.");
}
function reviewProposal(verdict) {
  const a = selected() || proposals()[0];
  if (!a) return status("No proposal to review: J/K step through them when there are.");
  const ps = proposals(), k = ps.findIndex((p) => p.id === a.id);
  run(() => api("review", a.id, verdict), async (r) => {
    await applyChange(r);
    const left = proposals();
    const what = r.reviewed === verdict ? (verdict === "accepted" ? "accepted (saved)" : "rejected")
      : "rejected: it covers a saved label";
    if (!left.length) {
      st.sel = null; renderAnns(); draw();
      status(`#${a.id} ${what}. All proposals reviewed: press Enter to mark the image done (Ctrl+Z undoes).`, "ok");
      $(".ds-done").focus({ preventScroll: true });
    } else {
      st.sel = left[Math.min(k, left.length - 1)].id; renderAnns(); draw();
      status(`#${a.id} ${what}; ${left.length} proposal${left.length > 1 ? "s" : ""} left (Y accept, X reject, J/K step).`, "ok");
    }
  });
}
function proposalAt(p) {
  // the proposal whose mask holds image point p (outline hit test inside its box)
  for (const a of proposals()) {
    const m = a.mask;
    if (!m || p[0] < m.x || p[1] < m.y || p[0] >= m.x + m.w || p[1] >= m.y + m.h) continue;
    const path = new Path2D();
    for (const poly of m.outline) {
      for (let i = 0; i < poly.length; i += 2) path[i ? "lineTo" : "moveTo"](poly[i] + 0.5, poly[i + 1] + 0.5);
      path.closePath();
    }
    if (ctx.isPointInPath(path, p[0], p[1]) || m.w * m.h < 9) return a;
  }
  return null;
}
function setImageStatus(s) {
  run(() => api("set_image_status", s), (r) => { st.image.status = r.image_status; renderImage(); status(`Image marked ${r.image_status}.`, "ok"); });
}

// ------------------------------------------------------------------ pointer
function nearVertex(p) {
  if (!st.poly) return -1;
  const tol = 8 / st.scale;
  return st.poly.pts.findIndex(([x, y]) => Math.hypot(x - p[0], y - p[1]) < tol);
}
function nearEdge(p) {
  const pts = st.poly.pts, tol = 6 / st.scale;
  for (let i = 0; i < pts.length; i++) {
    const a = pts[i], b = pts[(i + 1) % pts.length];
    const dx = b[0] - a[0], dy = b[1] - a[1], L = dx * dx + dy * dy || 1;
    const t = Math.max(0, Math.min(1, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / L));
    if (Math.hypot(a[0] + t * dx - p[0], a[1] + t * dy - p[1]) < tol) return i + 1;
  }
  return -1;
}
canvas.addEventListener("contextmenu", (e) => e.preventDefault());
canvas.addEventListener("pointerdown", (e) => {
  if (!st.image) return;
  element.focus({ preventScroll: true });
  canvas.setPointerCapture(e.pointerId);
  const p = toImage(e);
  if (e.button === 1 || st.space || st.tool === "pan") { st.drag = { kind: "pan", sx: e.clientX, sy: e.clientY, ox: st.ox, oy: st.oy }; return; }
  if (st.tool === "brush" || st.tool === "eraser") { if (e.button === 0) { st.stroke = { mode: st.tool, pts: [p] }; draw(); } return; }
  if (st.tool === "polygon") {
    const v = nearVertex(p);
    if (e.button === 2) { if (v >= 0) { st.poly.pts.splice(v, 1); draw(); } return; }
    if (v === 0 && !st.poly.closed && st.poly.pts.length >= 3) { st.poly.closed = true; commitPoly(); return; }
    if (v >= 0) { st.drag = { kind: "vertex", v }; return; }
    if (st.poly.closed) { const k = nearEdge(p); if (k >= 0) { st.poly.pts.splice(k, 0, p); st.drag = { kind: "vertex", v: k }; draw(); } return; }
    if (inside(p)) { st.poly.pts.push(p); draw(); }
    return;
  }
  st.drag = { kind: "box", start: p, now: p, moved: false, button: e.button, sx: e.clientX, sy: e.clientY };
});
canvas.addEventListener("pointermove", (e) => {
  const p = toImage(e);
  st.hover = p;
  const d = st.drag;
  if (d && d.kind === "pan") { st.ox = d.ox + e.clientX - d.sx; st.oy = d.oy + e.clientY - d.sy; draw(); return; }
  if (d && d.kind === "vertex") { st.poly.pts[d.v] = p; draw(); return; }
  if (d && d.kind === "box") { d.now = p; if (Math.hypot(e.clientX - d.sx, e.clientY - d.sy) > 5) d.moved = true; draw(); return; }
  if (st.stroke) { st.stroke.pts.push(p); draw(); return; }
  if (st.tool !== "prompt") draw();
});
canvas.addEventListener("pointerup", (e) => {
  const d = st.drag; st.drag = null;
  if (st.stroke) {
    const s = st.stroke;
    run(() => api("stroke", s.mode, s.pts, st.radius), async (r) => { st.stroke = null; await setPending(r); status(`${s.mode === "brush" ? "Painted" : "Erased"}: hand-edited mask (saved as manual on Enter).`); });
    return;
  }
  if (!d || d.kind !== "box") { draw(); return; }
  if (d.moved && d.button === 0) {
    const [x0, y0] = d.start, [x1, y1] = d.now;
    prompt("box", [x0, y0, x1, y1]);
  } else if (inside(d.start)) {
    const neg = d.button === 2 || (d.button === 0 && (st.neg || e.altKey));
    const hit = !neg && !(st.pending && st.pending.candidates.length) ? proposalAt(d.start) : null;
    if (hit) editAnn(hit.id);  // a click inside a proposal refines it, starting from its mask
    prompt(neg ? "neg" : "pos", d.start);
  }
  draw();
});
canvas.addEventListener("dblclick", (e) => { if (st.tool === "polygon" && st.poly && !st.poly.closed) { e.preventDefault(); commitPoly(); } });
canvas.addEventListener("wheel", (e) => {
  if (!st.image) return;
  e.preventDefault();
  const r = canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
  const f = Math.exp(-e.deltaY * 0.0015), ns = Math.min(40, Math.max(0.05, st.scale * f));
  st.ox = mx - (mx - st.ox) * ns / st.scale; st.oy = my - (my - st.oy) * ns / st.scale; st.scale = ns;
  renderTools(); draw();
}, { passive: false });

// ------------------------------------------------------------------ keys
function visible() { return element.offsetParent !== null; }
document.addEventListener("keydown", (e) => {
  if (!visible() || !st.image) return;
  const t = e.target, tag = t && t.tagName;
  if ((tag === "INPUT" && t.type !== "range") || tag === "TEXTAREA" || (tag === "SELECT" && !element.contains(t))) return;
  if (t && t.isContentEditable) return;
  const k = e.key;
  if (tag === "BUTTON" && (k === "Enter" || k === " ")) return;  // a focused button (Mark done) takes its own keys
  if ((e.ctrlKey || e.metaKey) && (k === "z" || k === "Z")) { e.preventDefault(); undo(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (k === "Enter") { e.preventDefault(); if (st.poly && st.poly.pts.length >= 3) commitPoly(); else accept(); }
  else if (k === "Escape") { e.preventDefault(); clearPrompt(); }
  else if (k >= "1" && k <= "9") {
    const c = st.classes[Number(k) - 1], a = selected();
    if (c && a && !(st.pending && st.pending.candidates.length)) {
      setClass(c.id);
      run(() => api("set_class", a.id, c.id), (r) => { applyChange(r); st.sel = a.id; status(`Proposal #${a.id} is now ${c.name}; Y accepts it.`, "ok"); });
    } else if (c) setClass(c.id);
  }
  else if (k === "y" || k === "Y") reviewProposal("accepted");
  else if (k === "x" || k === "X") reviewProposal("rejected");
  else if (k === "j" || k === "J") stepProposal(1);
  else if (k === "k" || k === "K") stepProposal(-1);
  else if (k === "a" || k === "A" || k === "ArrowLeft") { e.preventDefault(); move(-1); }
  else if (k === "d" || k === "D" || k === "ArrowRight") { e.preventDefault(); move(1); }
  else if (k === "c" || k === "C") { const p = st.pending; if (p && p.candidates.length > 1) choose((p.chosen + 1) % p.candidates.length); }
  else if (k === "n" || k === "N") { st.neg = !st.neg; renderTools(); }
  else if (k === "v" || k === "V") setTool("prompt");
  else if (k === "b" || k === "B") setTool("brush");
  else if (k === "e" || k === "E") setTool("eraser");
  else if (k === "p" || k === "P") setTool("polygon");
  else if (k === "f" || k === "F") { fit(); renderTools(); }
  else if (k === "[") { st.radius = Math.max(1, st.radius - 1); $(".ds-radius-in").value = st.radius; draw(); }
  else if (k === "]") { st.radius = Math.min(60, st.radius + 1); $(".ds-radius-in").value = st.radius; draw(); }
  else if (k === " ") { if (element.contains(t) || t === document.body) { e.preventDefault(); st.space = true; } }
  else if ((k === "Delete" || k === "Backspace") && st.sel != null && tag !== "SELECT") {
    const id = st.sel; st.sel = null;
    run(() => api("delete", id), (r) => { applyChange(r); status(`#${id} deleted`, "ok"); });
  }
});
document.addEventListener("keyup", (e) => { if (e.key === " ") st.space = false; });

// ------------------------------------------------------------------ buttons
$(".ds-prev").onclick = () => move(-1);
$(".ds-next").onclick = () => move(1);
$(".ds-accept").onclick = () => accept();
$(".ds-clear").onclick = () => clearPrompt();
$(".ds-undo").onclick = () => undo();
$(".ds-outline").onclick = () => editOutline();
$(".ds-fit").onclick = () => { fit(); renderTools(); };
$(".ds-sign").onclick = () => { st.neg = !st.neg; renderTools(); };
$(".ds-radius-in").oninput = (e) => { st.radius = Number(e.target.value); draw(); };
$(".ds-done").onclick = () => setImageStatus("done");
$(".ds-good").onclick = () => setImageStatus("good");
$(".ds-unl").onclick = () => setImageStatus("unlabeled");
element.querySelectorAll("[data-tool]").forEach((b) => { b.onclick = () => setTool(b.dataset.tool); });
// A clicked button lets go of the focus, so Enter goes to the canvas (accept, apply), not to the
// button again; Mark done keeps it on purpose (after the last review, Enter marks the image done).
element.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => { if (!b.classList.contains("ds-done")) b.blur(); }));
new ResizeObserver(() => { resize(); }).observe(canvas);

// ------------------------------------------------------------------ boot
async function boot() {
  const r = await api("boot");
  st.classes = r.classes; st.images = r.images;
  if (st.cls == null || !st.classes.some((c) => c.id === st.cls)) st.cls = st.classes.length ? st.classes[0].id : null;
  const seg = r.segmenter, box = $(".ds-seg");
  box.querySelector(".ds-seg-name").textContent = `Segmenter: ${seg.name} on ${seg.device}`;
  box.querySelector(".ds-seg-notice").textContent = seg.notice ? `— ${seg.notice}` : "";
  box.classList.toggle("fallback", !!seg.fallback);
  renderClasses(); renderTools();
  return r;
}
async function onValue() {
  let v = {};
  try { v = JSON.parse(props.value || "{}"); } catch (e) { return; }
  if (!v.token) return;
  const fresh = v.token !== st.token;
  const rev = v.rev;
  if (!fresh && rev === st.rev) return;
  st.token = v.token; st.rev = rev;
  try {
    const r = await boot();
    if (v.open != null) await openImage(v.open);
    else if (fresh && r.images.length) await openImage(r.images[0].id);
    else if (st.image) await openImage(st.image.id);
  } catch (e) { fail(e); }
}
watch("value", onValue);
onValue();
resize();
