// The models table: each model of the registry (as the registry follower publishes it)
// with its aliases as badges, its npz and ONNX downloads (read with the key), and per
// row "use for drawing", "errors", "ancestry", "promote…" (PUT /aliases/{name}, a form
// under the row) and "delete".

import { $, button, el, sayer } from "./dom.js";
import { percent, short, when } from "./format.js";

export function mountModels({ api, store, pad, aliases, ancestry, details }) {
  const say = sayer($("#models-status"));
  let promoting = null; // the open promote form: {id, name, reason}
  let servingAlias = store.get("serving").aliasName;

  function render() {
    const registry = store.get("registry");
    if (!registry) return;
    const body = $("#models tbody");
    body.replaceChildren();
    for (const model of registry.models) body.append(modelRow(model));
    renderPromote();
  }

  function modelRow(model) {
    const p = model.params;
    const row = document.createElement("tr");
    row.dataset.id = model.id;
    row.innerHTML = `<td class="id"><span class="model-id" title="${model.id}">${short(model.id)}</span></td><td class="badges"></td>
      <td class="when">${when(model.created_at)}</td>
      <td>${percent(model.train_accuracy)}</td><td>${percent(model.test_accuracy)}</td>
      <td>n_hidden ${p.n_hidden}, epochs ${p.epochs}, eta ${p.eta}, minibatches ${p.minibatches}${p.train_size ? `, train_size ${p.train_size}` : ""}</td>
      <td class="downloads"></td><td class="actions"></td>`;
    if (model.parent_model_id) {
      // fine-tuned: it descends from its parent (click: the whole ancestry)
      const parent = button(`← ${short(model.parent_model_id)}`, "link parent", () => ancestry.show(model.id));
      parent.dataset.parent = model.parent_model_id;
      parent.title = `fine-tuned from model ${model.parent_model_id}: click for its ancestry`;
      row.querySelector("td.id").append(" ", parent);
    }
    const badges = row.querySelector(".badges");
    for (const name of model.aliases) {
      const badge = el("span", { className: "badge", textContent: name });
      badge.dataset.alias = name;
      if (name === servingAlias) badge.classList.add("serving-badge");
      badges.append(badge, " ");
    }
    if (model.broken) badges.append(el("span", { className: "badge broken", textContent: "broken", title: model.broken }));
    row.querySelector(".downloads").append(
      downloadLink("npz", `/models/${model.id}/download`, "npz", `${model.id}.npz`),
      " · ",
      downloadLink("onnx", `/models/${model.id}/onnx`, "ONNX", `${model.id}.onnx`),
    );
    row.querySelector(".actions").append(
      button("use for drawing", "use", () => pad.use(model.id)),
      " ",
      button("errors", "show-errors", () => details.show(model)),
      " ",
      button("ancestry", "show-ancestry", () => ancestry.show(model.id)),
      " ",
      button("promote…", "promote", () => {
        promoting = promoting && promoting.id === model.id ? null : { id: model.id, name: servingAlias, reason: "" };
        renderPromote("alias");
      }),
      " ",
      button("delete", "delete danger", () => deleteModel(model)),
    );
    row.classList.toggle("selected", model.id === details.current());
    return row;
  }

  function downloadLink(className, href, text, name) {
    // the file is read through the API client (with PROTECT_PREDICT it needs the key, which
    // a plain link does not send), then saved under its name
    const link = el("a", { className, href, textContent: text, download: name });
    link.onclick = async (event) => {
      event.preventDefault();
      try {
        const url = URL.createObjectURL(await api.blob(href));
        el("a", { href: url, download: name }).click();
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
      } catch (error) {
        say(`download ${name}: ${error.message}`, "error");
      }
    };
    return link;
  }

  function renderPromote(focus = null) {
    // One promote form at a time, in a row under its model's; it survives the table's
    // refreshes (with what was typed, and the focus).
    const old = $("#models tr.promote-row");
    if (old && old.contains(document.activeElement)) focus = document.activeElement.name || null;
    old?.remove();
    if (!promoting) return;
    const row = $(`#models tbody tr[data-id="${promoting.id}"]`);
    if (!row) {
      promoting = null;
      return;
    }
    const { id } = promoting;
    const name = el("input", { name: "alias", value: promoting.name, required: true, autocomplete: "off", size: 14 });
    name.setAttribute("list", "alias-names");
    const reason = el("input", { name: "reason", value: promoting.reason, placeholder: "reason (optional)", maxLength: 500, size: 28 });
    name.oninput = () => (promoting.name = name.value);
    reason.oninput = () => (promoting.reason = reason.value);
    const form = el(
      "form",
      { className: "promote-form" },
      el("span", { textContent: "Point alias " }),
      name,
      el("span", { textContent: ` at model ${short(id)} ` }),
      reason,
      el("button", { type: "submit", textContent: "promote" }),
      button("cancel", "", () => {
        promoting = null;
        renderPromote();
      }),
    );
    form.onsubmit = async (event) => {
      event.preventDefault();
      const alias = name.value.trim();
      const body = { model_id: id };
      if (reason.value.trim()) body.reason = reason.value.trim();
      try {
        const answer = await api.call(`/aliases/${encodeURIComponent(alias)}`, { method: "PUT", json: body });
        promoting = null;
        aliases.pick(answer.name);
        say(`${answer.name} → ${short(answer.model_id)}`, "ok");
      } catch (error) {
        say(`promote to ${alias || "(no name)"}: ${error.message}`, "error");
      }
      await store.refresh("registry", "serving");
    };
    const formRow = el("tr", { className: "promote-row" }, el("td", { colSpan: row.cells.length }, form));
    formRow.dataset.for = id;
    row.after(formRow);
    if (focus === "reason") reason.focus();
    else if (focus) name.focus();
  }

  async function deleteModel(model) {
    const pointing = model.aliases.length ? ` Aliases point at it: ${model.aliases.join(", ")}.` : "";
    if (!confirm(`Delete model ${short(model.id)}? Its files are removed for good.${pointing}`)) return;
    try {
      await api.call(`/models/${model.id}`, { method: "DELETE" });
      say(`model ${short(model.id)} deleted`, "ok");
    } catch (error) {
      say(`delete ${short(model.id)}: ${error.message}`, "error");
    }
    await store.refresh("registry", "serving");
  }

  store.watch("registry", render);
  store.watch("registry-error", (message) => say(`could not list models: ${message}`, "error"));
  store.watch("serving", (serving) => {
    if (serving.aliasName === servingAlias) return;
    servingAlias = serving.aliasName; // the badges of the serving alias change colour
    render();
  });
}
