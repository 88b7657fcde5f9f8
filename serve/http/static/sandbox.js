// The padding and stride sandbox, in the browser only: an n x n input, an f x f window,
// valid / same / p padding and stride s; the window slides over the padded input while the
// output cell it makes lights up, the output size comes from ⌊(n + p_begin + p_end − f) / s⌋ + 1,
// and the cells a stride never reaches are shaded. "same" pads as ONNX's SAME_UPPER does:
// out = ⌈n / s⌉, the odd cell of padding at the end.
"use strict";

const SB_CELL = 24;
const sandbox = { step: 0, timer: null };

// A number field's value within its range (what is typed is left alone until the field is left).
function sandboxInt(id, low, high) {
  const v = Math.round(Number(document.getElementById(id).value));
  return Number.isFinite(v) ? Math.max(low, Math.min(high, v)) : low;
}

function sandboxGeometry() {
  const n = sandboxInt("sb-n", 1, 16), f = sandboxInt("sb-f", 1, 9), s = sandboxInt("sb-s", 1, 5);
  const mode = document.getElementById("sb-pad").value;
  const custom = document.getElementById("sb-p");
  custom.hidden = mode !== "number";
  let begin = 0, end = 0;
  if (mode === "number") begin = end = sandboxInt("sb-p", 0, 4);
  if (mode === "same") {
    const total = Math.max(0, (Math.ceil(n / s) - 1) * s + f - n);
    begin = Math.floor(total / 2);
    end = total - begin;
  }
  const span = n + begin + end - f;
  const out = span < 0 ? 0 : Math.floor(span / s) + 1;
  return { n, f, s, mode, begin, end, span, out, uncovered: span < 0 ? 0 : span % s };
}

function sandboxFormula(g) {
  const pad = g.begin === g.end ? `2·${g.begin}` : `${g.begin} + ${g.end}`;
  return `⌊(${g.n} + ${pad} − ${g.f}) / ${g.s}⌋ + 1 = ${g.out}`;
}

function drawSandboxInput(g, oy, ox) {
  const size = g.n + g.begin + g.end;
  const canvas = el("canvas", "sandbox-input");
  canvas.width = canvas.height = size * SB_CELL + 1;
  const c = canvas.getContext("2d");
  const reach = g.out ? (g.out - 1) * g.s + g.f : 0; // padded cells any window reads
  c.font = `${Math.round(SB_CELL * 0.45)}px system-ui, sans-serif`;
  c.textAlign = "center";
  c.textBaseline = "middle";
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) {
      const inPad = i < g.begin || j < g.begin || i >= g.begin + g.n || j >= g.begin + g.n;
      const unread = i >= reach || j >= reach;
      c.fillStyle = unread ? "#f4c7c3" : inPad ? "#dcdcdc" : "#ffffff";
      c.fillRect(j * SB_CELL, i * SB_CELL, SB_CELL, SB_CELL);
      c.strokeStyle = "#9e9e9e";
      c.strokeRect(j * SB_CELL + 0.5, i * SB_CELL + 0.5, SB_CELL, SB_CELL);
      if (inPad) { c.fillStyle = "#757575"; c.fillText("0", (j + 0.5) * SB_CELL, (i + 0.5) * SB_CELL); }
    }
  }
  if (g.out) {
    c.fillStyle = "rgba(25, 118, 210, 0.25)";
    c.fillRect(ox * g.s * SB_CELL, oy * g.s * SB_CELL, g.f * SB_CELL, g.f * SB_CELL);
    c.strokeStyle = "#0d47a1";
    c.lineWidth = 3;
    c.strokeRect(ox * g.s * SB_CELL + 1.5, oy * g.s * SB_CELL + 1.5, g.f * SB_CELL - 2, g.f * SB_CELL - 2);
  }
  return canvas;
}

function drawSandboxOutput(g, oy, ox) {
  const canvas = el("canvas", "sandbox-output");
  canvas.width = canvas.height = Math.max(1, g.out) * SB_CELL + 1;
  const c = canvas.getContext("2d");
  for (let i = 0; i < g.out; i++) {
    for (let j = 0; j < g.out; j++) {
      const done = i * g.out + j <= oy * g.out + ox;
      c.fillStyle = i === oy && j === ox ? "#1976d2" : done ? "#bbdefb" : "#ffffff";
      c.fillRect(j * SB_CELL, i * SB_CELL, SB_CELL, SB_CELL);
      c.strokeStyle = "#9e9e9e";
      c.strokeRect(j * SB_CELL + 0.5, i * SB_CELL + 0.5, SB_CELL, SB_CELL);
    }
  }
  return canvas;
}

function renderSandbox() {
  const g = sandboxGeometry();
  const cells = Math.max(1, g.out * g.out);
  sandbox.step %= cells;
  const oy = Math.floor(sandbox.step / Math.max(1, g.out)), ox = sandbox.step % Math.max(1, g.out);
  const box = document.getElementById("sandbox");
  const pictures = el("div", "pictures");
  pictures.append(figure(drawSandboxInput(g, oy, ox), `${g.n} × ${g.n} + ${t("padding")} (${g.begin}, ${g.end})`),
    figure(drawSandboxOutput(g, oy, ox), g.out ? t("sandboxOutput", g.out) : t("tooBig")));
  const formula = el("p", "equation", sandboxFormula(g));
  formula.id = "sb-formula";
  const notes = [g.mode === "same" ? t("sameNote", g.begin, g.end) : g.mode === "valid" ? t("validNote") : ""];
  if (g.span < 0) notes.push(t("tooBig"));
  else notes.push(g.uncovered ? t("notEven", g.span, g.s, g.uncovered) : t("fitsEvenly"));
  if (g.out) notes.push(t("windowAt", oy, ox));
  const fit = el("p", g.uncovered || g.span < 0 ? "note bad" : "note", notes.filter(Boolean).join(". "));
  fit.id = "sb-fit";
  box.replaceChildren(pictures, formula, fit);
}

function sandboxPlay() {
  const button = document.getElementById("sb-play");
  if (sandbox.timer) {
    clearInterval(sandbox.timer);
    sandbox.timer = null;
  } else {
    sandbox.timer = setInterval(() => { sandbox.step += 1; renderSandbox(); }, 600);
  }
  button.textContent = t(sandbox.timer ? "pause" : "play");
}

function setUpSandbox() {
  for (const id of ["sb-n", "sb-f", "sb-pad", "sb-p", "sb-s"]) {
    const input = document.getElementById(id);
    input.addEventListener("input", () => { sandbox.step = 0; renderSandbox(); });
    if (input.type === "number") {
      input.addEventListener("change", () => { input.value = String(sandboxInt(id, Number(input.min), Number(input.max))); });
    }
  }
  document.getElementById("sb-step").addEventListener("click", () => { sandbox.step += 1; renderSandbox(); });
  document.getElementById("sb-play").addEventListener("click", sandboxPlay);
  renderSandbox();
}
