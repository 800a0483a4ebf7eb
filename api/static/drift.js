// Input drift of the serving model: each summary's histogram in the model's reference
// profile (what it learnt from) against the window of inputs it was served lately
// (GET /models/{id}/drift, every 10 s while the tab shows), with its population
// stability index. Self-contained: an ES module with no imports. It follows what serves
// from GET /readyz itself, or from the page's store ("serving") when given one; with an
// Api (api.js) its reads carry the user's key.
//
//   mountDrift()                  the page's own <script type="module"> does this
//   mountDrift({ api, store })    from main.js, once the page is built of modules

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 240;
const HEIGHT = 96;
const LABELS = {
  ink_mass: "ink mass (lit pixels)",
  bbox_height: "box height (px)",
  bbox_width: "box width (px)",
  centroid_offset: "centre-of-mass offset (px)",
  stroke_intensity: "stroke intensity (0–255)",
  predicted_class: "predicted class",
  top_probability: "top probability",
};

function node(tag, attrs = {}, text = "") {
  const made = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) made.setAttribute(name, value);
  if (text) made.textContent = text;
  return made;
}

function short(id) {
  return id ? id.slice(0, 8) : "";
}

function number(edge) {
  return Number.isInteger(edge) ? String(edge) : String(Number(edge.toPrecision(3)));
}

/** One summary: reference bars (outlined) beside served bars (filled), bin by bin. */
function chart(name, histogram, psi, threshold) {
  const figure = document.createElement("figure");
  figure.className = "drift-chart";
  figure.dataset.summary = name;
  figure.style.cssText = "margin:0 1rem 0.5rem 0;display:inline-block;vertical-align:top;";
  const caption = document.createElement("figcaption");
  caption.style.cssText = "font-size:0.8rem;";
  const moved = psi !== null && psi > threshold;
  caption.textContent = `${LABELS[name] || name}: PSI ${psi === null ? "–" : psi.toFixed(3)}`;
  if (moved) caption.style.color = "var(--bad, #b91c1c)";
  const svg = node("svg", { width: WIDTH, height: HEIGHT + 14, role: "img" });
  svg.append(node("title", {}, `${name}: reference (outlined) against served (filled)`));
  const bins = histogram.reference.length;
  const top = Math.max(...histogram.reference, ...histogram.served, 1e-9);
  const slot = WIDTH / bins;
  for (let i = 0; i < bins; i += 1) {
    const range = `[${number(histogram.edges[i])}, ${number(histogram.edges[i + 1])})`;
    const tip = `${range}: reference ${(100 * histogram.reference[i]).toFixed(1)}%, served ${(100 * histogram.served[i]).toFixed(1)}%`;
    const pair = [
      [histogram.reference[i], "fill:none;stroke:var(--muted, #6b7280)", 1],
      [histogram.served[i], `fill:${moved ? "var(--bad, #b91c1c)" : "var(--accent, #2563eb)"}`, slot / 2],
    ];
    for (const [share, style, shift] of pair) {
      const h = (HEIGHT - 2) * (share / top);
      const bar = node("rect", {
        x: (i * slot + shift).toFixed(1),
        y: (HEIGHT - h).toFixed(1),
        width: Math.max(slot / 2 - 2, 1).toFixed(1),
        height: h.toFixed(1),
        style,
      });
      bar.append(node("title", {}, tip));
      svg.append(bar);
    }
  }
  svg.append(node("line", { x1: 0, y1: HEIGHT, x2: WIDTH, y2: HEIGHT, style: "stroke:var(--line, #e5e7eb)" }));
  const first = number(histogram.edges[0]);
  const last = number(histogram.edges[bins]);
  svg.append(node("text", { x: 0, y: HEIGHT + 12, style: "font-size:10px;fill:var(--muted, #6b7280)" }, first));
  svg.append(
    node("text", { x: WIDTH, y: HEIGHT + 12, "text-anchor": "end", style: "font-size:10px;fill:var(--muted, #6b7280)" }, last),
  );
  figure.append(caption, svg);
  return figure;
}

function summaryLine(report) {
  const model = short(report.model_id);
  if (!report.window) return `Model ${model}: no inputs served yet (reference: ${report.reference_source}).`;
  const since = report.since ? new Date(report.since).toLocaleString() : "";
  const verdict = report.drifted
    ? `drifted: ${report.moved.join(", ")} above ${report.threshold}`
    : report.moved.length
      ? `${report.moved.join(", ")} above ${report.threshold}, but fewer than ${report.min_samples} inputs yet`
      : `no summary above ${report.threshold}`;
  return `Model ${model}: the last ${report.window} inputs (since ${since}) against its reference (${report.reference_source}): ${verdict}.`;
}

export function mountDrift({ api = null, store = null, section = document.getElementById("drift-section"), period = 10_000 } = {}) {
  if (!section) return null;
  const line = section.querySelector(".drift-summary") || section.appendChild(document.createElement("p"));
  line.classList.add("drift-summary", "caption");
  line.setAttribute("aria-live", "polite");
  const charts = section.querySelector(".drift-charts") || section.appendChild(document.createElement("div"));
  charts.classList.add("drift-charts");
  let modelId = null;
  let timer = null;

  const read = async (path) => {
    if (api) return api.call(path);
    const response = await fetch(path);
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(`${response.status} ${(body && body.detail) || "request failed"}`);
    return body;
  };

  async function servingModel() {
    if (store) return (store.get("serving") || {}).model_id || null;
    const health = await (await fetch("/readyz")).json().catch(() => ({}));
    return (health.serving && health.serving.model_id) || null;
  }

  async function refresh() {
    try {
      modelId = await servingModel();
      section.dataset.modelId = modelId || "";
      if (!modelId) {
        line.textContent = "No model serves yet: train one.";
        charts.replaceChildren();
        return;
      }
      const report = await read(`/models/${modelId}/drift`);
      if (report.model_id !== modelId) return; // what serves changed meanwhile
      section.dataset.window = String(report.window);
      section.dataset.drifted = String(report.drifted);
      line.textContent = summaryLine(report);
      line.classList.toggle("error", report.drifted);
      charts.replaceChildren(
        ...Object.entries(report.histograms).map(([name, histogram]) =>
          chart(name, histogram, report.psi[name], report.threshold),
        ),
      );
    } catch (error) {
      line.textContent = `Input drift unavailable: ${error.message}`;
    }
  }

  async function tick() {
    clearTimeout(timer);
    if (document.hidden) return;
    await refresh();
    timer = setTimeout(tick, period);
  }

  document.addEventListener("visibilitychange", () => !document.hidden && tick());
  if (store) store.watch("serving", (serving) => serving && serving.model_id !== modelId && tick());
  tick();
  return { refresh };
}
