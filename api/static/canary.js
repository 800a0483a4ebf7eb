// The serving alias's running canary or shadow split, beside the serving line: the
// candidate, its percent (or "shadow"), the agreement and the requests per side, with
// Promote and Abort buttons (GET/DELETE /aliases/{name}/canary, POST .../promote). It
// reads the serving alias from the store ("serving") and, after a promotion or an abort,
// asks for what serves and the registry afresh.

const short = (id) => String(id).slice(0, 8);
const percent = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);

function interval(pair) {
  return pair ? ` (95%: ${percent(pair[0])}–${percent(pair[1])})` : "";
}

/** One line a person reads: what runs and how it does so far. */
export function describe(split) {
  const { primary, canary, shadow } = split.stats;
  const parts = [];
  if (split.mode === "canary") {
    parts.push(`Canary: ${short(split.model_id)} answers ${split.percent}%`);
    parts.push(`requests ${primary.requests} primary / ${canary.requests} canary`);
  } else {
    parts.push(`Shadow: ${short(split.model_id)} predicts beside ${short(split.primary_model_id)}`);
  }
  if (shadow.compared || split.mode === "shadow") {
    parts.push(`agreement ${percent(shadow.agreement)} of ${shadow.compared} images${interval(shadow.agreement_interval)}`);
    if (shadow.dropped) parts.push(`${shadow.dropped} dropped`);
  }
  for (const [name, side] of [["primary", primary], ["canary", canary]]) {
    if (side.corrections) parts.push(`${name} right ${percent(side.accuracy)} of ${side.corrections} corrected`);
  }
  return parts.join(" · ");
}

/** Shows the split under the serving line, read again each time what serves is (every 5 s). */
export function mountCanary({ api, store, line = document.querySelector("#serving") }) {
  let panel = document.querySelector("#canary");
  if (!panel) {
    panel = Object.assign(document.createElement("div"), { id: "canary", className: "canary", hidden: true });
    line.after(panel);
  }
  panel.setAttribute("aria-live", "polite");
  const text = Object.assign(document.createElement("span"), { className: "canary-text" });
  const promote = Object.assign(document.createElement("button"), { type: "button", textContent: "Promote" });
  const abort = Object.assign(document.createElement("button"), { type: "button", textContent: "Abort", className: "danger" });
  const status = Object.assign(document.createElement("span"), { className: "caption canary-status" });
  panel.replaceChildren(text, promote, abort, status);
  let name = null;
  let split = null;

  async function refresh() {
    try {
      name = store.get("serving")?.alias ?? null;
      split = name ? await api.call(`/aliases/${name}/canary`) : null;
    } catch (error) {
      split = null; // 404: no split on the alias
      if (error.status !== 404) status.textContent = error.message;
    }
    panel.hidden = !split;
    panel.dataset.mode = split ? split.mode : "";
    panel.dataset.modelId = split ? split.model_id : "";
    if (split) text.textContent = describe(split);
  }

  async function act(what, path, method, confirmText) {
    if (!split || !window.confirm(confirmText)) return;
    status.textContent = `${what}…`;
    try {
      await api.call(path, { method });
      status.textContent = "";
      await refresh();
      store.refresh("serving", "registry");
    } catch (error) {
      status.textContent = error.message;
    }
  }

  promote.onclick = () =>
    act("promoting", `/aliases/${name}/canary/promote`, "POST",
      `Make ${short(split.model_id)} the target of ${name} and end the split?`);
  abort.onclick = () =>
    act("aborting", `/aliases/${name}/canary`, "DELETE", `End the split on ${name}? ${name} keeps its model.`);

  store.watch("serving", refresh);
  return { refresh };
}
