// The sweeps list (GET /sweeps, every 3 s) and the sweep on show, followed live
// (GET /sweeps/{id}/events): its trial table, sortable by any column, its plots, with
// each trial's learning curve from its job (GET /jobs/{id}: as trials end, and every
// 3 s while the sweep runs), "promote best" and "cancel sweep".

import { $, $$, button, el } from "./dom.js";
import { JOB_ENDED, fmtParam, percent, short, when } from "./format.js";
import { followEvents } from "./events.js";
import { every } from "./store.js";
import { TRIAL_FINISHED, drawSweepPlots } from "./sweep-plots.js";

const SWEEP_FINISHED = JOB_ENDED; // a sweep moves through a job's states

function sortValue(trial, key) {
  if (key === "number") return trial.number;
  if (key === "state") return trial.state;
  if (key === "value") return trial.value;
  if (key === "epochs") return trial.epochs_run;
  if (key.startsWith("param:")) return trial.params[key.slice(6)];
  return null;
}

function sortedTrials(trials, { key, dir }) {
  return [...trials].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    if (x === y) return a.number - b.number;
    if (x === null || x === undefined) return 1; // no value yet: last either way
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
}

export function mountSweeps({ api, store }) {
  const action = $("#sweep-action");
  let shown = null; // the sweep on show, as its event stream last told
  let follower = null; // aborts that stream
  let sort = { key: "number", dir: 1 };
  const histories = new Map(); // job id -> {rows: [{epoch, val_accuracy}], final} (final once its trial ended)

  function listRow(sweep) {
    // the one on show: as its event stream says (fresher than the list)
    const s = shown && shown.id === sweep.id ? { ...sweep, ...shown } : sweep;
    const done = s.trials.filter((t) => TRIAL_FINISHED.has(t.state)).length;
    const row = el(
      "tr",
      {},
      el("td", { className: "id", textContent: short(s.id), title: s.id }),
      el("td", { className: `status-${s.status}`, textContent: s.status }),
      el("td", { textContent: `${done}/${s.request.trials}` }),
      el("td", { textContent: s.best ? percent(s.best.value) : "–" }),
      el("td", { textContent: when(s.created_at) }),
      el("td"),
    );
    row.dataset.id = s.id;
    row.dataset.status = s.status;
    row.classList.toggle("selected", shown !== null && shown.id === s.id);
    if (!SWEEP_FINISHED.has(s.status)) {
      row.lastElementChild.append(button("cancel", "cancel", (event) => {
        event.stopPropagation();
        cancel(s.id);
      }));
    }
    row.onclick = () => select(s.id);
    return row;
  }

  const refresh = api.reader(["/sweeps?limit=10"], ([page]) => {
    $("#sweeps tbody").replaceChildren(...page.items.map(listRow));
    $("#sweeps-empty").hidden = page.items.length > 0;
  });

  function select(id) {
    if (follower) follower.abort();
    follower = new AbortController();
    const signal = follower.signal;
    shown = { id, status: "queued", trials: [], request: { space: {}, trials: 0 } };
    sort = { key: "number", dir: 1 };
    for (const row of $$("#sweeps tbody tr")) row.classList.toggle("selected", row.dataset.id === id);
    $("#sweep-detail").hidden = false;
    $("#sweep-id").textContent = short(id);
    $("#sweep-id").title = id;
    action.textContent = "";
    if (!$("#promote-alias").value) $("#promote-alias").value = store.get("serving").aliasName;
    render();
    followEvents(api, `/sweeps/${id}/events`, (event, data) => {
      if (signal.aborted) return;
      if (event === "status" || event === "end") {
        shown = data;
      } else if (event === "trial_start" || event === "trial_end") {
        shown = { ...shown, trials: [...shown.trials.filter((t) => t.number !== data.number), data] };
      }
      render();
      if (event === "trial_end" || event === "end") loadHistories(id);
      if (event === "end") {
        refresh();
        store.refresh("registry", "serving"); // its promotion gate may have moved an alias
      }
    }, signal).catch((error) => {
      if (!signal.aborted) $("#sweep-state").textContent = error.message;
    });
  }

  async function loadHistories(id) {
    // Each trial's learning curve is its job's history (GET /jobs/{id}); an ended trial's is final.
    const wanted = shown.trials.filter(
      (t) => t.job_id && (!histories.has(t.job_id) || !TRIAL_FINISHED.has(t.state) || !histories.get(t.job_id).final),
    );
    await Promise.all(wanted.map(async (trial) => {
      try {
        const job = await api.call(`/jobs/${trial.job_id}`);
        histories.set(trial.job_id, { rows: job.history, final: JOB_ENDED.has(job.status) });
      } catch (_) {
        // drawn at the next try
      }
    }));
    if (shown && shown.id === id) drawSweepPlots($("#sweep-plots"), shown, histories);
  }

  async function cancel(id) {
    try {
      await api.call(`/sweeps/${id}/cancel`, { method: "POST" });
      action.className = "caption ok";
      action.textContent = `sweep ${short(id)}: cancelling (running trials stop at their next epoch)`;
    } catch (error) {
      action.className = "caption error";
      action.textContent = `cancel ${short(id)}: ${error.message}`;
    }
    refresh();
  }

  async function promoteBest() {
    const best = shown && shown.best;
    const alias = $("#promote-alias").value.trim() || store.get("serving").aliasName;
    if (!best || !best.model_id) return;
    try {
      const reason = `best trial (#${best.number}) of sweep ${short(shown.id)}`;
      const answer = await api.call(`/aliases/${encodeURIComponent(alias)}`, { method: "PUT", json: { model_id: best.model_id, reason } });
      action.className = "caption ok";
      action.textContent = `${answer.name} → model ${short(answer.model_id)} (trial #${best.number})`;
    } catch (error) {
      action.className = "caption error";
      action.textContent = `promote to ${alias}: ${error.message}`;
    }
    await store.refresh("registry", "serving");
  }

  function header(names) {
    const columns = [["number", "#"], ["state", "state"], ["value", "val acc"], ["epochs", "epochs"],
      ...names.map((n) => [`param:${n}`, n]), ["model", "model"]];
    return columns.map(([key, label]) => {
      const th = el("th", { textContent: label });
      th.dataset.key = key;
      if (key !== "model") {
        th.title = `sort by ${label}`;
        th.onclick = () => {
          sort = { key, dir: sort.key === key ? -sort.dir : 1 };
          render();
        };
      }
      if (sort.key === key) {
        th.classList.add(`sorted-${sort.dir}`);
        th.setAttribute("aria-sort", sort.dir > 0 ? "ascending" : "descending");
      }
      return th;
    });
  }

  function trialRow(trial, names, best) {
    const row = el(
      "tr",
      {},
      el("td", { textContent: String(trial.number) }),
      el("td", { className: `state-${trial.state}`, textContent: trial.state }),
      el("td", { className: "value", textContent: percent(trial.value) }),
      el("td", { textContent: String(trial.epochs_run) }),
      ...names.map((n) => el("td", { textContent: n in trial.params ? fmtParam(trial.params[n]) : "–" })),
      el("td", { className: "id", textContent: short(trial.model_id), title: trial.model_id || "" }),
    );
    row.dataset.number = String(trial.number);
    row.dataset.state = trial.state;
    row.dataset.value = trial.value === null || trial.value === undefined ? "" : String(trial.value);
    row.classList.toggle("best", Boolean(best) && best.number === trial.number);
    return row;
  }

  function render() {
    const sweep = shown;
    const names = Object.keys((sweep.request && sweep.request.space) || {});
    const state = $("#sweep-state");
    state.textContent = sweep.status;
    state.className = `status-${sweep.status}`;
    state.dataset.status = sweep.status;
    const done = sweep.trials.filter((t) => TRIAL_FINISHED.has(t.state)).length;
    const best = sweep.best;
    let text = `${done} of ${sweep.request.trials || "?"} trials ended`;
    if (best) text += `; best: trial #${best.number}, validation accuracy ${percent(best.value)}, model ${short(best.model_id)}`;
    if (sweep.promotion) text += `; ${sweep.promotion.promoted ? "promoted to" : "not promoted to"} ${sweep.promotion.alias}`;
    if (sweep.wall_seconds) text += ` (${sweep.wall_seconds.toFixed(0)} s)`;
    $("#sweep-best").textContent = text;
    $("#sweep-best").dataset.modelId = (best && best.model_id) || "";
    $("#promote-best").disabled = !(best && best.model_id);
    $("#cancel-sweep").hidden = SWEEP_FINISHED.has(sweep.status);
    $("#trials thead tr").replaceChildren(...header(names));
    $("#trials tbody").replaceChildren(...sortedTrials(sweep.trials, sort).map((t) => trialRow(t, names, best)));
    $("#trials").dataset.rows = String(sweep.trials.length);
    drawSweepPlots($("#sweep-plots"), sweep, histories);
  }

  $("#cancel-sweep").addEventListener("click", () => shown && cancel(shown.id));
  $("#promote-best").addEventListener("click", promoteBest);
  store.provide("sweeps", refresh);
  every(3_000, refresh);
  // the running sweep's trials' curves grow between their trial_end events
  every(3_000, () => shown && !SWEEP_FINISHED.has(shown.status) && loadHistories(shown.id));
  return { refresh, select };
}
