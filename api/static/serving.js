// The Serving line above the pad: what answers a prediction that names no model, from
// GET /readyz every 5 s (and when a panel asks). Publishes it as "serving":
// {status, model_id, alias, fallback, detail, aliasName}, where aliasName is the serving
// alias's name (SERVING_ALIAS): /readyz names it only while it serves, so the last name
// seen is kept ("production" until then).

import { $ } from "./dom.js";
import { short } from "./format.js";
import { every } from "./store.js";

function servingText(health, aliasName, aliasExists) {
  const s = health.serving;
  if (!s) return `Serving: unknown (${health.detail || health.status})`;
  if (!s.model_id) return s.fallback ? "degraded: no intact model to fall back to" : "Serving: no model yet (train one below)";
  if (s.fallback) {
    const why = aliasExists ? `${aliasName}'s model is unusable` : "a newer model is unusable";
    return `degraded: fell back to model ${short(s.model_id)}, the newest intact one (${why})`;
  }
  if (s.alias) return `Serving: ${s.alias} → ${short(s.model_id)}`;
  return `Serving: newest model ${short(s.model_id)} (no ${aliasName} alias yet)`;
}

export function followServing({ store }) {
  const line = $("#serving");
  let aliasName = "production";

  async function refresh() {
    let health;
    try {
      health = await (await fetch("/readyz")).json();
    } catch (error) {
      health = { status: "unavailable", detail: error.message };
    }
    const s = health.serving || {};
    if (s.alias) aliasName = s.alias;
    const registry = store.get("registry");
    const aliasExists = Boolean(registry) && registry.aliases.some((a) => a.name === aliasName);
    line.dataset.status = health.status;
    line.dataset.modelId = s.model_id || "";
    line.dataset.alias = s.alias || "";
    line.className = `serving serving-${health.status}`;
    line.textContent = servingText(health, aliasName, aliasExists);
    await store.set("serving", {
      status: health.status,
      detail: health.detail,
      model_id: s.model_id || null,
      alias: s.alias || null,
      fallback: Boolean(s.fallback),
      aliasName,
    });
  }

  store.set("serving", { status: "unknown", model_id: null, alias: null, fallback: false, aliasName });
  store.provide("serving", refresh);
  every(5_000, refresh);
}
