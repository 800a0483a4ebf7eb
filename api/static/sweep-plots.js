// A sweep's plots as SVG (each point an element): validation accuracy against each
// searched parameter, the best so far against the trial number, and the trials'
// learning curves. Drawing only: the sweeps panel hands over the sweep and the histories.

import { el } from "./dom.js";
import { fmtParam, percent } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const PLOT = { width: 300, height: 200, left: 42, right: 10, top: 10, bottom: 32 };
const INNER = PLOT.width - PLOT.left - PLOT.right;
const CURVE_COLORS = ["#2563eb", "#ea7317", "#15803d", "#9333ea", "#db2777", "#0891b2", "#ca8a04", "#4b5563"];
export const TRIAL_FINISHED = new Set(["complete", "pruned", "failed", "cancelled"]);

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

function axisRange(values, pad = 0.02) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo)) return [0, 1];
  if (hi - lo < 1e-9) {
    lo -= 0.01;
    hi += 0.01;
  }
  return [Math.max(0, lo - pad), Math.min(1, hi + pad)];
}

function plotFrame(kind, title, xLabel, [ylo, yhi], xTicks) {
  // A figure with an empty plot: axes, tick labels; returns it and its y scale.
  const { width, height, left, top, bottom } = PLOT;
  const h = height - top - bottom;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  root.dataset.plot = kind;
  root.append(svg("rect", { x: left, y: top, width: INNER, height: h, fill: "none", stroke: "#d1d5db" }));
  const y = (v) => top + h - ((v - ylo) / (yhi - ylo)) * h;
  root.append(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, percent(yhi)));
  root.append(svg("text", { x: left - 4, y: top + h, "text-anchor": "end" }, percent(ylo)));
  for (const [px, label] of xTicks) {
    // at the frame's edges a label runs inwards, not out of the picture
    const anchor = px <= left + 1 ? "start" : px >= left + INNER - 1 ? "end" : "middle";
    root.append(svg("text", { x: px, y: top + h + 12, "text-anchor": anchor }, label));
  }
  root.append(svg("text", { x: left + INNER / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  const figure = el("figure", {}, root, el("figcaption", { textContent: title }));
  figure.dataset.plot = kind;
  return { figure, root, y };
}

function paramScale(name, spec, values) {
  // x position of a parameter's value: log axis where the range is log, evenly spaced choices.
  const { left } = PLOT;
  if (spec.choices) {
    const n = spec.choices.length;
    const at = (v) => left + ((spec.choices.findIndex((c) => c === v) + 0.5) / n) * INNER;
    return { x: at, ticks: spec.choices.map((c) => [at(c), String(c)]), label: name };
  }
  const lo = Math.min(spec.low, ...values);
  const hi = Math.max(spec.high, ...values);
  const t = spec.log ? Math.log : (v) => v;
  const span = t(hi) - t(lo) || 1;
  const x = (v) => left + ((t(v) - t(lo)) / span) * INNER;
  return { x, ticks: [[x(lo), fmtParam(lo)], [x(hi), fmtParam(hi)]], label: spec.log ? `${name} (log scale)` : name };
}

function paramPlots(sweep, scored, yRange) {
  // validation accuracy against each searched parameter
  const best = sweep.best;
  return Object.entries((sweep.request && sweep.request.space) || {}).map(([name, spec]) => {
    const scale = paramScale(name, spec, scored.map((t) => t.params[name]).filter((v) => typeof v === "number"));
    const plot = plotFrame(`param-${name}`, `validation accuracy by ${name}`, scale.label, yRange, scale.ticks);
    for (const trial of scored) {
      const cls = trial.state === "pruned" ? "pt pruned" : best && best.number === trial.number ? "pt best" : "pt";
      const dot = svg("circle", { cx: scale.x(trial.params[name]), cy: plot.y(trial.value), r: 4, class: cls });
      dot.append(svg("title", {}, `trial #${trial.number}: ${name} ${fmtParam(trial.params[name])}, ${percent(trial.value)} (${trial.state})`));
      plot.root.append(dot);
    }
    plot.root.dataset.points = String(scored.length);
    return plot.figure;
  });
}

function bestPlot(sweep, yRange) {
  // best so far against trial number (complete trials choose the best)
  const total = Math.max(sweep.request.trials || 0, ...sweep.trials.map((t) => t.number + 1), 1);
  const xN = (n) => PLOT.left + (total === 1 ? 0.5 : n / (total - 1)) * INNER;
  const plot = plotFrame("best", "best validation accuracy so far, by trial number", "trial", yRange,
    [[xN(0), "0"], [xN(total - 1), String(total - 1)]]);
  let running = null;
  const steps = [];
  for (const trial of [...sweep.trials].sort((a, b) => a.number - b.number)) {
    if (!TRIAL_FINISHED.has(trial.state)) continue;
    if (trial.state === "complete" && trial.value !== null) running = running === null ? trial.value : Math.max(running, trial.value);
    if (running === null) continue;
    steps.push([xN(trial.number), plot.y(running)]);
    const dot = svg("circle", { cx: xN(trial.number), cy: plot.y(running), r: 3.5, class: "pt best" });
    dot.append(svg("title", {}, `after trial #${trial.number}: ${percent(running)}`));
    plot.root.append(dot);
  }
  if (steps.length > 1) plot.root.prepend(svg("polyline", { class: "step", points: steps.map((p) => p.join(",")).join(" ") }));
  plot.root.dataset.points = String(steps.length);
  return plot.figure;
}

function curvesPlot(sweep, histories) {
  // the trials' learning curves (validation accuracy per epoch), pruned ones fainter
  const curves = sweep.trials
    .filter((t) => t.job_id && histories.has(t.job_id))
    .map((t) => ({ trial: t, rows: histories.get(t.job_id).rows.filter((r) => r.val_accuracy !== null && r.val_accuracy !== undefined) }))
    .filter((c) => c.rows.length);
  const epochs = Math.max(1, ...curves.flatMap((c) => c.rows.map((r) => r.epoch)), (sweep.base && sweep.base.epochs) || 1);
  const range = axisRange(curves.flatMap((c) => c.rows.map((r) => r.val_accuracy)));
  const xE = (e) => PLOT.left + (epochs === 1 ? 0.5 : (e - 1) / (epochs - 1)) * INNER;
  const plot = plotFrame("curves", "learning curves: validation accuracy per epoch (pruned: faint)", "epoch", range,
    [[xE(1), "1"], [xE(epochs), String(epochs)]]);
  for (const { trial, rows } of curves) {
    const line = svg("polyline", {
      class: `curve ${trial.state === "pruned" ? "pruned" : ""}`.trim(),
      stroke: CURVE_COLORS[trial.number % CURVE_COLORS.length],
      points: rows.map((r) => `${xE(r.epoch)},${plot.y(r.val_accuracy)}`).join(" "),
    });
    line.dataset.number = String(trial.number);
    line.append(svg("title", {}, `trial #${trial.number} (${trial.state})`));
    plot.root.append(line);
  }
  plot.root.dataset.curves = String(curves.length);
  return plot.figure;
}

/** Fills ``box`` with the sweep's plots (hidden while it has no trial). */
export function drawSweepPlots(box, sweep, histories) {
  if (!sweep || !sweep.trials.length) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.hidden = false;
  const scored = sweep.trials.filter((t) => t.value !== null && t.value !== undefined);
  const yRange = axisRange(scored.map((t) => t.value));
  box.replaceChildren(...paramPlots(sweep, scored, yRange), bestPlot(sweep, yRange), curvesPlot(sweep, histories));
}
