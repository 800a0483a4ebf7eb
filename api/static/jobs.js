// The jobs table and the learning curve. Follows GET /jobs (every 2 s) and the event
// stream of one job, GET /jobs/{id}/events: the job the user picked (a click, or the one
// the form or the fine-tune button just queued), else the newest job, so that a finished
// training's curve is there without a click. Publishes each job state it learns as "job"
// (the "Start training" and fine-tune lines watch it).

import { drawCurve } from "./curve.js";
import { $, $$, button } from "./dom.js";
import { percent, short } from "./format.js";
import { followEvents } from "./events.js";
import { every } from "./store.js";

export function mountJobs({ api, store }) {
  const canvas = $("#curve");
  const caption = $("#curve-job");
  let picked = null; // the job the user picked; null: the newest job is shown
  let shown = null; // the job whose curve is shown and whose stream is followed
  let follower = null; // aborts that stream
  let curve = { points: [], epochs: 0, empty: "no jobs yet" };
  // The followed job as its stream last told: the caption, the curve and the job's row
  // all show this one state, so they never disagree.
  let live = null;

  function fillRow(row, job) {
    row.dataset.status = job.status;
    row.cells[1].className = `status-${job.status}`;
    row.cells[1].textContent = job.status;
    row.cells[2].textContent = `${job.epoch}/${job.epochs}`;
  }

  function markRows() {
    for (const row of $$("#jobs tbody tr")) {
      row.classList.toggle("selected", row.dataset.id === picked);
      row.classList.toggle("shown", !picked && row.dataset.id === shown);
    }
  }

  function showLive() {
    caption.textContent = `job ${short(live.id)}: ${live.status}, epoch ${live.epoch}/${live.epochs}`;
    const row = $(`#jobs tbody tr[data-id="${live.id}"]`);
    if (row) fillRow(row, live);
    store.set("job", live);
  }

  async function cancel(id) {
    try {
      await api.call(`/jobs/${id}/cancel`, { method: "POST" });
    } catch (error) {
      $("#train-status").textContent = error.message;
    }
    refresh();
  }

  const refresh = api.reader(["/jobs?limit=12"], ([page]) => {
    const body = $("#jobs tbody");
    body.replaceChildren();
    for (const job of page.items) {
      store.set("job", job);
      const row = document.createElement("tr");
      row.dataset.id = job.id;
      row.innerHTML = `<td class="id">${short(job.id)}</td><td></td><td></td><td>${percent(job.test_accuracy)}</td><td></td>`;
      // the followed job's progress comes from its event stream, like the curve beside it
      fillRow(row, live && live.id === job.id ? { ...job, ...live } : job);
      if (job.status === "queued" || job.status === "running") {
        row.lastElementChild.append(button("cancel", "cancel", (event) => {
          event.stopPropagation();
          cancel(job.id);
        }));
      }
      row.onclick = () => select(job.id);
      body.append(row);
    }
    const newest = page.items.length ? page.items[0].id : null;
    if (!picked && newest && newest !== shown) follow(newest);
    markRows();
  });

  function select(id) {
    picked = id;
    follow(id);
  }

  function follow(id) {
    if (follower) follower.abort();
    follower = new AbortController();
    const signal = follower.signal;
    shown = id;
    curve = { points: [], epochs: 0 };
    live = null;
    drawCurve(canvas, curve);
    markRows();
    caption.textContent = `job ${short(id)}`;
    followEvents(api, `/jobs/${id}/events`, (event, data) => {
      if (signal.aborted) return;
      if (event === "epoch") {
        curve.epochs = data.epochs;
        // a job resumed from a checkpoint redoes its later epochs: keep one point per epoch
        curve.points = curve.points.filter((p) => p.epoch < data.epoch);
        curve.points.push({ epoch: data.epoch, cost: data.cost, acc: data.val_accuracy });
        drawCurve(canvas, curve);
        live = { ...(live || { id }), status: "running", epoch: data.epoch, epochs: data.epochs };
        showLive();
      } else if (event === "status" || event === "end") {
        curve.epochs = data.epochs;
        live = { ...data, id };
        showLive();
        if (event === "end") {
          refresh();
          store.refresh("registry", "serving"); // a new model, maybe promoted by the job's gate
        }
      }
    }, signal).then((end) => {
      // the stream gave up (the server away for long): the next refresh follows the newest
      // job again, unless the user picked this one
      if (end === null && !signal.aborted && !picked) shown = null;
    }, (error) => {
      if (!signal.aborted) caption.textContent = error.message;
    });
  }

  drawCurve(canvas, curve);
  store.provide("jobs", refresh);
  every(2_000, refresh);
  return { select };
}
