// The Aliases panel: each alias of the registry (as the registry follower publishes it)
// with its model, rollback and remove, and one alias's history (GET /aliases/{name},
// read whenever the registry changes): the serving alias's unless another was picked.
// Also fills the alias names the promote boxes suggest (#alias-names).

import { $, $$, button, el, sayer } from "./dom.js";
import { short, when } from "./format.js";

export function mountAliases({ api, store }) {
  const say = sayer($("#models-status"));
  let historyAlias = null; // the alias whose history is shown
  let seq = 0; // the newest history read

  const servingAlias = () => store.get("serving").aliasName;
  const known = () => (store.get("registry") || { aliases: [] }).aliases;

  function render() {
    const aliases = known();
    $("#alias-names").replaceChildren(
      ...[...new Set([servingAlias(), ...aliases.map((a) => a.name)])].map((name) => new Option(name)),
    );
    const body = $("#aliases tbody");
    body.replaceChildren();
    $("#aliases-empty").hidden = aliases.length > 0;
    $("#aliases").hidden = aliases.length === 0;
    for (const alias of aliases) {
      const badge = el("span", { className: "badge", textContent: alias.name });
      if (alias.name === servingAlias()) badge.classList.add("serving-badge");
      const row = el(
        "tr",
        {},
        el("td", {}, badge),
        el("td", { className: "id", textContent: short(alias.model_id), title: alias.model_id }),
        el("td", { textContent: when(alias.updated_at) }),
        el(
          "td",
          {},
          button("history", "history", () => {
            historyAlias = alias.name;
            markRows();
            showHistory();
          }),
          " ",
          button("rollback", "rollback", () => rollback(alias.name)),
          " ",
          button("remove", "remove danger", () => removeAlias(alias.name)),
        ),
      );
      row.dataset.alias = alias.name;
      body.append(row);
    }
    markRows();
  }

  function markRows() {
    for (const row of $$("#aliases tbody tr")) row.classList.toggle("selected", row.dataset.alias === historyAlias);
  }

  async function rollback(name) {
    try {
      const answer = await api.call(`/aliases/${encodeURIComponent(name)}/rollback`, { method: "POST" });
      say(`${name} rolled back to ${short(answer.model_id)}`, "ok");
    } catch (error) {
      say(`rollback ${name}: ${error.message}`, "error");
    }
    historyAlias = name;
    await store.refresh("registry", "serving");
  }

  async function removeAlias(name) {
    if (!confirm(`Remove alias ${name}? Its history goes with it; the model stays.`)) return;
    try {
      await api.call(`/aliases/${encodeURIComponent(name)}`, { method: "DELETE" });
      say(`alias ${name} removed`, "ok");
      if (historyAlias === name) historyAlias = null;
    } catch (error) {
      say(`remove ${name}: ${error.message}`, "error");
    }
    await store.refresh("registry", "serving");
  }

  async function showHistory() {
    // The chosen alias's changes; by default the serving alias's, else the first alias's.
    const aliases = known();
    if (!aliases.some((a) => a.name === historyAlias)) {
      const fallback = aliases.find((a) => a.name === servingAlias()) || aliases[0];
      historyAlias = fallback ? fallback.name : null;
      markRows();
    }
    const box = $("#alias-history");
    if (!historyAlias) {
      box.hidden = true;
      return;
    }
    const name = historyAlias;
    const mine = ++seq;
    let alias;
    try {
      alias = await api.call(`/aliases/${encodeURIComponent(name)}`);
    } catch (error) {
      if (mine === seq) say(`history of ${name}: ${error.message}`, "error");
      return;
    }
    if (mine !== seq || historyAlias !== name) return;
    box.hidden = false;
    box.dataset.alias = name;
    $("#history-alias").textContent = name;
    $("#history tbody").replaceChildren(
      ...alias.history.map((change) => {
        const row = el(
          "tr",
          {},
          el("td", { textContent: when(change.at) }),
          el("td", { className: "id", textContent: short(change.model_id), title: change.model_id }),
          el("td", { className: "id", textContent: short(change.previous_model_id), title: change.previous_model_id || "" }),
          el("td", { className: `source source-${change.source}`, textContent: change.source }),
          el("td", { textContent: change.reason || "" }),
        );
        row.dataset.source = change.source;
        return row;
      }),
    );
  }

  store.watch("registry", () => {
    render();
    return showHistory();
  });
  return {
    /** Shows this alias's history from the registry's next reading on. */
    pick(name) {
      historyAlias = name;
    },
  };
}
