// The playground: draw or drop a digit, see the model's answer, its softmax, its feature maps
// and, for any value of them, how it was computed; the model's architecture; a padding and
// stride sandbox. No libraries, no build step: the page talks to this server's HTTP API only.
// The link holds the model, the value explained, the language and the drawing.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const modelSelect = document.getElementById("model");
const autoInvert = document.getElementById("auto-invert");
const langSelect = document.getElementById("lang");
const statusLine = document.getElementById("status");
const note = document.getElementById("note");
const CELL = 3; // screen pixels per feature-map cell: valid, same and strided layers keep their sizes
const STROKE = 18;
const EXPLAINED_OPS = ["Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "Gemm"];

let drawing = false;
let last = null;
let inFlight = false;
let again = false;
let lastSent = 0;
let strokes = []; // the drawing, for the link: per stroke, its [x, y] points; null once an image is dropped
const models = {}; // name -> {classes}
let shown = null; // what the page shows: {blob, maps, prediction}
let architectureOf = null; // the /architecture answer of the selected model
let selection = null; // {layer: node name, channel, y, x}: the value explained
let linked = null; // a selection the link names, applied once its model's maps are in
let lastExplanation = null;
let explainBusy = false;
let explainAgain = false;
let explainStarted = null; // performance.now() of the click or key that asked for the panel
const explainTimings = []; // click-to-panel milliseconds, read by the browser test

function clearPad(link = true) {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  strokes = [];
  shown = null;
  lastExplanation = null;
  document.getElementById("top-k").replaceChildren();
  document.getElementById("features").replaceChildren();
  document.getElementById("seen").replaceChildren();
  document.getElementById("softmax").replaceChildren();
  document.getElementById("explain").replaceChildren(el("p", "lede", t("explainEmpty")));
  note.textContent = "";
  document.body.dataset.answered = "0";
  if (link) writeLink();
}

// Whole pad pixels, so that a link's drawing replays stroke for stroke into the same pixels.
function point(event) {
  const box = pad.getBoundingClientRect();
  const x = Math.round((event.clientX - box.left) * pad.width / box.width);
  const y = Math.round((event.clientY - box.top) * pad.height / box.height);
  return { x: Math.max(0, Math.min(pad.width - 1, x)), y: Math.max(0, Math.min(pad.height - 1, y)) };
}

function stroke(to) {
  ctx.strokeStyle = "#000";
  ctx.lineWidth = STROKE;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(last.x, last.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
  last = to;
}

function record(p, start) {
  if (!strokes) return;
  if (start) strokes.push([]);
  strokes[strokes.length - 1].push([p.x, p.y]);
}

pad.addEventListener("pointerdown", (e) => {
  drawing = true;
  last = point(e);
  record(last, true);
  stroke(last);
  pad.setPointerCapture(e.pointerId);
});
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  const p = point(e);
  record(p, false);
  stroke(p);
  if (performance.now() - lastSent > 150) ask(); // update as you draw, a few times a second
});
for (const end of ["pointerup", "pointercancel"]) {
  pad.addEventListener(end, () => { if (drawing) { drawing = false; ask(); } });
}

pad.addEventListener("dragover", (e) => { e.preventDefault(); pad.classList.add("drop"); });
pad.addEventListener("dragleave", () => pad.classList.remove("drop"));
pad.addEventListener("drop", (e) => {
  e.preventDefault();
  pad.classList.remove("drop");
  const file = e.dataTransfer.files[0];
  if (!file) return;
  const img = new Image();
  img.onload = () => {
    clearPad();
    strokes = null; // a dropped image is not part of the link
    const scale = Math.min(pad.width / img.width, pad.height / img.height);
    const w = img.width * scale, h = img.height * scale;
    ctx.drawImage(img, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    URL.revokeObjectURL(img.src);
    ask();
  };
  img.src = URL.createObjectURL(file);
});

document.getElementById("clear").addEventListener("click", clearPad);
modelSelect.addEventListener("change", () => { selection = null; clearPad(); loadArchitecture(); });
autoInvert.addEventListener("change", ask);
langSelect.addEventListener("change", () => setLanguage(langSelect.value));
document.getElementById("share").addEventListener("click", async () => {
  writeLink();
  try { await navigator.clipboard.writeText(location.href); statusLine.textContent = t("copied"); } catch { /* no clipboard: the address bar has it */ }
});

function padBlob() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

async function post(path, body) {
  const response = await fetch(path, { method: "POST", body, headers: { "Content-Type": "image/png" } });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || response.statusText);
  return answer;
}

// One request at a time; a drawing that changed meanwhile is sent once the answer is in.
async function ask() {
  if (!modelSelect.value) return;
  if (inFlight) { again = true; return; }
  inFlight = true;
  lastSent = performance.now();
  try {
    const blob = await padBlob();
    const model = encodeURIComponent(modelSelect.value);
    const query = `auto_invert=${autoInvert.checked}`;
    const k = Math.max(5, models[modelSelect.value]?.classes || 5);
    const [answer, maps] = await Promise.all([
      post(`/v2/models/${model}/predict?top_k=${k}&${query}`, blob),
      post(`/v2/models/${model}/features?${query}`, blob),
    ]);
    shown = { blob, maps, prediction: answer.predictions[0] };
    showAnswer(shown.prediction);
    showFeatures(maps);
    statusLine.textContent = `${answer.model} v${answer.version} on ${answer.execution_provider}`;
    statusLine.className = "";
    document.body.dataset.answered = String(Number(document.body.dataset.answered || 0) + 1);
    applyLinkedSelection();
    if (selection) explain();
    writeLink();
  } catch (error) {
    statusLine.textContent = `error: ${error.message}`;
    statusLine.className = "error";
  } finally {
    inFlight = false;
    if (again) { again = false; ask(); }
  }
}

function showAnswer(prediction) {
  const list = document.getElementById("top-k");
  list.replaceChildren(...prediction.top_k.slice(0, 5).map((score) => {
    const item = document.createElement("li");
    item.dataset.index = score.index;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = score.label;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${(100 * score.probability).toFixed(1)}%`;
    const value = document.createElement("span");
    value.textContent = `${(100 * score.probability).toFixed(1)} %`;
    item.append(label, bar, value);
    return item;
  }));
  const notes = [];
  if (prediction.inverted) notes.push(t("inverted"));
  if (prediction.framed) notes.push(t("framed"));
  note.textContent = notes.join("; ");
  const labels = [];
  for (const score of prediction.top_k) labels[score.index] = score.label;
  const last = outputLayer();
  renderSoftmax(prediction.logits, labels, last ? (unit) => pick(last.layer.name, unit, null, null) : null);
}

// The dense layer whose output is the model's answer, if there is one: its logits can be explained.
function outputLayer() {
  if (!architectureOf) return null;
  const rows = architectureOf.rows.filter((r) => r.layer.op === "Gemm");
  const classes = models[modelSelect.value]?.classes;
  const final = rows[rows.length - 1];
  return final && final.output_shape && final.output_shape[1] === classes ? final : null;
}

function drawMap(data, offset, h, w, scale) {
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  canvas.style.width = `${w * CELL}px`;
  canvas.style.height = `${h * CELL}px`;
  const c = canvas.getContext("2d");
  const image = c.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const [r, g, b] = colour(data[offset + i], scale);
    image.data.set([r, g, b, 255], 4 * i);
  }
  c.putImageData(image, 0, 0);
  return canvas;
}

// What the model sees: the image after the server's preprocessing, in gray.
function showInput(input) {
  const [, , h, w] = input.shape;
  const low = Math.min(...input.data), high = Math.max(...input.data);
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const c = canvas.getContext("2d");
  const image = c.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    const v = Math.round(255 * (input.data[i] - low) / Math.max(high - low, 1e-6));
    image.data.set([v, v, v, 255], 4 * i);
  }
  c.putImageData(image, 0, 0);
  const caption = document.createElement("p");
  caption.textContent = t("seen", h, w);
  document.getElementById("seen").replaceChildren(canvas, caption);
}

function refOf(name) {
  const row = architectureOf && architectureOf.rows.find((r) => r.layer.name === name);
  return row ? row.layer : null;
}

function showFeatures(maps) {
  if (maps.input.shape[1] === 1) showInput(maps.input);
  const container = document.getElementById("features");
  container.replaceChildren(...maps.layers.map((layer) => {
    const [, channels, h, w] = layer.shape;
    const scale = Math.max(1e-6, ...layer.data.map(Math.abs));
    const section = document.createElement("div");
    section.className = "layer";
    section.dataset.layer = layer.name;
    const ref = refOf(layer.name);
    const title = document.createElement("h3");
    const name = ref ? `${ref.title} — ${kindName(ref.kind)}` : layer.name;
    title.textContent = `${name} (${layer.op}, ${channels} × ${h} × ${w}; ${t("maxAbs")} ${scale.toPrecision(3)})`;
    const row = document.createElement("div");
    row.className = "maps";
    for (let ch = 0; ch < channels; ch++) {
      const canvas = drawMap(layer.data, ch * h * w, h, w, scale);
      canvas.dataset.channel = String(ch);
      canvas.addEventListener("click", (event) => {
        const box = canvas.getBoundingClientRect();
        const y = Math.min(h - 1, Math.floor((event.clientY - box.top - canvas.clientTop) / (canvas.clientHeight / h)));
        const x = Math.min(w - 1, Math.floor((event.clientX - box.left - canvas.clientLeft) / (canvas.clientWidth / w)));
        pick(layer.name, ch, Math.max(0, y), Math.max(0, x));
      });
      row.append(canvas);
    }
    section.append(title, row);
    return section;
  }));
  markSelection();
}

// The value explained, outlined on its map.
function markSelection() {
  for (const old of document.querySelectorAll("#features .marker")) old.remove();
  if (!selection || selection.y === null) return;
  const canvas = document.querySelector(`#features .layer[data-layer="${CSS.escape(selection.layer)}"] canvas[data-channel="${selection.channel}"]`);
  if (!canvas) return;
  const marker = el("div", "marker");
  const cellW = canvas.clientWidth / canvas.width, cellH = canvas.clientHeight / canvas.height;
  marker.style.left = `${canvas.offsetLeft + canvas.clientLeft + selection.x * cellW - 2}px`;
  marker.style.top = `${canvas.offsetTop + canvas.clientTop + selection.y * cellH - 2}px`;
  marker.style.width = `${cellW}px`;
  marker.style.height = `${cellH}px`;
  canvas.parentElement.append(marker);
}

function mapOf(name) {
  return shown && shown.maps.layers.find((l) => l.name === name);
}

function pick(layer, channel, y, x) {
  explainStarted = performance.now();
  selection = { layer, channel, y, x };
  markSelection();
  writeLink();
  explain();
}

// One explain request at a time; the latest selection is sent once the answer is in.
async function explain() {
  if (!selection || !shown) return;
  if (explainBusy) { explainAgain = true; return; }
  explainBusy = true;
  const wanted = { ...selection };
  const started = explainStarted;
  explainStarted = null;
  try {
    const query = new URLSearchParams({ layer: wanted.layer, channel: wanted.channel, auto_invert: autoInvert.checked });
    if (wanted.y !== null) { query.set("y", wanted.y); query.set("x", wanted.x); }
    const answer = await post(`/v2/models/${encodeURIComponent(modelSelect.value)}/explain?${query}`, shown.blob);
    lastExplanation = answer;
    renderExplanation(answer, outputPlane(answer), (y, x) => pick(wanted.layer, wanted.channel, y, x));
    if (started !== null) {
      await new Promise((resolve) => requestAnimationFrame(resolve)); // the panel laid out, about to be painted
      const ms = performance.now() - started;
      explainTimings.push(ms);
      showTiming(ms);
    }
    document.body.dataset.explained = String(Number(document.body.dataset.explained || 0) + 1);
  } catch (error) {
    showExplainError(`error: ${error.message}`);
  } finally {
    explainBusy = false;
    if (explainAgain) { explainAgain = false; explain(); }
  }
}

function outputPlane(answer) {
  const map = mapOf(answer.layer.name);
  if (!map || answer.position.y === undefined) return null;
  const [, , h, w] = map.shape;
  const start = answer.position.channel * h * w;
  return map.data.slice(start, start + h * w);
}

// The arrow keys move the value explained within its map (a dense layer's unit: up and down).
document.addEventListener("keydown", (event) => {
  if (!selection || event.target.closest("input, select, textarea, button")) return;
  const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
  const move = moves[event.key];
  if (!move) return;
  event.preventDefault();
  const map = mapOf(selection.layer);
  if (selection.y === null) {
    const units = lastExplanation ? lastExplanation.output_shape[1] : 1;
    const unit = Math.max(0, Math.min(units - 1, selection.channel + move[0] + move[1]));
    if (unit !== selection.channel) pick(selection.layer, unit, null, null);
    return;
  }
  if (!map) return;
  const [, , h, w] = map.shape;
  const y = Math.max(0, Math.min(h - 1, selection.y + move[0])), x = Math.max(0, Math.min(w - 1, selection.x + move[1]));
  if (y !== selection.y || x !== selection.x) pick(selection.layer, selection.channel, y, x);
});

// The link: ?model=&layer=&channel=&y=&x=&lang= and #draw= the strokes, two base-36 digits a coordinate.
function encodeStrokes(list) {
  return list.map((s) => s.map(([x, y]) => x.toString(36).padStart(2, "0") + y.toString(36).padStart(2, "0")).join("")).join("-");
}

function decodeStrokes(text) {
  const list = [];
  for (const part of text.split("-")) {
    if (!/^([0-9a-z]{4})+$/.test(part)) return [];
    const points = [];
    for (let i = 0; i < part.length; i += 4) {
      points.push([parseInt(part.slice(i, i + 2), 36), parseInt(part.slice(i + 2, i + 4), 36)]);
    }
    list.push(points);
  }
  return list;
}

function writeLink() {
  const query = new URLSearchParams();
  if (modelSelect.value) query.set("model", modelSelect.value);
  if (selection) {
    const ref = refOf(selection.layer);
    query.set("layer", ref ? ref.title : selection.layer);
    query.set("channel", selection.channel);
    if (selection.y !== null) { query.set("y", selection.y); query.set("x", selection.x); }
  }
  if (lang !== "en") query.set("lang", lang);
  const hash = strokes && strokes.length ? `#draw=${encodeStrokes(strokes)}` : "";
  history.replaceState(null, "", `${location.pathname}?${query}${hash}`);
}

function readLink() {
  const query = new URLSearchParams(location.search);
  const wanted = query.get("lang");
  if (LANGUAGES.includes(wanted)) lang = wanted;
  const ints = ["channel", "y", "x"].map((k) => (query.has(k) && /^\d+$/.test(query.get(k)) ? Number(query.get(k)) : null));
  const hash = new URLSearchParams(location.hash.slice(1));
  return {
    model: query.get("model"),
    selection: query.get("layer") && ints[0] !== null ? { layer: query.get("layer"), channel: ints[0], y: ints[1], x: ints[2] } : null,
    strokes: hash.get("draw") ? decodeStrokes(hash.get("draw")) : [],
  };
}

// A linked layer may be named as the page shows it (conv1) or as the graph does.
function applyLinkedSelection() {
  if (!linked || !shown || !architectureOf) return;
  const row = architectureOf.rows.find((r) => r.layer.title === linked.layer || r.layer.name === linked.layer);
  if (row) selection = { ...linked, layer: row.layer.name };
  linked = null;
  markSelection();
}

// The strokes of a link, drawn as they were: the first point of each, then a line to each next.
function replay(list) {
  for (const [[x0, y0], ...rest] of list) {
    last = { x: x0, y: y0 };
    stroke(last);
    for (const [x, y] of rest) stroke({ x, y });
  }
  strokes = list;
}

function setLanguage(value) {
  lang = LANGUAGES.includes(value) ? value : "en";
  langSelect.value = lang;
  applyStaticText();
  document.getElementById("sb-play").textContent = t(sandbox.timer ? "pause" : "play");
  if (shown) { showAnswer(shown.prediction); showFeatures(shown.maps); }
  if (lastExplanation) renderExplanation(lastExplanation);
  else if (!selection) document.getElementById("explain").replaceChildren(el("p", "lede", t("explainEmpty")));
  renderArchitecture(architectureOf, pickRow);
  renderSandbox();
  writeLink();
}

function pickRow(row) {
  if (row.layer.op === "Gemm") { pick(row.layer.name, 0, null, null); return; }
  const [, , h, w] = row.output_shape;
  pick(row.layer.name, 0, Math.floor(h / 2), Math.floor(w / 2));
  document.getElementById("explain-panel").scrollIntoView({ block: "nearest" });
}

async function loadArchitecture() {
  architectureOf = null;
  renderArchitecture(null);
  const name = modelSelect.value;
  if (!name) return;
  const response = await fetch(`/v2/models/${encodeURIComponent(name)}/architecture`);
  const answer = await response.json();
  if (!response.ok || name !== modelSelect.value) return;
  architectureOf = answer;
  renderArchitecture(architectureOf, pickRow);
  if (shown) { showAnswer(shown.prediction); showFeatures(shown.maps); }
  applyLinkedSelection();
  if (selection && shown && !lastExplanation) explain();
  writeLink();
}

async function loadModels() {
  const response = await fetch("/v2/repository/index", { method: "POST", body: JSON.stringify({ ready: true }) });
  const index = await response.json();
  const choices = [];
  for (const m of index) {
    const meta = await (await fetch(`/v2/models/${encodeURIComponent(m.name)}/versions/${m.version}`)).json();
    const shape = meta.inputs.length === 1 ? meta.inputs[0].shape : [];
    if (shape.length === 4 && (shape[1] === 1 || shape[1] === 3)) {
      choices.push(m.name);
      const out = meta.outputs[0] ? meta.outputs[0].shape : [];
      models[m.name] = { classes: out.length === 2 && out[1] > 0 ? out[1] : 0 };
    }
  }
  modelSelect.replaceChildren(...[...new Set(choices)].map((name) => new Option(name, name)));
  const link = startLink;
  const digits = choices.find((name) => name.endsWith("-mnist") && !name.includes("fashion"));
  if (link.model && choices.includes(link.model)) modelSelect.value = link.model;
  else if (digits) modelSelect.value = digits;
  statusLine.textContent = choices.length ? t("drawDigit") : t("noModel");
  linked = link.selection;
  await loadArchitecture();
  if (link.strokes.length) { replay(link.strokes); ask(); }
}

const startLink = readLink(); // before anything rewrites the address
langSelect.value = lang;
applyStaticText();
setUpSandbox();
clearPad(false);
loadModels();
