// The page of `python -m liif_jax.app`: upload, upscale with a comparison, and the explorer, whose
// frames the server renders for exactly the screen's pixels (see liif_jax/app/views.py).
"use strict";

const $ = (selector) => document.querySelector(selector);
const COARSE = 0.25; // the density of the frame drawn while the view moves
const REST_MS = 200; // the full frame is asked for once the view has rested this long
const MIN_SCALE_OF_FIT = 0.5;
const MAX_SCALE = 1000;

const app = {
  image: null, // {id, name, height, width}
  client: Math.random().toString(36).slice(2),
  seq: 0,
  view: null, // {s, top, left}: screen pixel (i, j) is the virtual output pixel (top + i, left + j) at s px per input px
  frame: null, // the last frame drawn: {s, top, left, d, kind, bitmap, seq}
};
window.liifApp = app;

function message(text, kind = "error") {
  const box = $("#message");
  box.textContent = text || "";
  box.className = kind;
  box.hidden = !text;
}

async function errorOf(response) {
  try {
    return (await response.json()).error || `${response.status} ${response.statusText}`;
  } catch {
    return `the server answered ${response.status} ${response.statusText}`;
  }
}

const model = () => $("#model").value;

// ---- upload -------------------------------------------------------------------------------

async function upload(file) {
  message(`uploading ${file.name} ...`, "info");
  let response;
  try {
    response = await fetch(`/api/images?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
  } catch (err) {
    message(`the upload failed: ${err}`);
    return;
  }
  if (!response.ok) {
    message(await errorOf(response));
    return;
  }
  app.image = await response.json();
  message("");
  $("#image-info").textContent = `${app.image.name}: ${app.image.height} x ${app.image.width}`;
  $("#image-info").dataset.id = app.image.id;
  $("#render").disabled = false;
  $("#compare").hidden = true;
  $("#download").hidden = true;
  updateOutSize();
  app.frame = null;
  app.view = null;
  if (!$("#explore").hidden) fit();
}

$("#file").addEventListener("change", (e) => e.target.files.length && upload(e.target.files[0]));
document.addEventListener("dragover", (e) => {
  e.preventDefault();
  document.body.classList.add("dragging");
});
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  if (e.dataTransfer.files.length) upload(e.dataTransfer.files[0]);
});

// ---- upscale ------------------------------------------------------------------------------

const mode = () => document.querySelector("input[name=mode]:checked").value;
const scaleValue = () => Math.round(parseFloat($("#scale").value) * 100) / 100;

function updateOutSize() {
  if (!app.image) return;
  if (mode() === "scale") {
    const s = scaleValue();
    $("#out-h").value = Math.max(1, Math.round(app.image.height * s));
    $("#out-w").value = Math.max(1, Math.round(app.image.width * s));
  }
  $("#out-size").textContent = `-> ${$("#out-h").value} x ${$("#out-w").value}`;
}

$("#scale-range").addEventListener("input", (e) => {
  $("#scale").value = parseFloat(e.target.value).toFixed(2);
  updateOutSize();
});
$("#scale").addEventListener("input", (e) => {
  $("#scale-range").value = e.target.value;
  updateOutSize();
});
for (const id of ["#out-h", "#out-w"]) {
  $(id).addEventListener("input", () => {
    document.querySelector("input[name=mode][value=size]").checked = true;
    updateOutSize();
  });
}
for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", updateOutSize);

async function renderUpscale() {
  if (!app.image) return;
  const body = { image: app.image.id, model: model() };
  if (mode() === "scale") body.scale = scaleValue();
  else body.size = [parseInt($("#out-h").value, 10), parseInt($("#out-w").value, 10)];
  $("#render").disabled = true;
  $("#download").hidden = true;
  message("");
  try {
    const response = await fetch("/api/upscale", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      message(await errorOf(response));
      return;
    }
    const { job } = await response.json();
    const status = await follow(job);
    if (status.state !== "done") {
      message(status.error || `the render ended ${status.state}`);
      return;
    }
    await showResult(job, status);
  } catch (err) {
    message(`the render failed: ${err}`);
  } finally {
    $("#render").disabled = false;
    $("#progress").hidden = true;
    $("#progress-text").textContent = "";
  }
}

async function follow(job) {
  // Polls the job; the progress shows once it has taken more than a second.
  for (;;) {
    const response = await fetch(`/api/jobs/${job}`);
    if (!response.ok) throw new Error(await errorOf(response));
    const status = await response.json();
    if (status.state === "done" || status.state === "error") return status;
    if (status.seconds > 1) {
      $("#progress").hidden = false;
      $("#progress").value = status.total ? status.done / status.total : 0;
      const blocks = status.total ? `${status.done}/${status.total} blocks, ` : "";
      $("#progress-text").textContent = `${status.state}: ${blocks}${status.seconds.toFixed(1)} s`;
    }
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
}

function loaded(img, src) {
  return new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = () => reject(new Error(`cannot show ${src}`));
    img.src = src;
  });
}

async function showResult(job, status) {
  await Promise.all([loaded($("#before"), `/api/jobs/${job}/bicubic.png`), loaded($("#after"), `/api/jobs/${job}/liif.png`)]);
  $("#compare").hidden = false;
  const link = $("#download");
  link.href = `/api/jobs/${job}/liif.png?download=1`;
  link.download = status.name;
  link.textContent = `Download ${status.name} (${status.height} x ${status.width})`;
  link.hidden = false;
  $("#out-size").textContent = `${status.height} x ${status.width} in ${status.seconds.toFixed(1)} s`;
}

$("#render").addEventListener("click", renderUpscale);
$("#split").addEventListener("input", (e) => {
  const v = parseFloat(e.target.value);
  $("#after").style.clipPath = `inset(0 ${100 - v}% 0 0)`;
  $("#divider").style.left = `${v}%`;
});

// ---- explore ------------------------------------------------------------------------------

const canvas = $("#view");
const ctx = canvas.getContext("2d");
let restTimer = null;
let coarseInFlight = false;
let coarseWanted = false;
let inflight = null; // the AbortController of the latest request

function fitScale() {
  return Math.min(canvas.height / app.image.height, canvas.width / app.image.width);
}

function fit() {
  if (!app.image) return;
  const s = fitScale();
  app.view = { s, top: (app.image.height * s - canvas.height) / 2, left: (app.image.width * s - canvas.width) / 2 };
  changed();
}

function zoomAt(factor, cx, cy) {
  // Zooms about the screen point (cx, cy), in canvas pixels: the image point under it stays there.
  const v = app.view;
  const s = Math.min(MAX_SCALE, Math.max(fitScale() * MIN_SCALE_OF_FIT, v.s * factor));
  app.view = { s, top: ((v.top + cy) / v.s) * s - cy, left: ((v.left + cx) / v.s) * s - cx };
  changed();
}
app.fit = fit;
app.zoomAt = zoomAt;

function resize() {
  const dpr = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * dpr));
  const h = Math.max(1, Math.round(canvas.clientHeight * dpr));
  if (w === canvas.width && h === canvas.height) return;
  const old = { w: canvas.width, h: canvas.height };
  canvas.width = w;
  canvas.height = h;
  if (!app.view) fit();
  else {
    app.view.top -= (h - old.h) / 2;
    app.view.left -= (w - old.w) / 2;
    changed();
  }
}

function draw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const f = app.frame;
  const v = app.view;
  if (!f || !v) return;
  // The frame's pixel (i, j) spans input pixels from (f.top / f.s + i / (f.s f.d), ...); on screen, input x is at x s - left.
  const x = (f.left / f.s) * v.s - v.left;
  const y = (f.top / f.s) * v.s - v.top;
  const w = (f.bitmap.width / (f.s * f.d)) * v.s;
  const h = (f.bitmap.height / (f.s * f.d)) * v.s;
  ctx.imageSmoothingEnabled = !(f.d === 1 && f.s === v.s);
  ctx.drawImage(f.bitmap, x, y, w, h);
  $("#zoom").textContent = `x${v.s.toFixed(2)}`;
}

function changed() {
  if (!app.image || !app.view) return;
  canvas.dataset.rendered = "pending";
  draw();
  $("#zoom").textContent = `x${app.view.s.toFixed(2)}`;
  if (coarseInFlight) coarseWanted = true;
  else requestFrame(COARSE);
  clearTimeout(restTimer);
  restTimer = setTimeout(() => requestFrame(1), REST_MS);
}

async function requestFrame(d) {
  if (!app.image || !app.view) return;
  const v = { ...app.view };
  const kind = $("#bicubic").checked ? "bicubic" : "liif";
  const seq = ++app.seq;
  if (inflight) inflight.abort(); // the older request is stale: the browser drops it, the server skips it
  const controller = new AbortController();
  inflight = controller;
  if (d !== 1) coarseInFlight = true;
  const params = new URLSearchParams({
    image: app.image.id,
    model: model(),
    kind,
    scale: v.s * d,
    top: v.top * d,
    left: v.left * d,
    height: Math.ceil(canvas.height * d),
    width: Math.ceil(canvas.width * d),
    client: app.client,
    seq,
  });
  const slow = setTimeout(() => {
    $("#view-status").textContent = app.frame ? "rendering ..." : `encoding the image with ${model()} (once) ...`;
  }, 1000);
  try {
    const response = await fetch(`/api/view?${params}`, { signal: controller.signal });
    if (response.status === 204) return;
    if (!response.ok) {
      message(await errorOf(response));
      return;
    }
    const blob = await response.blob();
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    if (app.frame && app.frame.seq > seq) return;
    app.frame = { ...v, d, kind, bitmap, seq };
    draw();
    const current = app.view.s === v.s && app.view.top === v.top && app.view.left === v.left;
    if (current && d === 1) canvas.dataset.rendered = "full";
    else if (current) canvas.dataset.rendered = "coarse";
    $("#view-status").textContent = "";
  } catch (err) {
    if (err.name !== "AbortError") message(`the view failed: ${err}`);
  } finally {
    clearTimeout(slow);
    if (d !== 1) {
      coarseInFlight = false;
      if (coarseWanted) {
        coarseWanted = false;
        requestFrame(COARSE);
      }
    }
  }
}

canvas.addEventListener(
  "wheel",
  (e) => {
    e.preventDefault();
    if (!app.view) return;
    const dpr = window.devicePixelRatio || 1;
    zoomAt(Math.exp(-e.deltaY * 0.002), e.offsetX * dpr, e.offsetY * dpr);
  },
  { passive: false },
);

const pointers = new Map();
canvas.addEventListener("pointerdown", (e) => {
  canvas.setPointerCapture(e.pointerId);
  pointers.set(e.pointerId, { x: e.offsetX, y: e.offsetY });
});
canvas.addEventListener("pointermove", (e) => {
  if (!pointers.has(e.pointerId) || !app.view) return;
  const dpr = window.devicePixelRatio || 1;
  const before = [...pointers.values()];
  pointers.set(e.pointerId, { x: e.offsetX, y: e.offsetY });
  const after = [...pointers.values()];
  if (after.length === 1) {
    app.view = { ...app.view, top: app.view.top - (after[0].y - before[0].y) * dpr, left: app.view.left - (after[0].x - before[0].x) * dpr };
    changed();
  } else if (after.length === 2) {
    const dist = (p) => Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y);
    const cx = ((after[0].x + after[1].x) / 2) * dpr;
    const cy = ((after[0].y + after[1].y) / 2) * dpr;
    if (dist(before) > 0) zoomAt(dist(after) / dist(before), cx, cy);
  }
});
for (const type of ["pointerup", "pointercancel"]) canvas.addEventListener(type, (e) => pointers.delete(e.pointerId));

$("#fit").addEventListener("click", fit);
$("#bicubic").addEventListener("change", changed);
$("#model").addEventListener("change", () => {
  app.frame = null;
  changed();
});
new ResizeObserver(() => !$("#explore").hidden && app.image && resize()).observe(canvas);

// ---- tabs and models ----------------------------------------------------------------------

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
    for (const panel of document.querySelectorAll(".panel")) panel.hidden = panel.id !== tab.dataset.panel;
    if (tab.dataset.panel === "explore" && app.image) {
      resize();
      if (!app.view) fit();
    }
  });
}

(async () => {
  const response = await fetch("/api/models");
  const { models, default: chosen } = await response.json();
  for (const name of models) $("#model").add(new Option(name, name, name === chosen, name === chosen));
  document.body.dataset.ready = "1";
})();
