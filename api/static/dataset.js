// The Dataset panel: the first twelve MNIST test images of each digit, read once
// (GET /dataset/samples).

import { $, digitCanvas, el } from "./dom.js";

export async function showDataset({ api }) {
  const grid = $("#dataset-grid");
  try {
    const samples = await api.call("/dataset/samples?per_class=12");
    grid.replaceChildren();
    for (let digit = 0; digit < 10; digit++) {
      const row = el("div", { className: "class-row" }, el("span", { textContent: String(digit) }));
      row.dataset.label = String(digit);
      for (const item of samples.items.filter((s) => s.label === digit)) {
        row.append(digitCanvas(item.pixels, `test image ${item.index}`));
      }
      grid.append(row);
    }
    grid.dataset.count = String(samples.items.length);
  } catch (error) {
    grid.replaceChildren(el("p", { className: "error", textContent: error.message }));
  }
}
