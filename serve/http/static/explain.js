// The explain panel: one value of a feature map as /explain answers it. For a convolution,
// the window on the layer below (padding drawn), the kernel, the element-wise products and
// sum + bias = value; for a pooling layer, the window and its winner or mean; for a dense
// layer, inputs x weights. Then the activation that follows.
"use strict";

const GRID_DIGITS = 2; // the numbers in the small grids
const EQ_DIGITS = 4; // the numbers of the equations
const TOLERANCE = 5e-5; // half a unit of the last decimal shown: what "equal" means on the page
const MAX_ROWS = 3; // input channels shown in full before "show all"
const DENSE_WIDTH = 12; // a dense layer's vectors, wrapped in rows of this many
const BELOW_PX = 196; // the pictures' size on screen
let showAllChannels = false;

function fmt(v, digits = EQ_DIGITS) {
  const text = v.toFixed(digits);
  return Number(text) === 0 ? (0).toFixed(digits) : text.replace("-", "−");
}

function term(v) { // "+ 0.1234" or "− 0.1234", for a term after the first
  return v < 0 ? `− ${fmt(-v)}` : `+ ${fmt(v)}`;
}

function el(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

function number(key, v) { // a number the test reads back, with its full value beside it
  const b = el("b", "num", fmt(v));
  b.dataset.k = key;
  b.dataset.value = String(v);
  return b;
}

function line(className, ...parts) {
  const p = el("p", className);
  for (const part of parts) p.append(typeof part === "string" ? document.createTextNode(part) : part);
  return p;
}

// Red for positive, blue for negative, white for 0, on one symmetric scale.
function colour(v, scale, strength = 1) {
  const t = Math.max(-1, Math.min(1, v / scale)) * strength;
  const fade = Math.round(255 * (1 - Math.abs(t)));
  return t >= 0 ? [255, fade, fade] : [fade, fade, 255];
}

function css([r, g, b]) { return `rgb(${r},${g},${b})`; }

function maxAbs(values) {
  let m = 1e-6;
  for (const v of values) if (Math.abs(v) > m) m = Math.abs(v);
  return m;
}

// A small table of numbers, coloured by sign; padding cells hatched.
function numberGrid(rows, { padding = null, mark = null, title = null, scale = null } = {}) {
  const table = el("table", "grid");
  const s = scale || maxAbs(rows.flat());
  rows.forEach((row, i) => {
    const tr = table.insertRow();
    row.forEach((v, j) => {
      const td = tr.insertCell();
      if (padding && padding[i][j]) {
        td.className = "pad";
        td.textContent = "0";
      } else {
        td.textContent = fmt(v, GRID_DIGITS);
        td.style.background = css(colour(v, s, 0.75));
      }
      if (mark && mark[0] === i && mark[1] === j) td.classList.add("winner");
      if (title) td.title = title(i, j, v);
    });
  });
  return table;
}

function labelled(label, child) {
  const box = el("div", "labelled");
  box.append(el("span", "grid-label", label), child);
  return box;
}

// A plane of values as a picture: the input image in grey, a feature map in red and blue,
// with the padding drawn around it and the window outlined (each dilated tap dotted).
function planeCanvas(plane, h, w, { pads = [0, 0, 0, 0], rows = null, cols = null, grey = false, cell = null, mark = null } = {}) {
  const [top, left, bottom, right] = pads;
  const fullH = h + top + bottom, fullW = w + left + right;
  const size = cell || Math.max(2, Math.floor(BELOW_PX / Math.max(fullH, fullW)));
  const canvas = el("canvas", "plane");
  canvas.width = fullW * size;
  canvas.height = fullH * size;
  const c = canvas.getContext("2d");
  c.fillStyle = "#e3e3e3";
  c.fillRect(0, 0, canvas.width, canvas.height);
  if (top || left || bottom || right) { // padding: hatched zeros
    c.strokeStyle = "#c4c4c4";
    c.lineWidth = 1;
    for (let d = -canvas.height; d < canvas.width; d += 6) {
      c.beginPath(); c.moveTo(d, canvas.height); c.lineTo(d + canvas.height, 0); c.stroke();
    }
  }
  let low = Infinity, high = -Infinity;
  for (const v of plane) { if (v < low) low = v; if (v > high) high = v; }
  const scale = maxAbs(plane);
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      const v = plane[i * w + j];
      if (grey) {
        const g = Math.round(255 * (v - low) / Math.max(high - low, 1e-6));
        c.fillStyle = `rgb(${g},${g},${g})`;
      } else {
        c.fillStyle = css(colour(v, scale));
      }
      c.fillRect((j + left) * size, (i + top) * size, size, size);
    }
  }
  if (rows && cols && rows.length) {
    const x0 = (cols[0] + left) * size, y0 = (rows[0] + top) * size;
    const x1 = (cols[cols.length - 1] + left + 1) * size, y1 = (rows[rows.length - 1] + top + 1) * size;
    for (const [colourName, width] of [["#000", 4], ["#ffd600", 2]]) {
      c.strokeStyle = colourName;
      c.lineWidth = width;
      c.strokeRect(x0, y0, x1 - x0, y1 - y0);
    }
    const dilated = rows.length > 1 && rows[1] - rows[0] > 1 || cols.length > 1 && cols[1] - cols[0] > 1;
    if (dilated) {
      c.fillStyle = "#ffd600";
      for (const r of rows) for (const q of cols) {
        c.beginPath();
        c.arc((q + left + 0.5) * size, (r + top + 0.5) * size, Math.max(1.5, size / 5), 0, 2 * Math.PI);
        c.fill();
      }
    }
  }
  if (mark) {
    const [y, x] = mark;
    for (const [colourName, width] of [["#000", 4], ["#ffd600", 2]]) {
      c.strokeStyle = colourName;
      c.lineWidth = width;
      c.strokeRect((x + left) * size, (y + top) * size, size, size);
    }
  }
  canvas.dataset.cell = String(size);
  return canvas;
}

function figure(canvas, caption) {
  const f = el("figure");
  f.append(canvas, el("figcaption", "", caption));
  return f;
}

function padsOf(answer) { // [top, left, bottom, right] as the layer pads its input
  const [ay, ax] = answer.axes;
  return [ay.p_begin, ax.p_begin, ay.p_end, ax.p_end];
}

function paddingText(axes) {
  const values = new Set(axes.flatMap((a) => [a.p_begin, a.p_end]));
  if (values.size === 1) return String([...values][0]);
  return axes.map((a) => (a.p_begin === a.p_end ? `${a.p_begin}` : `${a.p_begin}/${a.p_end}`)).join(" × ");
}

function geometryText(answer) {
  const axes = answer.axes;
  const k = axes.map((a) => a.k).join(" × ");
  const s = axes.every((a) => a.s === axes[0].s) ? String(axes[0].s) : axes.map((a) => a.s).join(" × ");
  const d = axes.some((a) => a.d > 1) ? axes.map((a) => a.d).join(" × ") : "";
  const g = (answer.attributes.group || 1) > 1 ? answer.attributes.group : 0;
  return t("geometry", k, s, paddingText(axes), d, g);
}

function spanText(answer) {
  const { rows, cols, padding } = answer.window;
  const span = t("windowSpan", rows[0], rows[rows.length - 1], cols[0], cols[cols.length - 1]);
  return padding.flat().some(Boolean) ? `${span} · ${t("inPadding")}` : span;
}

function layerTitle(ref) {
  return ref ? ref.title : t("theInput");
}

function belowCaption(answer, channel) {
  const source = answer.source;
  const [, , h, w] = source.shape;
  let what = source.layer ? layerTitle(source.layer) : t("theInput");
  if (source.layer && source.via.length) what = t("belowVia", what, source.via.join(" → "));
  const padded = answer.axes.some((a) => a.p_begin || a.p_end);
  return `${t("layerBelow")}: ${t("belowCaption", what, channel, h, w)}; `
    + `${padded ? t("paddingDrawn", paddingText(answer.axes)) : t("noPadding")}; ${t("windowOutlined")}`;
}

function activationLine(answer) {
  const next = answer.activation;
  if (!next) {
    if (!answer.consumers || !answer.consumers.length) return null;
    const ops = answer.consumers.map((c) => `${c.title} (${kindName(c.kind)})`).join(", ");
    return line("activation", t("nextOp", ops));
  }
  const v = fmt(answer.value);
  const formulas = { Relu: `max(0, ${v})`, Tanh: `tanh(${v})`, Sigmoid: `1 / (1 + e^−(${v}))` };
  const formula = formulas[next.layer.op] || `${next.layer.op}(${v})`;
  return line("activation", `${t("then")} ${next.layer.title} (${next.layer.op}): ${formula} = `, number("activation", next.value));
}

function agreement(computed, value) {
  const ok = Math.abs(computed - value) <= TOLERANCE;
  const span = el("span", ok ? "ok" : "bad", ok ? `✓ ${t("agree", TOLERANCE.toFixed(5))}` : `✗ ${t("disagree")}`);
  return span;
}

function heading(answer) {
  const p = answer.position;
  const where = p.y === undefined ? t("unitN", p.channel) : `${t("channelN", p.channel)} · ${t("at", p.y, p.x)}`;
  const h = el("h3", "", `${answer.layer.title} — ${kindName(answer.layer.kind)} · ${where}`);
  return h;
}

// The pictures: the layer below with the window, and the map with the value explained.
function pictures(answer, outputPlane, onPick) {
  const box = el("div", "pictures");
  const source = answer.source;
  const [, , h, w] = source.shape;
  const channel = source.channels[0];
  const below = planeCanvas(source.planes[0].flat(), h, w, {
    pads: padsOf(answer), rows: answer.window.rows, cols: answer.window.cols, grey: !source.layer,
  });
  below.classList.add("below");
  box.append(figure(below, belowCaption(answer, channel)));
  if (outputPlane) {
    const [, , oh, ow] = answer.output_shape;
    const out = planeCanvas(outputPlane, oh, ow, { mark: [answer.position.y, answer.position.x] });
    out.classList.add("output");
    out.addEventListener("click", (event) => {
      const size = Number(out.dataset.cell) * out.getBoundingClientRect().width / out.width;
      onPick(Math.floor(event.offsetY / size), Math.floor(event.offsetX / size));
    });
    box.append(figure(out, t("thisMap", answer.layer.title, answer.position.channel, oh, ow)));
  }
  return box;
}

function convolutionTerms(answer) {
  const box = el("div", "terms");
  const channels = answer.source.channels;
  const shown = showAllChannels ? channels.length : Math.min(channels.length, MAX_ROWS);
  for (let i = 0; i < shown; i++) {
    const row = el("div", "term-row");
    const span = spanText(answer);
    box.append(el("div", "row-label", channels.length > 1 ? `${t("inputChannel", channels[i])} · ${span}` : span));
    const window = answer.window.values[i], kernel = answer.kernel[i], products = answer.products[i];
    const first = i === 0;
    const grid = (label, g) => (first ? labelled(label, g) : labelled("", g));
    row.append(
      grid(t("windowLabel"), numberGrid(window, { padding: answer.window.padding })),
      el("span", "op", "×"),
      grid(t("kernelLabel"), numberGrid(kernel)),
      el("span", "op", "="),
      grid(t("productsLabel"), numberGrid(products, {
        padding: answer.window.padding,
        title: (r, c, v) => `${fmt(window[r][c])} × ${fmt(kernel[r][c])} = ${fmt(v)}`,
      })),
      el("span", "op", "→"),
      labelled(first ? t("partial") : "", number(`channel-sum-${i}`, answer.channel_sums[i])),
    );
    box.append(row);
  }
  if (shown < channels.length) {
    const rest = el("div", "rest");
    rest.append(el("span", "", t("moreChannels", channels.length - shown)));
    const list = el("span", "partials");
    for (let i = shown; i < channels.length; i++) {
      list.append(el("span", "", `${channels[i]}: ${fmt(answer.channel_sums[i])}`));
    }
    const all = el("button", "link", t("showAll", channels.length));
    all.type = "button";
    all.addEventListener("click", () => { showAllChannels = true; renderExplanation(answer); });
    rest.append(list, all);
    box.append(rest);
  }
  return box;
}

function sumLines(answer, count) {
  const products = answer.channel_sums.reduce((a, b) => a + b, 0);
  const parts = [`${t("sumOf", count)} `, number("products-sum", products), " "];
  if (answer.bias === undefined) parts.push(`+ 0 (${t("noBias")})`);
  else if (answer.bias < 0) parts.push(`+ ${t("bias")} (`, number("bias", answer.bias), ")");
  else parts.push(`+ ${t("bias")} `, number("bias", answer.bias));
  parts.push(" = ", number("sum", answer.sum));
  return [line("equation", ...parts),
    line("equation value", `${t(answer.axes.length ? "mapValue" : "unitValue")} `, number("value", answer.value), " ",
      agreement(answer.sum, answer.value))];
}

function poolingTerms(answer) {
  const box = el("div", "terms");
  const row = el("div", "term-row");
  const values = answer.window.values[0];
  const padding = answer.window.padding;
  const count = padding.flat().filter((p) => !p).length;
  box.append(el("div", "row-label", spanText(answer)));
  const label = t("windowLabel");
  if (answer.pool === "max") {
    row.append(labelled(label, numberGrid(values, { padding, mark: answer.winner })),
      el("span", "op", "→"), labelled(t("maxOf", count), number("max", answer.maximum)));
    box.append(row);
    return [box, line("equation value", `${t("mapValue")} `, number("value", answer.value), " ",
      agreement(answer.maximum, answer.value))];
  }
  row.append(labelled(label, numberGrid(values, { padding })), el("span", "op", "→"),
    labelled(t("meanOf", answer.count), line("", number("pool-sum", answer.sum), ` / ${answer.count} = `,
      number("mean", answer.mean))));
  box.append(row);
  return [box, line("equation value", `${t("mapValue")} `, number("value", answer.value), " ",
    agreement(answer.mean, answer.value))];
}

function wrap(vector) {
  const rows = [];
  for (let i = 0; i < vector.length; i += DENSE_WIDTH) rows.push(vector.slice(i, i + DENSE_WIDTH));
  return rows;
}

function denseTerms(answer) {
  const box = el("div", "terms dense");
  const inputs = answer.window.values, weights = answer.kernel, products = answer.products;
  box.append(labelled(t("denseInputs", inputs.length), numberGrid(wrap(inputs))), el("span", "op", "×"),
    labelled(t("denseWeights"), numberGrid(wrap(weights))), el("span", "op", "="),
    labelled(t("productsLabel"), numberGrid(wrap(products), {
      title: (r, c, v) => `${fmt(inputs[r * DENSE_WIDTH + c])} × ${fmt(weights[r * DENSE_WIDTH + c])} = ${fmt(v)}`,
    })));
  return box;
}

// The whole panel for one answer of /explain; outputPlane is the clicked map's channel as drawn.
function renderExplanation(answer, outputPlane = renderExplanation.plane, onPick = renderExplanation.onPick) {
  renderExplanation.plane = outputPlane;
  renderExplanation.onPick = onPick;
  const panel = document.getElementById("explain");
  const parts = [heading(answer)];
  const kind = answer.pool ? (answer.pool === "max" ? "ledeMax" : "ledeAverage") : (answer.axes.length ? "ledeConv" : "ledeDense");
  parts.push(el("p", "lede", t(kind)));
  if (answer.axes.length) parts.push(pictures(answer, outputPlane, onPick));
  if (answer.pool) {
    parts.push(...poolingTerms(answer));
  } else if (answer.axes.length) {
    parts.push(convolutionTerms(answer), ...sumLines(answer, answer.products.flat(2).length));
  } else {
    parts.push(denseTerms(answer), ...sumLines(answer, answer.products.length));
  }
  const next = activationLine(answer);
  if (next) parts.push(next);
  const foot = el("p", "foot", answer.axes.length ? `${geometryText(answer)} · ${t("keys")}` : t("keys"));
  foot.id = "explain-foot";
  parts.push(foot);
  panel.replaceChildren(...parts);
  panel.dataset.layer = answer.layer.name;
}

function showExplainError(message) {
  document.getElementById("explain").replaceChildren(el("p", "bad", message));
}

function showTiming(ms) {
  const foot = document.getElementById("explain-foot");
  if (foot) foot.textContent += ` · ${t("timing", Math.round(ms))}`;
}
