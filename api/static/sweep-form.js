// The sweep form, built from /openapi.json: the base values (SweepBase's fields: every
// trial shares them), one search row per TrainParams field the schema marks "x-search"
// (its range to start from, ticked if "suggested"), and trials, parallel, sampler, pruner
// and seed with SweepRequest's bounds, defaults and choices. "Start sweep" is POST /sweeps.

import { $, $$, el } from "./dom.js";
import { short } from "./format.js";
import { fillInputs, isScalar, paramField, readInputs } from "./schema.js";

/** A value typed in "choices" as the field's type. */
function choiceValue(text, s) {
  if (s.type === "boolean") return text === "true";
  if (s.type === "integer" || s.type === "number") return Number(text);
  return text;
}

const isNumeric = (s) => !s.enum && s.type !== "boolean";

function searchRow(name, s) {
  const hint = s["x-search"];
  const numeric = isNumeric(s);
  const on = el("input", { type: "checkbox", name: "on", checked: Boolean(hint.suggested) });
  const low = el("input", { type: "number", name: "low", step: "any", value: hint.low ?? "", disabled: !numeric });
  const high = el("input", { type: "number", name: "high", step: "any", value: hint.high ?? "", disabled: !numeric });
  const log = el("input", { type: "checkbox", name: "log", checked: Boolean(hint.log), disabled: !numeric });
  const choices = el("input", {
    name: "choices",
    size: 22,
    value: s.enum ? s.enum.join(",") : s.type === "boolean" ? "true,false" : "",
    placeholder: numeric ? "e.g. 50,100,200" : "",
  });
  const row = el(
    "tr",
    {},
    el("td", {}, on),
    el("td", { className: "name", textContent: name, title: s.description || "" }),
    el("td", {}, low),
    el("td", {}, high),
    el("td", {}, log),
    el("td", {}, choices),
  );
  row.dataset.field = name;
  return row;
}

/** Sets an input's bounds and default, or a select's choices, from a SweepRequest field. */
function fromSchema(input, s) {
  if (input.tagName === "SELECT") {
    input.replaceChildren(...s.enum.map((option) => new Option(option, option, false, option === s.default)));
    return;
  }
  if (s.minimum !== undefined) input.min = s.minimum;
  if (s.maximum !== undefined) input.max = s.maximum;
  if (s.default !== undefined && s.default !== null) input.value = s.default;
  input.title = s.description || "";
}

export function mountSweepForm({ api, schema, sweeps }) {
  const form = $("#sweep-form");
  const base = $("#sweep-base");
  const status = $("#sweep-status");
  const fields = new Map(schema.fields("SweepBase").filter(([, s]) => isScalar(s)));
  const train = new Map(schema.fields("TrainParams"));

  const preset = () => $("#sweep-presets input[name=sweep-preset]:checked").value;

  function applyPreset(name) {
    // What each trial gets (as shared/sweeps.resolve does): a sweep's own default
    // (validation_fraction) where it has one, else the preset's value.
    const values = { ...schema.preset(name) };
    for (const [field, s] of fields) {
      const own = train.has(field) && s.default !== train.get(field).default;
      if (own || !(field in values)) values[field] = s.default;
    }
    fillInputs(base, values);
  }

  function markSearched() {
    // A searched field is the sampler's, not the base's: its base input is greyed out.
    const searched = new Set();
    for (const row of $$("#sweep-space tbody tr")) {
      const on = row.querySelector("input[name=on]").checked;
      row.classList.toggle("off", !on);
      if (on) searched.add(row.dataset.field);
    }
    for (const input of base.querySelectorAll("input, select")) input.disabled = searched.has(input.name);
  }

  function body() {
    const space = {};
    for (const row of $$("#sweep-space tbody tr")) {
      if (!row.querySelector("input[name=on]").checked) continue;
      const name = row.dataset.field;
      const s = train.get(name);
      const field = (n) => row.querySelector(`input[name=${n}]`);
      const listed = field("choices").value.split(",").map((c) => c.trim()).filter(Boolean);
      if (isNumeric(s) && field("low").value !== "" && field("high").value !== "") {
        space[name] = { low: Number(field("low").value), high: Number(field("high").value), log: field("log").checked };
      } else if (listed.length) {
        space[name] = { choices: listed.map((c) => choiceValue(c, s)) };
      } else {
        throw new Error(`${name}: give low and high, or choices`);
      }
    }
    if (!Object.keys(space).length) throw new Error("tick at least one field to search");
    const request = {
      base: readInputs(base),
      space,
      trials: Number(form.elements.trials.value),
      parallel: Number(form.elements.parallel.value),
      sampler: form.elements.sampler.value,
      pruner: form.elements.pruner.value,
    };
    if (form.elements.sampler_seed.value !== "") request.seed = Number(form.elements.sampler_seed.value);
    const alias = form.elements.promote.value.trim();
    if (alias) request.promote = { alias };
    return request;
  }

  for (const [name, s] of fields) base.append(paramField(name, s, false));
  for (const [name, s] of train) if (s["x-search"]) $("#sweep-space tbody").append(searchRow(name, s));
  for (const name of ["trials", "parallel", "sampler", "pruner"]) fromSchema(form.elements[name], schema.field("SweepRequest", name));
  fromSchema(form.elements.sampler_seed, schema.field("SweepRequest", "seed"));
  applyPreset(preset());
  markSearched();
  for (const box of $$("#sweep-space input[name=on]")) box.addEventListener("change", markSearched);
  for (const radio of $$("#sweep-presets input[name=sweep-preset]")) {
    radio.addEventListener("change", () => applyPreset(radio.value));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.className = "caption";
    try {
      const request = body();
      status.textContent = "submitting…";
      const accepted = await api.call(`/sweeps?preset=${encodeURIComponent(preset())}`, { method: "POST", json: request });
      status.textContent = `sweep ${short(accepted.id)} submitted: ${request.trials} trials, ${request.parallel} at a time (followed below)`;
      await sweeps.refresh();
      sweeps.select(accepted.id);
    } catch (error) {
      status.className = "caption error";
      status.textContent = error.message;
    }
  });
}
