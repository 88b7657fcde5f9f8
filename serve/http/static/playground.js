// The playground: draw or drop a digit, see the model's answer and its feature maps.
// No libraries, no build step: the page talks to this server's HTTP API only.
"use strict";

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d");
const modelSelect = document.getElementById("model");
const autoInvert = document.getElementById("auto-invert");
const statusLine = document.getElementById("status");
const note = document.getElementById("note");
const CELL = 3; // screen pixels per feature-map cell: valid, same and strided layers keep their sizes
const STROKE = 18;

let drawing = false;
let last = null;
let inFlight = false;
let again = false;
let lastSent = 0;

function clearPad() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, pad.width, pad.height);
  document.getElementById("top-k").replaceChildren();
  document.getElementById("features").replaceChildren();
  document.getElementById("seen").replaceChildren();
  note.textContent = "";
  document.body.dataset.answered = "0";
}

function point(event) {
  const box = pad.getBoundingClientRect();
  return { x: (event.clientX - box.left) * pad.width / box.width, y: (event.clientY - box.top) * pad.height / box.height };
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

pad.addEventListener("pointerdown", (e) => { drawing = true; last = point(e); stroke(point(e)); pad.setPointerCapture(e.pointerId); });
pad.addEventListener("pointermove", (e) => {
  if (!drawing) return;
  stroke(point(e));
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
    const scale = Math.min(pad.width / img.width, pad.height / img.height);
    const w = img.width * scale, h = img.height * scale;
    ctx.drawImage(img, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    URL.revokeObjectURL(img.src);
    ask();
  };
  img.src = URL.createObjectURL(file);
});

document.getElementById("clear").addEventListener("click", clearPad);
modelSelect.addEventListener("change", ask);
autoInvert.addEventListener("change", ask);

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
    const [answer, maps] = await Promise.all([
      post(`/v2/models/${model}/predict?top_k=5&${query}`, blob),
      post(`/v2/models/${model}/features?${query}`, blob),
    ]);
    showAnswer(answer.predictions[0]);
    showFeatures(maps);
    statusLine.textContent = `${answer.model} v${answer.version} on ${answer.execution_provider}`;
    statusLine.className = "";
    document.body.dataset.answered = String(Number(document.body.dataset.answered || 0) + 1);
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
  list.replaceChildren(...prediction.top_k.map((score) => {
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
  if (prediction.inverted) notes.push("inverted (light background): the model learned light strokes on dark");
  if (prediction.framed) notes.push("cropped and centred by mass in a 20 x 20 box, as MNIST's digits were");
  note.textContent = notes.join("; ");
}

// Red for positive, blue for negative, white for 0; one symmetric scale per layer.
function colour(v, scale) {
  const t = Math.max(-1, Math.min(1, v / scale));
  const fade = Math.round(255 * (1 - Math.abs(t)));
  return t >= 0 ? [255, fade, fade] : [fade, fade, 255];
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
  caption.textContent = `what the model sees (${h} x ${w})`;
  document.getElementById("seen").replaceChildren(canvas, caption);
}

function showFeatures(maps) {
  if (maps.input.shape[1] === 1) showInput(maps.input);
  const container = document.getElementById("features");
  container.replaceChildren(...maps.layers.map((layer) => {
    const [, channels, h, w] = layer.shape;
    const scale = Math.max(1e-6, ...layer.data.map(Math.abs));
    const section = document.createElement("div");
    section.className = "layer";
    const title = document.createElement("h3");
    title.textContent = `${layer.name} (${layer.op}, ${channels} x ${h} x ${w}; |max| ${scale.toPrecision(3)})`;
    const row = document.createElement("div");
    row.className = "maps";
    for (let ch = 0; ch < channels; ch++) row.append(drawMap(layer.data, ch * h * w, h, w, scale));
    section.append(title, row);
    return section;
  }));
}

async function loadModels() {
  const response = await fetch("/v2/repository/index", { method: "POST", body: JSON.stringify({ ready: true }) });
  const models = await response.json();
  const choices = [];
  for (const m of models) {
    const meta = await (await fetch(`/v2/models/${encodeURIComponent(m.name)}/versions/${m.version}`)).json();
    const shape = meta.inputs.length === 1 ? meta.inputs[0].shape : [];
    if (shape.length === 4 && (shape[1] === 1 || shape[1] === 3)) choices.push(m.name);
  }
  modelSelect.replaceChildren(...[...new Set(choices)].map((name) => new Option(name, name)));
  const digits = choices.find((name) => name.endsWith("-mnist") && !name.includes("fashion"));
  if (digits) modelSelect.value = digits;
  statusLine.textContent = choices.length ? "draw a digit" : "no image model is served";
}

clearPad();
loadModels();
