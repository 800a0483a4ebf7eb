// A model's ancestry: model → parent → grandparent …, walked through GET /models/{id}
// (at most ANCESTRY_STEPS cards), each step's test accuracy and, for a fine-tune, its
// accuracy on the corrections its job held out against its parent's. Walked again when
// the registry's list of models changes (a model came or went).

import { $, el } from "./dom.js";
import { percent, short, when } from "./format.js";

const ANCESTRY_STEPS = 20; // cards read at most: a longer (or looping) chain is cut there

function generation(n) {
  return ["this model", "parent", "grandparent", "great-grandparent"][n] || `${n} generations up`;
}

/** The difference of two accuracies in percentage points, as the page shows them. */
function points(a, b) {
  const d = 100 * (a - b);
  return `${d > 0 ? "+" : d < 0 ? "−" : "±"}${Math.abs(d).toFixed(1)} pts`;
}

function lineageText(card) {
  if (!card.parent_model_id) return "trained from scratch";
  const n = card.feedback_count;
  let text = `fine-tuned from ${short(card.parent_model_id)}${n === null || n === undefined ? "" : ` on ${n} correction${n === 1 ? "" : "s"}`}`;
  if (card.feedback_accuracy === null || card.feedback_accuracy === undefined) return `${text} (none held out to measure on)`;
  text += `; held-out corrections: ${percent(card.feedback_accuracy)}`;
  if (card.parent_feedback_accuracy !== null && card.parent_feedback_accuracy !== undefined) {
    text += ` vs parent ${percent(card.parent_feedback_accuracy)} (${points(card.feedback_accuracy, card.parent_feedback_accuracy)})`;
  }
  return text;
}

/** [{id, card}, …] up the chain, ended by a step without a card: {id, deleted|cycle|more|error}. */
async function walk(api, id) {
  const steps = [];
  const seen = new Set();
  let next = id;
  while (next) {
    if (seen.has(next)) {
      steps.push({ id: next, cycle: true });
      break;
    }
    if (steps.length >= ANCESTRY_STEPS) {
      steps.push({ id: next, more: true });
      break;
    }
    seen.add(next);
    try {
      const card = await api.call(`/models/${next}`);
      steps.push({ id: next, card });
      next = card.parent_model_id;
    } catch (error) {
      steps.push(error.message.startsWith("404") ? { id: next, deleted: true } : { id: next, error: error.message });
      break;
    }
  }
  return steps;
}

function stepRow(step, n) {
  const row = el("tr", {}, el("td", { className: "generation", textContent: generation(n) }));
  row.dataset.id = step.id;
  const idCell = el("td", { className: "id", textContent: short(step.id), title: step.id });
  const card = step.card;
  if (card) {
    row.dataset.state = card.parent_model_id ? "fine-tuned" : "root";
    row.dataset.testAccuracy = String(card.test_accuracy ?? "");
    row.append(
      idCell,
      el("td", { className: "when", textContent: when(card.created_at) }),
      el("td", { className: "test-acc", textContent: percent(card.test_accuracy) }),
      el("td", { className: "lineage", textContent: lineageText(card) }),
    );
    return row;
  }
  const why = step.deleted
    ? "deleted: its card is gone, so the chain ends here"
    : step.cycle
      ? `a loop: ${short(step.id)} is already above, the chain ends here`
      : step.more
        ? `not read: the page stops after ${ANCESTRY_STEPS} models`
        : `could not read its card: ${step.error}`;
  row.dataset.state = step.deleted ? "deleted" : step.cycle ? "cycle" : step.more ? "more" : "error";
  row.className = "ended";
  row.append(idCell, el("td", { textContent: "–" }), el("td", { className: "test-acc", textContent: "–" }),
    el("td", { className: "lineage", textContent: why }));
  return row;
}

export function mountAncestry({ api, store }) {
  const box = $("#ancestry");
  let of = null; // the model whose ancestry is shown
  let listed = ""; // the listed models' ids when it was last walked
  let seq = 0;

  async function show(id) {
    const mine = ++seq;
    of = id;
    box.hidden = false;
    box.dataset.model = id;
    $("#ancestry-model").textContent = short(id);
    $("#ancestry-model").title = id;
    $("#ancestry-summary").textContent = "reading the model cards…";
    const steps = await walk(api, id);
    if (mine !== seq) return; // another model was picked meanwhile
    $("#ancestry-table tbody").replaceChildren(...steps.map(stepRow));
    const read = steps.filter((s) => s.card).length;
    const last = steps[steps.length - 1];
    const chain = steps.map((s) => short(s.id) + (s.deleted ? " (deleted)" : "")).join(" → ");
    const end = last.card ? `${short(last.id)} was trained from scratch`
      : last.deleted ? `${short(last.id)} was deleted` : "the walk stopped early";
    $("#ancestry-summary").textContent = `${chain} (${read} model${read === 1 ? "" : "s"} read; ${end})`;
    box.dataset.steps = String(steps.length);
  }

  $("#ancestry-close").addEventListener("click", () => {
    of = null;
    seq++;
    box.hidden = true;
  });
  store.watch("registry", ({ models }) => {
    const ids = models.map((m) => m.id).join();
    if (of && ids !== listed) show(of); // a model came or went
    listed = ids;
  });
  return { show };
}
