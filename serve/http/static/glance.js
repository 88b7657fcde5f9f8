// The softmax panel (logits, their exponentials, the probabilities) and the architecture at a
// glance (every layer of the served ONNX file, its output shape, output-size formula and
// parameter count), as /predict and /architecture answer them.
"use strict";

const SOFTMAX_ROWS = 20; // more classes than this: the most probable ones

function shapeText(shape) {
  return shape ? `(N, ${shape.slice(1).join(", ")})` : "";
}

function expText(v) {
  if (v === 0) return "0";
  return v >= 1e5 || v < 1e-3 ? v.toExponential(3).replace("e+", "e").replace("-", "−") : v.toPrecision(4);
}

// logits: every class's score; labels: their names (indices where unknown).
function renderSoftmax(logits, labels, onExplain) {
  const box = document.getElementById("softmax");
  if (!logits) { box.replaceChildren(); return; }
  const top = Math.max(...logits);
  const shifted = top > 80; // e^z would overflow a double past 709; stay far below it
  const exps = logits.map((z) => Math.exp(shifted ? z - top : z));
  const total = exps.reduce((a, b) => a + b, 0);
  let order = logits.map((_, i) => i);
  if (order.length > SOFTMAX_ROWS) order = order.sort((a, b) => logits[b] - logits[a]).slice(0, SOFTMAX_ROWS);
  const table = el("table", "softmax");
  const head = table.createTHead().insertRow();
  for (const key of ["label", "logit", shifted ? "expShifted" : "exp", "probability"]) head.append(el("th", "", t(key)));
  if (onExplain) head.append(el("th"));
  const body = table.createTBody();
  for (const i of order) {
    const row = body.insertRow();
    row.dataset.index = String(i);
    if (logits[i] === top) row.className = "top";
    const p = exps[i] / total;
    const bar = el("span", "bar");
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    const track = el("span", "track");
    track.append(bar);
    const probability = el("td", "prob");
    probability.append(el("span", "", p >= 1e-4 || p === 0 ? p.toFixed(4) : expText(p)), track);
    row.append(el("td", "", labels[i] ?? String(i)), el("td", "num", fmt(logits[i], 3)), el("td", "num", expText(exps[i])),
      probability);
    if (onExplain) {
      const cell = el("td");
      const link = el("button", "link", t("showDense"));
      link.type = "button";
      link.addEventListener("click", () => onExplain(i));
      cell.append(link);
      row.append(cell);
    }
  }
  const foot = table.createTFoot().insertRow();
  foot.append(el("td", "", t("sumRow")), el("td"), el("td", "num", expText(total)), el("td", "prob", "1.0000"));
  box.replaceChildren(table, ...(shifted ? [el("p", "note", t("shiftNote"))] : []));
}

function sameAxes(a, b) {
  return ["n", "k", "s", "d", "p_begin", "p_end", "ceil"].every((key) => a[key] === b[key]);
}

function sizeCell(row) {
  const cell = el("td", "formula");
  const axes = row.axes || [];
  if (!axes.length) return cell;
  const groups = axes.length === 2 && sameAxes(axes[0], axes[1]) ? [[t("both"), axes[0]]]
    : axes.map((a, i) => [i === 0 ? t("axisH") : t("axisW"), a]);
  for (const [name, a] of groups) {
    const p = el("div");
    p.append(el("span", "axis", groups.length > 1 ? `${name}: ` : ""), document.createTextNode(a.formula));
    const notes = [];
    if (a.d > 1) notes.push(t("dilated", a.d, a.k, a.f));
    if (a.ceil) notes.push(t("ceilNote"));
    if (a.uncovered) { // past the last window: input cells, or only the end padding
      const unread = Math.max(0, a.uncovered - a.p_end);
      notes.push(unread ? t("uncoveredNote", unread) : t("paddingLeftOver", a.uncovered));
    }
    if (notes.length) p.append(el("span", "note", ` (${notes.join("; ")})`));
    cell.append(p);
  }
  if (row.size_matches === false) cell.append(el("div", "bad", t("sizeMismatch")));
  return cell;
}

function renderArchitecture(arch, onPick) {
  const box = document.getElementById("architecture");
  if (!arch) { box.replaceChildren(); return; }
  const table = el("table", "architecture");
  const head = table.createTHead().insertRow();
  for (const key of ["layer", "kind", "outputShape", "outputSize", "parameters"]) head.append(el("th", "", t(key)));
  const body = table.createTBody();
  const input = body.insertRow();
  input.className = "input";
  for (const [name, shape] of arch.inputs) {
    input.append(el("td", "", name), el("td", "", kindName("input")), el("td", "", shapeText(shape)), el("td"), el("td", "num", "0"));
  }
  for (const row of arch.rows) {
    const tr = body.insertRow();
    tr.dataset.layer = row.layer.name;
    tr.className = row.params.count || row.axes.length ? "main" : "minor";
    const name = el("td", "", row.layer.title);
    name.title = row.layer.name;
    const params = el("td", "num", row.params.formula || (row.params.count ? row.params.count.toLocaleString("en-US") : "0"));
    if (row.folded) params.append(el("div", "note", t("folded", row.folded)));
    tr.append(name, el("td", "", `${kindName(row.layer.kind)} (${row.layer.op})`), el("td", "shape", shapeText(row.output_shape)),
      sizeCell(row), params);
    if (onPick && ["Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "Gemm"].includes(row.layer.op)) {
      tr.classList.add("pickable");
      tr.addEventListener("click", () => onPick(row));
    }
  }
  const foot = table.createTFoot().insertRow();
  foot.append(el("td", "", t("total")), el("td"), el("td"), el("td"), el("td", "num", arch.total_params.toLocaleString("en-US")));
  const parts = [table];
  if (arch.declared_params && arch.declared_params !== arch.total_params) {
    parts.push(el("p", "note", t("declared", arch.declared_params.toLocaleString("en-US"))));
  }
  box.replaceChildren(...parts);
}
