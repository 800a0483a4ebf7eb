// "Your digits": the corrections sent with Right / Wrong (GET /feedback/stats and
// GET /feedback, every 10 s and after each correction), each deletable, the serving
// model's accuracy on them, and the button that fine-tunes the serving model on them
// (POST /jobs; the job is followed by the jobs panel, its states come back as "job").

import { $, $$, button, el } from "./dom.js";
import { JOB_ENDED, percent, progressText, short } from "./format.js";
import { every } from "./store.js";

// The recommended recipe (README, "Learning from corrections"; the CLI's `mnist finetune`).
const RECIPE = { epochs: 3, eta: 0.005, feedback_weight: 50 };
const RECIPE_GATE = { metric: "feedback_accuracy", min_gain: 0.01 };

export function mountFeedback({ api, store, jobs }) {
  const pixelsOf = new Map(); // correction id -> 28x28 pixels (an id names its pixels for good)
  const imageOf = new Map(); // correction id -> its PNG (read with the key) as an object URL, promised
  let finetuning = null; // the fine-tune job the button started, as last seen
  const accuracyLine = $("#feedback-accuracy");

  const head = $("#feedback-counts thead tr");
  const countRow = $("#feedback-counts tbody tr");
  for (let digit = 0; digit < 10; digit++) {
    head.append(el("th", { textContent: String(digit) }));
    const cell = el("td", { textContent: "0" });
    cell.dataset.digit = String(digit);
    countRow.append(cell);
  }
  head.append(el("th", { textContent: "all" }));
  countRow.append(el("td", { textContent: "0", className: "total" }));

  const refresh = api.reader(["/feedback/stats", "/feedback?limit=100"], show, (message) => {
    accuracyLine.textContent = `could not read /feedback: ${message}`;
  });

  async function show([stats, page], newest) {
    for (const cell of $$("#feedback-counts td[data-digit]")) {
      const n = stats.by_label[cell.dataset.digit] || 0;
      cell.textContent = String(n);
      cell.classList.toggle("some", n > 0);
    }
    $("#feedback-counts td.total").textContent = String(stats.total);
    renderGallery(page.items);
    $("#feedback-empty").hidden = page.items.length > 0;
    await showAccuracy(page, newest);
  }

  function renderGallery(items) {
    const grid = $("#feedback-grid");
    grid.replaceChildren();
    for (const item of items) {
      const was = item.predicted === null || item.predicted === undefined ? "" : ` (the model said ${item.predicted})`;
      const image = el("img", { alt: `a ${item.label}${was}`, title: `a ${item.label}${was}` });
      image.width = 28;
      image.height = 28;
      imageUrl(item.id).then((url) => (image.src = url), (error) => (image.title = error.message));
      const remove = button("×", "delete", () => deleteCorrection(item));
      remove.title = "delete this correction";
      const figure = el("figure", {}, image, el("figcaption", {}, el("span", { textContent: String(item.label) }), remove));
      figure.dataset.id = item.id;
      figure.dataset.label = String(item.label);
      grid.append(figure);
    }
    grid.dataset.count = String(items.length);
    const listed = new Set(items.map((item) => item.id));
    for (const [id, url] of imageOf) {
      if (listed.has(id)) continue;
      imageOf.delete(id);
      url.then(URL.revokeObjectURL, () => {});
    }
  }

  function imageUrl(id) {
    // GET /feedback/{id}.png through the API client: with PROTECT_PREDICT it needs the key
    if (!imageOf.has(id)) {
      const url = api.blob(`/feedback/${id}.png`).then(URL.createObjectURL);
      url.catch(() => imageOf.delete(id)); // tried again at the next refresh
      imageOf.set(id, url);
    }
    return imageOf.get(id);
  }

  async function showAccuracy(page, newest) {
    // Computed here, nothing server-side: each correction's pixels (GET /feedback/{id}, kept
    // once read) go as one batch to POST /predict, which the serving model answers.
    const items = page.items;
    if (!items.length) {
      accuracyLine.textContent = "";
      delete accuracyLine.dataset.accuracy;
      return;
    }
    try {
      const missing = items.filter((item) => !pixelsOf.has(item.id));
      const details = await Promise.all(missing.map((item) => api.call(`/feedback/${item.id}`)));
      details.forEach((detail) => pixelsOf.set(detail.id, detail.pixels));
      const images = items.map((item) => pixelsOf.get(item.id));
      const answer = await api.call("/predict", { method: "POST", json: { images } });
      if (!newest()) return;
      let right = 0;
      answer.labels.forEach((label, i) => {
        const hit = label === items[i].label;
        right += hit ? 1 : 0;
        const figure = $(`#feedback-grid figure[data-id="${items[i].id}"]`);
        if (figure) {
          figure.classList.toggle("wrong", !hit);
          figure.dataset.served = String(label);
        }
      });
      const share = right / items.length;
      const which = items.length < page.total ? `the newest ${items.length} of your ${page.total} digits` : `your ${items.length} digit${items.length === 1 ? "" : "s"}`;
      accuracyLine.dataset.accuracy = share.toFixed(4);
      accuracyLine.textContent =
        `The serving model (${short(answer.model_id)}${answer.alias ? ` via ${answer.alias}` : ""}) reads ${right} of ${which} right: ${percent(share)}` +
        " (each correction's pixels sent as one batch to POST /predict; red: read wrong)";
    } catch (error) {
      if (newest()) accuracyLine.textContent = `accuracy on your digits: ${error.message}`;
    }
  }

  async function deleteCorrection(item) {
    try {
      await api.call(`/feedback/${item.id}`, { method: "DELETE" });
      pixelsOf.delete(item.id);
      accuracyLine.textContent = `deleted a ${item.label}`;
    } catch (error) {
      accuracyLine.textContent = `delete: ${error.message}`;
    }
    refresh();
  }

  // ------------------------------------------------ fine-tune the serving model on them

  const finetuneStatus = $("#finetune-status");

  function showFinetune(job) {
    const wasRunning = finetuning && !JOB_ENDED.has(finetuning.status);
    finetuning = { ...finetuning, ...job };
    finetuneStatus.className = `caption status-${finetuning.status}`;
    finetuneStatus.dataset.status = finetuning.status;
    finetuneStatus.dataset.jobId = finetuning.id;
    let text = progressText(finetuning);
    const gate = finetuning.promotion;
    if (gate) text += `; ${gate.promoted ? "promoted to" : "not promoted to"} ${gate.alias}${gate.reason ? `: ${gate.reason}` : ""}`;
    finetuneStatus.textContent = text;
    if (JOB_ENDED.has(job.status) && wasRunning) {
      store.refresh("registry", "serving").then(refresh); // maybe a new serving model
    }
  }

  async function finetune() {
    const serving = store.get("serving");
    const registry = store.get("registry");
    // the serving alias when it exists (resolved by the API at submission), else what serves
    const aliasExists = Boolean(registry) && registry.aliases.some((a) => a.name === serving.aliasName);
    const from = aliasExists ? serving.aliasName : serving.model_id;
    if (!from) {
      finetuneStatus.className = "caption error";
      finetuneStatus.textContent = "no model serves yet: train one first";
      return;
    }
    finetuneStatus.className = "caption";
    finetuneStatus.textContent = "submitting…";
    const body = { init_model: from, ...RECIPE, promote: { alias: serving.aliasName, ...RECIPE_GATE } };
    try {
      const job = await api.call("/jobs?preset=fast", { method: "POST", json: body });
      finetuning = null;
      showFinetune({ id: job.id, status: job.status, epoch: 0, epochs: body.epochs });
      await store.refresh("jobs");
      jobs.select(job.id); // the curve and the jobs table follow it, as for any job
    } catch (error) {
      finetuneStatus.className = "caption error";
      finetuneStatus.textContent = `fine-tune: ${error.message}`;
    }
  }

  $("#finetune-button").addEventListener("click", finetune);
  store.watch("job", (job) => finetuning && job.id === finetuning.id && showFinetune(job));
  store.provide("feedback", refresh);
  every(10_000, refresh);
}
