// A model's test-set errors (a models row's "errors" button): its 10x10 confusion matrix
// and its first misclassified test images, from the model's card (GET /models/{id}) and
// the images (GET /dataset/test/{index}). Hidden again when the model leaves the registry.

import { $, $$, digitCanvas, el } from "./dom.js";
import { percent, short } from "./format.js";

function drawConfusion(confusion) {
  const table = $("#confusion");
  table.replaceChildren();
  const head = table.insertRow();
  head.append(el("th", { textContent: "true \\ pred" }));
  for (let p = 0; p < 10; p++) head.append(el("th", { textContent: String(p) }));
  confusion.forEach((counts, truth) => {
    const row = table.insertRow();
    row.append(el("th", { textContent: String(truth) }));
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    counts.forEach((count, predicted) => {
      const cell = row.insertCell();
      cell.textContent = String(count);
      const share = count / total;
      // the diagonal in blue by its share of the row, mistakes in red (stronger: small shares show)
      cell.style.background = truth === predicted
        ? `rgba(37, 99, 235, ${(0.1 + 0.6 * share).toFixed(3)})`
        : count ? `rgba(185, 28, 28, ${Math.min(0.7, 0.08 + 4 * share).toFixed(3)})` : "";
      cell.title = `${count} test images of ${truth} read as ${predicted}`;
    });
  });
}

export function mountModelErrors({ api, store }) {
  const box = $("#model-detail");
  const grid = $("#errors-grid");
  let shown = null; // the model whose errors are shown

  const failed = (message) => grid.replaceChildren(el("p", { className: "error", textContent: message }));

  async function show(summary) {
    shown = summary.id;
    for (const row of $$("#models tbody tr")) row.classList.toggle("selected", row.dataset.id === summary.id);
    box.hidden = false;
    $("#detail-model").textContent = `model ${short(summary.id)}, test accuracy ${percent(summary.test_accuracy)}`;
    grid.replaceChildren();
    grid.dataset.count = "0";
    // the list has summaries: the confusion matrix and the errors are on the model's card
    let model;
    try {
      model = await api.call(`/models/${summary.id}`);
    } catch (error) {
      if (shown !== summary.id) return;
      $("#confusion").replaceChildren();
      $("#errors-caption").textContent = "";
      failed(error.message);
      return;
    }
    if (shown !== summary.id) return; // another model was picked meanwhile
    if (!model.confusion) {
      $("#confusion").replaceChildren();
      $("#errors-caption").textContent = "this model was trained before confusion matrices were stored";
      return;
    }
    drawConfusion(model.confusion);
    const wrong = model.confusion.flat().reduce((a, b) => a + b, 0) - model.confusion.reduce((a, row, i) => a + row[i], 0);
    $("#errors-caption").textContent = `misclassified test images (true → predicted): the first ${model.errors.length} of ${wrong}`;
    try {
      const images = await Promise.all(model.errors.map((e) => api.call(`/dataset/test/${e.index}`)));
      if (shown !== model.id) return;
      images.forEach((image, i) => {
        const error = model.errors[i];
        const figure = el("figure", {}, digitCanvas(image.pixels, `test image ${error.index}`),
          el("figcaption", { textContent: `${error.label} → ${error.predicted}` }));
        figure.dataset.index = String(error.index);
        grid.append(figure);
      });
      grid.dataset.count = String(images.length);
    } catch (error) {
      failed(error.message);
    }
  }

  store.watch("registry", ({ models }) => {
    if (shown && !models.some((m) => m.id === shown)) {
      shown = null; // deleted
      box.hidden = true;
    }
  });
  return { show, current: () => shown };
}
