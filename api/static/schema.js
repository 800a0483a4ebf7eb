// What the API's schema says, read once: /openapi.json (each field, its bounds, default,
// meaning, and the ones a sweep may search: "x-search") and /presets.json (the values of
// POST /jobs?preset=). The training and sweep forms are built from these, so the page
// keeps no copy of them; the inputs the forms are made of are built here too.

import { el } from "./dom.js";

async function getJson(path) {
  const response = await fetch(path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

export async function loadSchema() {
  const [spec, presets] = await Promise.all([getJson("/openapi.json"), getJson("/presets.json")]);
  return new Schema(spec, presets);
}

export class Schema {
  #spec;
  #presets;

  constructor(spec, presets) {
    this.#spec = spec;
    this.#presets = presets;
  }

  /** ``[name, field]`` for each property of a component, ``$ref`` and nullable resolved. */
  fields(component) {
    const properties = this.#spec.components.schemas[component].properties;
    return Object.entries(properties).map(([name, raw]) => [name, this.resolve(raw)]);
  }

  field(component, name) {
    return this.resolve(this.#spec.components.schemas[component].properties[name]);
  }

  /** Every parameter a preset gives a job (``{}`` for an unknown name). */
  preset(name) {
    return this.#presets[name] || {};
  }

  /** A property with what it refers to merged in; ``optional`` when it may be null. */
  resolve(schema) {
    const ref = schema.$ref || (schema.allOf && schema.allOf.length === 1 && schema.allOf[0].$ref);
    if (ref) return { ...this.#spec.components.schemas[ref.split("/").pop()], ...schema };
    if (schema.anyOf) {
      const real = schema.anyOf.find((s) => s.type !== "null");
      return { ...this.resolve(real), ...schema, optional: true };
    }
    return schema;
  }
}

/** A field a form shows as one input: a choice, a flag or a number (not an object). */
export const isScalar = (s) => Boolean(s.enum) || ["integer", "number", "boolean"].includes(s.type);

/** "1 to 1024", "> 0, 10" or "": the field's bounds as the form writes them. */
export function limits(s) {
  const low = s.minimum !== undefined ? `${s.minimum}` : s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : null;
  const high = s.maximum !== undefined ? `${s.maximum}` : s.exclusiveMaximum !== undefined ? `< ${s.exclusiveMaximum}` : null;
  if (low !== null && high !== null) return low.startsWith(">") || high.startsWith("<") ? `${low}, ${high}` : `${low} to ${high}`;
  return low ?? high ?? "";
}

/**
 * One field as a labelled input with the schema's bounds and default, its range, and
 * (``withMeaning``) the schema's description under its name (the text /docs shows);
 * without, the description is the label's tooltip.
 */
export function paramField(name, s, withMeaning = true) {
  const label = el("label", {}, el("span", { className: "name", textContent: name }));
  if (withMeaning) label.append(el("span", { className: "meaning", textContent: s.description || "" }));
  else label.title = s.description || "";
  let input;
  if (s.enum) {
    input = el("select");
    for (const option of s.enum) input.append(new Option(option, option, false, option === s.default));
  } else if (s.type === "boolean") {
    input = el("input", { type: "checkbox", checked: Boolean(s.default) });
  } else {
    input = el("input", { type: "number", step: s.type === "integer" ? "1" : "any" });
    if (s.minimum !== undefined) input.min = s.minimum;
    if (s.maximum !== undefined) input.max = s.maximum;
    if (s.default !== undefined && s.default !== null) input.value = s.default;
    if (s.optional) input.placeholder = "all";
  }
  input.name = name;
  input.dataset.kind = s.type || "string";
  const range = limits(s);
  const hint = [range && `range ${range}`, s.optional ? "empty: all" : ""].filter(Boolean).join(" · ");
  label.append(input, el("span", { className: "hint", textContent: hint }));
  return label;
}

/** Sets each input of ``box`` to its value in ``values`` (empty where there is none). */
export function fillInputs(box, values) {
  for (const input of box.querySelectorAll("input, select")) {
    const value = values[input.name];
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value === null || value === undefined ? "" : String(value);
  }
}

/** The values of ``box``'s inputs as a request body (empty numbers and disabled inputs left out). */
export function readInputs(box) {
  const body = {};
  for (const input of box.querySelectorAll("input, select")) {
    if (input.disabled) continue;
    if (input.type === "checkbox") body[input.name] = input.checked;
    else if (input.type === "number") {
      if (input.value !== "") body[input.name] = Number(input.value);
    } else body[input.name] = input.value;
  }
  return body;
}
