// mnist-service web page: plain JavaScript, no build step, no dependencies.
// Talks to the same API as every other client: /predict/image, /predict, /feedback, /jobs,
// /jobs/{id}/events, /sweeps, /sweeps/{id}/events, /models, /aliases, /readyz (what serves), /openapi.json (the training form's fields, limits and meanings) and
// /presets.json (the values of POST /jobs?preset=fast|book).
"use strict";

const $ = (selector) => document.querySelector(selector);
const KEY_STORE = "mnist-api-key";
let apiKey = sessionStorage.getItem(KEY_STORE) || "";

// ---------------------------------------------------------------- HTTP and the API key

function errorText(status, body) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) {
    return detail
      .map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${e.msg}`)
      .join("; ");
  }
  return `${status} ${detail || "request failed"}`;
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (apiKey) headers["X-API-Key"] = apiKey;
  return headers;
}

async function api(path, options = {}, mayAsk = true) {
  return (await apiAnswer(path, options, mayAsk)).body;
}

// The status as well as the body (POST /feedback: 201 new, 200 sent before).
async function apiAnswer(path, options = {}, mayAsk = true) {
  const response = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  if (response.status === 401 && mayAsk && (await askForKey())) {
    return apiAnswer(path, options, false);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) throw new Error(errorText(response.status, body));
  return { status: response.status, body };
}

let keyPrompt = null;
function askForKey() {
  // One dialog at a time; every request that got a 401 waits for the same answer.
  if (keyPrompt) return keyPrompt;
  const dialog = $("#key-dialog");
  keyPrompt = new Promise((resolve) => {
    const done = (ok) => {
      dialog.close();
      keyPrompt = null;
      resolve(ok);
    };
    $("#key-ok").onclick = (event) => {
      event.preventDefault();
      apiKey = $("#key-input").value.trim();
      sessionStorage.setItem(KEY_STORE, apiKey);
      done(Boolean(apiKey));
    };
    $("#key-cancel").onclick = () => done(false);
    dialog.oncancel = () => done(false);
    $("#key-input").value = apiKey;
    dialog.showModal();
    $("#key-input").focus();
  });
  return keyPrompt;
}

// Server-Sent Events over fetch (EventSource cannot send the API key header).
async function followEvents(path, onEvent, signal) {
  let last = null;
  for (let attempt = 0; attempt < 8 && !signal.aborted; attempt++) {
    const headers = authHeaders(last ? { "Last-Event-ID": last } : {});
    try {
      const response = await fetch(path, { headers, signal });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw Object.assign(new Error(errorText(response.status, body)), { fatal: true });
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = "message";
      let data = [];
      let id = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, "");
          buffer = buffer.slice(newline + 1);
          if (line === "") {
            if (data.length) {
              const payload = JSON.parse(data.join("\n"));
              if (id) last = id;
              onEvent(event, payload);
              if (event === "end") return payload;
            }
            event = "message";
            data = [];
            id = null;
          } else if (!line.startsWith(":")) {
            const colon = line.indexOf(":");
            const field = colon < 0 ? line : line.slice(0, colon);
            const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
            if (field === "event") event = val;
            else if (field === "data") data.push(val);
            else if (field === "id") id = val;
          }
        }
      }
    } catch (error) {
      if (signal.aborted || error.fatal) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(4000, 250 * 2 ** attempt)));
  }
  return null;
}

// ---------------------------------------------------------------- drawing pad

const pad = $("#pad");
const ink = pad.getContext("2d");
const BRUSH = 20; // px on the 280x280 pad: about 2 MNIST pixels, like a pen stroke
let drawing = null;
let strokes = 0;
let predictTimer = null;
let predictSeq = 0;

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
  strokes = 0;
  pad.dataset.strokes = "0";
  $("#pad-hint").hidden = false; // an empty pad says what it is for
  showResult(null);
}

function padPoint(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

function strokeTo(point) {
  ink.strokeStyle = "#000";
  ink.lineWidth = BRUSH;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.beginPath();
  ink.moveTo(drawing.x, drawing.y);
  ink.lineTo(point.x, point.y);
  ink.stroke();
  drawing = point;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  drawing = padPoint(event);
  $("#pad-hint").hidden = true;
  strokeTo(drawing); // a dot
  clearTimeout(predictTimer);
});
pad.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of events.length ? events : [event]) strokeTo(padPoint(e));
});
function endStroke() {
  if (!drawing) return;
  drawing = null;
  strokes += 1;
  pad.dataset.strokes = String(strokes);
  clearTimeout(predictTimer);
  predictTimer = setTimeout(predictPad, 150);
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);
$("#clear").addEventListener("click", clearPad);

function predictPad() {
  const forStrokes = strokes;
  pad.toBlob((blob) => predictImage(blob, "pad.png", String(forStrokes)), "image/png");
}

async function predictImage(blob, name, source) {
  const seq = ++predictSeq;
  const form = new FormData();
  form.append("file", blob, name);
  const model = $("#model-picker").value;
  if (model.startsWith("alias:")) form.append("alias", model.slice(6));
  else if (model) form.append("model_id", model);
  $("#predict-status").textContent = "classifying…";
  try {
    const result = await api("/predict/image", { method: "POST", body: form });
    if (seq !== predictSeq) return; // a newer drawing is on its way
    showResult(result, source);
    // which model answered, and through which alias
    const status = $("#predict-status");
    status.textContent = `model ${result.model_id.slice(0, 8)}${result.alias ? ` via ${result.alias}` : ""}`;
    status.dataset.modelId = result.model_id;
    status.dataset.alias = result.alias || "";
    // the default answered from another model than the line above says: it changed (or fell back)
    if (!model && result.model_id !== $("#serving").dataset.modelId) refreshAll();
  } catch (error) {
    if (seq !== predictSeq) return;
    showResult(null, source);
    $("#predict-status").innerHTML = "";
    $("#predict-status").append(Object.assign(document.createElement("span"), {
      className: "error",
      textContent: error.message,
    }));
  }
}

$("#upload").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) predictImage(file, file.name, `upload:${file.name}`);
  event.target.value = "";
});

function buildBars() {
  const bars = $("#bars");
  for (let digit = 0; digit < 10; digit++) {
    const li = document.createElement("li");
    li.innerHTML = `<span>${digit}</span><span class="bar"><span class="fill"></span></span><span class="p">–</span>`;
    bars.append(li);
  }
}

function showResult(result, source = "") {
  showFeedbackBar(result);
  const label = $("#label");
  label.textContent = result ? String(result.label) : "–";
  label.dataset.for = source;
  $("#bars").querySelectorAll("li").forEach((li, digit) => {
    const p = result ? result.probabilities[digit] : 0;
    li.classList.toggle("top", Boolean(result) && digit === result.label);
    li.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
    li.querySelector(".p").textContent = result ? `${(100 * p).toFixed(1)}%` : "–";
  });
  const seen = $("#seen").getContext("2d");
  const image = seen.createImageData(28, 28);
  if (result) {
    result.pixels.flat().forEach((v, i) => {
      image.data.set([v, v, v, 255], 4 * i);
    });
  } else {
    for (let i = 0; i < 28 * 28; i++) image.data.set([0, 0, 0, 255], 4 * i);
  }
  seen.putImageData(image, 0, 0);
}

// ---------------------------------------------------------------- corrections: Right / Wrong? It is

// The answer the buttons correct: the 28x28 pixels the model saw, its label and model.
let answered = null;

function buildFeedbackButtons() {
  const box = $("#wrong-digits");
  for (let digit = 0; digit < 10; digit++) {
    const b = button(String(digit), "digit", () => sendFeedback(digit));
    b.dataset.digit = String(digit);
    b.title = `it is a ${digit}`;
    box.append(b);
  }
  $("#right-button").addEventListener("click", () => answered && sendFeedback(answered.label));
}

function showFeedbackBar(result) {
  answered = result ? { pixels: result.pixels, label: result.label, model_id: result.model_id } : null;
  $("#feedback-bar").hidden = !result;
  const status = $("#feedback-status");
  status.textContent = "";
  status.className = "caption";
  delete status.dataset.state;
}

async function sendFeedback(label) {
  if (!answered) return;
  const sent = answered;
  const status = $("#feedback-status");
  status.className = "caption";
  status.textContent = "saving…";
  const body = { pixels: sent.pixels, label, model_id: sent.model_id, predicted: sent.label };
  try {
    const answer = await apiAnswer("/feedback", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (answered !== sent) return; // a newer answer is shown: its buttons are fresh
    const fresh = answer.status === 201;
    status.className = "caption saved";
    status.dataset.state = fresh ? "saved" : "already";
    status.textContent = `${fresh ? "saved" : "already saved"}: a ${label}${label === sent.label ? " (right)" : ""}`;
  } catch (error) {
    if (answered !== sent) return;
    status.className = "caption error";
    status.textContent = error.message;
  }
  refreshFeedback();
}

// ---------------------------------------------------------------- Your digits

let feedbackSeq = 0;
const correctionPixels = new Map(); // id -> 28x28 pixels (an id names its pixels for good)
let finetuning = null; // the fine-tune job the button started, as last seen

function buildFeedbackCounts() {
  const head = $("#feedback-counts thead tr");
  const row = $("#feedback-counts tbody tr");
  for (let digit = 0; digit < 10; digit++) {
    head.append(el("th", { textContent: String(digit) }));
    const cell = el("td", { textContent: "0" });
    cell.dataset.digit = String(digit);
    row.append(cell);
  }
  head.append(el("th", { textContent: "all" }));
  row.append(Object.assign(el("td", { textContent: "0" }), { className: "total" }));
}

async function refreshFeedback() {
  const seq = ++feedbackSeq;
  let stats;
  let page;
  try {
    [stats, page] = await Promise.all([api("/feedback/stats"), api("/feedback?limit=100")]);
  } catch (error) {
    if (seq === feedbackSeq) $("#feedback-accuracy").textContent = `could not read /feedback: ${error.message}`;
    return;
  }
  if (seq !== feedbackSeq) return;
  for (const cell of document.querySelectorAll("#feedback-counts td[data-digit]")) {
    const n = stats.by_label[cell.dataset.digit] || 0;
    cell.textContent = String(n);
    cell.classList.toggle("some", n > 0);
  }
  $("#feedback-counts td.total").textContent = String(stats.total);
  renderCorrections(page.items);
  $("#feedback-empty").hidden = page.items.length > 0;
  await showFeedbackAccuracy(page, seq);
}

function renderCorrections(items) {
  const grid = $("#feedback-grid");
  grid.replaceChildren();
  for (const item of items) {
    const figure = el("figure");
    figure.dataset.id = item.id;
    figure.dataset.label = String(item.label);
    const was = item.predicted === null || item.predicted === undefined ? "" : ` (the model said ${item.predicted})`;
    const image = el("img", { src: `/feedback/${item.id}.png`, alt: `a ${item.label}${was}`, title: `a ${item.label}${was}` });
    image.width = 28;
    image.height = 28;
    figure.append(
      image,
      el(
        "figcaption",
        {},
        el("span", { textContent: String(item.label) }),
        button("×", "delete", () => deleteCorrection(item)),
      ),
    );
    figure.querySelector("button.delete").title = "delete this correction";
    grid.append(figure);
  }
  grid.dataset.count = String(items.length);
}

async function showFeedbackAccuracy(page, seq) {
  // Computed here, nothing server-side: each correction's pixels (GET /feedback/{id}, kept
  // once read) go as one batch to POST /predict, which the serving model answers.
  const line = $("#feedback-accuracy");
  const items = page.items;
  if (!items.length) {
    line.textContent = "";
    delete line.dataset.accuracy;
    return;
  }
  try {
    const missing = items.filter((item) => !correctionPixels.has(item.id));
    const details = await Promise.all(missing.map((item) => api(`/feedback/${item.id}`)));
    details.forEach((detail) => correctionPixels.set(detail.id, detail.pixels));
    const answer = await api("/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ images: items.map((item) => correctionPixels.get(item.id)) }),
    });
    if (seq !== feedbackSeq) return;
    let right = 0;
    answer.labels.forEach((label, i) => {
      const hit = label === items[i].label;
      right += hit ? 1 : 0;
      const figure = document.querySelector(`#feedback-grid figure[data-id="${items[i].id}"]`);
      if (figure) {
        figure.classList.toggle("wrong", !hit);
        figure.dataset.served = String(label);
      }
    });
    const share = right / items.length;
    const which = items.length < page.total ? `the newest ${items.length} of your ${page.total} digits` : `your ${items.length} digit${items.length === 1 ? "" : "s"}`;
    line.dataset.accuracy = share.toFixed(4);
    line.textContent =
      `The serving model (${short(answer.model_id)}${answer.alias ? ` via ${answer.alias}` : ""}) reads ${right} of ${which} right: ${percent(share)}` +
      " (each correction's pixels sent as one batch to POST /predict; red: read wrong)";
  } catch (error) {
    if (seq === feedbackSeq) line.textContent = `accuracy on your digits: ${error.message}`;
  }
}

async function deleteCorrection(item) {
  try {
    await api(`/feedback/${item.id}`, { method: "DELETE" });
    correctionPixels.delete(item.id);
    $("#feedback-accuracy").textContent = `deleted a ${item.label}`;
  } catch (error) {
    $("#feedback-accuracy").textContent = `delete: ${error.message}`;
  }
  refreshFeedback();
}

function finetuneText(job) {
  let text = progressText(job);
  if (job.promotion) {
    const gate = job.promotion;
    text += `; ${gate.promoted ? "promoted to" : "not promoted to"} ${gate.alias}${gate.reason ? `: ${gate.reason}` : ""}`;
  }
  return text;
}

function showFinetune(job) {
  const ended = ["succeeded", "failed", "cancelled"].includes(job.status);
  const wasRunning = finetuning && !["succeeded", "failed", "cancelled"].includes(finetuning.status);
  finetuning = { ...finetuning, ...job };
  const status = $("#finetune-status");
  status.className = `caption status-${finetuning.status}`;
  status.dataset.status = finetuning.status;
  status.dataset.jobId = finetuning.id;
  status.textContent = finetuneText(finetuning);
  if (ended && wasRunning) {
    refreshAll().then(() => refreshFeedback()); // maybe a new serving model
  }
}

$("#finetune-button").addEventListener("click", async () => {
  const status = $("#finetune-status");
  const serving = $("#serving").dataset.modelId;
  // the serving alias when it exists (resolved by the API at submission), else what serves
  const from = knownAliases.some((a) => a.name === servingAlias) ? servingAlias : serving;
  if (!from) {
    status.className = "caption error";
    status.textContent = "no model serves yet: train one first";
    return;
  }
  status.className = "caption";
  status.textContent = "submitting…";
  const body = {
    init_model: from,
    epochs: 3,
    eta: 0.005,
    feedback_weight: 50,
    promote: { alias: servingAlias, metric: "feedback_accuracy", min_gain: 0.01 },
  };
  try {
    const job = await api("/jobs?preset=fast", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    finetuning = null;
    showFinetune({ id: job.id, status: job.status, epoch: 0, epochs: body.epochs });
    await refreshJobs();
    selectJob(job.id); // the curve and the jobs table follow it, as for any job
  } catch (error) {
    status.className = "caption error";
    status.textContent = `fine-tune: ${error.message}`;
  }
});

// ---------------------------------------------------------------- training form

function resolve(schema, root) {
  if (schema.$ref) return { ...root.components.schemas[schema.$ref.split("/").pop()], ...schema };
  if (schema.anyOf) {
    const real = schema.anyOf.find((s) => s.type !== "null");
    return { ...real, ...schema, optional: true };
  }
  return schema;
}

function limits(s) {
  const low = s.minimum !== undefined ? `${s.minimum}` : s.exclusiveMinimum !== undefined ? `> ${s.exclusiveMinimum}` : null;
  const high = s.maximum !== undefined ? `${s.maximum}` : s.exclusiveMaximum !== undefined ? `< ${s.exclusiveMaximum}` : null;
  if (low !== null && high !== null) return low.startsWith(">") || high.startsWith("<") ? `${low}, ${high}` : `${low} to ${high}`;
  return low ?? high ?? "";
}

let presets = {};

function preset() {
  return $("#presets input[name=preset]:checked").value;
}

function applyPreset(name) {
  // Every field shows what the job will get: the preset's value for each parameter.
  const values = presets[name] || {};
  for (const input of $("#params").querySelectorAll("input, select")) {
    const value = values[input.name];
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value === null || value === undefined ? "" : String(value);
  }
}

function paramField(name, s, withMeaning = true) {
  // One TrainParams field as a labelled input: its range and (in the training form)
  // what it means, from the schema.
  const label = document.createElement("label");
  const caption = document.createElement("span");
  caption.className = "name";
  caption.textContent = name;
  label.append(caption);
  if (withMeaning) {
    // what the field means, from the schema's description (the same text /docs shows)
    const meaning = document.createElement("span");
    meaning.className = "meaning";
    meaning.textContent = s.description || "";
    label.append(meaning);
  } else {
    label.title = s.description || "";
  }
  let input;
  if (s.enum) {
    input = document.createElement("select");
    for (const option of s.enum) input.append(new Option(option, option, false, option === s.default));
  } else if (s.type === "boolean") {
    input = document.createElement("input");
    input.type = "checkbox";
    input.checked = Boolean(s.default);
  } else {
    input = document.createElement("input");
    input.type = "number";
    input.step = s.type === "integer" ? "1" : "any";
    if (s.minimum !== undefined) input.min = s.minimum;
    if (s.maximum !== undefined) input.max = s.maximum;
    if (s.default !== undefined && s.default !== null) input.value = s.default;
    if (s.optional) input.placeholder = "all";
  }
  input.name = name;
  input.dataset.kind = s.type || "string";
  label.append(input);
  const hint = document.createElement("span");
  hint.className = "hint";
  const range = limits(s);
  hint.textContent = [range && `range ${range}`, s.optional ? "empty: all" : ""].filter(Boolean).join(" · ");
  label.append(hint);
  return label;
}

async function buildForm() {
  const [spec, known] = await Promise.all([
    fetch("/openapi.json").then((r) => r.json()),
    fetch("/presets.json").then((r) => r.json()),
  ]);
  presets = known;
  const params = spec.components.schemas.TrainParams.properties;
  const box = $("#params");
  for (const [name, raw] of Object.entries(params)) box.append(paramField(name, resolve(raw, spec)));
  applyPreset(preset());
  for (const radio of document.querySelectorAll("#presets input[name=preset]")) {
    radio.addEventListener("change", () => applyPreset(radio.value));
  }
  buildSweepForm(spec);
}

function formParams() {
  const body = {};
  for (const input of $("#params").querySelectorAll("input, select")) {
    if (input.type === "checkbox") body[input.name] = input.checked;
    else if (input.type === "number") {
      if (input.value !== "") body[input.name] = Number(input.value);
    } else body[input.name] = input.value;
  }
  return body;
}

$("#train-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("#train-status");
  status.className = "caption";
  status.textContent = "submitting…";
  try {
    const job = await api(`/jobs?preset=${encodeURIComponent(preset())}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(formParams()),
    });
    submitted = { id: job.id, status: job.status, epoch: 0, epochs: formParams().epochs };
    showSubmitted();
    await refreshJobs();
    selectJob(job.id);
  } catch (error) {
    status.className = "caption error";
    status.textContent = error.message;
  }
});

// ---------------------------------------------------------------- jobs and the learning curve

let selected = null;
let follower = null;
let curve = { points: [], epochs: 0 };
// The followed job as its event stream last told: the caption, the curve and the job's
// row in the table all show this one state, so they never disagree.
let live = null;
// The job the form queued last: "Start training" shows its status until it ends.
let submitted = null;

function progressText(job) {
  let text = `job ${job.id.slice(0, 8)} ${job.status}, epoch ${job.epoch}/${job.epochs}`;
  if (job.status === "succeeded" && job.test_accuracy !== undefined) text += `: test accuracy ${percent(job.test_accuracy)}`;
  if (job.status === "failed" && job.error) text += `: ${job.error}`;
  return text;
}

function showSubmitted() {
  if (!submitted) return;
  const status = $("#train-status");
  status.className = `caption status-${submitted.status}`;
  status.textContent = progressText(submitted);
}

function learn(job) {
  // Whatever the page learns about a job: keep the "Start training" and the fine-tune
  // lines in step.
  if (submitted && job.id === submitted.id) {
    submitted = { ...submitted, ...job };
    showSubmitted();
  }
  if (finetuning && job.id === finetuning.id) showFinetune(job);
}

function fillRow(row, job) {
  row.dataset.status = job.status;
  row.cells[1].className = `status-${job.status}`;
  row.cells[1].textContent = job.status;
  row.cells[2].textContent = `${job.epoch}/${job.epochs}`;
}

function showLive() {
  $("#curve-job").textContent = `job ${live.id.slice(0, 8)}: ${live.status}, epoch ${live.epoch}/${live.epochs}`;
  const row = document.querySelector(`#jobs tbody tr[data-id="${live.id}"]`);
  if (row) fillRow(row, live);
  learn(live);
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`;
}

async function refreshJobs() {
  let page;
  try {
    page = await api("/jobs?limit=12");
  } catch (_) {
    return;
  }
  const body = $("#jobs tbody");
  body.replaceChildren();
  for (const job of page.items) {
    learn(job);
    const row = document.createElement("tr");
    row.dataset.id = job.id;
    row.classList.toggle("selected", job.id === selected);
    row.innerHTML = `<td class="id">${job.id.slice(0, 8)}</td><td></td><td></td><td>${percent(job.test_accuracy)}</td><td></td>`;
    // the followed job's progress comes from its event stream, like the curve beside it
    fillRow(row, live && live.id === job.id ? { ...job, ...live } : job);
    if (job.status === "queued" || job.status === "running") {
      const cancel = document.createElement("button");
      cancel.type = "button";
      cancel.className = "cancel";
      cancel.textContent = "cancel";
      cancel.onclick = async (event) => {
        event.stopPropagation();
        try {
          await api(`/jobs/${job.id}/cancel`, { method: "POST" });
        } catch (error) {
          $("#train-status").textContent = error.message;
        }
        refreshJobs();
      };
      row.lastElementChild.append(cancel);
    }
    row.onclick = () => selectJob(job.id);
    body.append(row);
  }
}

function selectJob(id) {
  if (follower) follower.abort();
  selected = id;
  follower = new AbortController();
  curve = { points: [], epochs: 0 };
  live = null;
  drawCurve();
  for (const row of document.querySelectorAll("#jobs tbody tr")) {
    row.classList.toggle("selected", row.dataset.id === id);
  }
  $("#curve-job").textContent = `job ${id.slice(0, 8)}`;
  followEvents(`/jobs/${id}/events`, (event, data) => {
    if (selected !== id) return;
    if (event === "epoch") {
      curve.epochs = data.epochs;
      // a job resumed from a checkpoint redoes its later epochs: keep one point per epoch
      curve.points = curve.points.filter((p) => p.epoch < data.epoch);
      curve.points.push({ epoch: data.epoch, cost: data.cost, acc: data.val_accuracy });
      drawCurve();
      live = { ...(live || { id }), status: "running", epoch: data.epoch, epochs: data.epochs };
      showLive();
    } else if (event === "status" || event === "end") {
      curve.epochs = data.epochs;
      live = { ...data, id };
      showLive();
      if (event === "end") {
        refreshJobs();
        refreshAll(); // a new model, maybe promoted by the job's gate
      }
    }
  }, follower.signal).catch((error) => {
    if (!follower.signal.aborted) $("#curve-job").textContent = error.message;
  });
}

function drawCurve() {
  const canvas = $("#curve");
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  const m = { left: 56, right: 44, top: 12, bottom: 30 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  g.clearRect(0, 0, width, height);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, width, height);
  g.strokeStyle = "#d1d5db";
  g.strokeRect(m.left, m.top, w, h);
  canvas.dataset.points = String(curve.points.length);
  const pts = curve.points;
  g.fillStyle = "#6b7280";
  g.font = "11px system-ui, sans-serif";
  const maxEpoch = Math.max(curve.epochs, pts.length ? pts[pts.length - 1].epoch : 1, 1);
  g.textAlign = "center";
  g.fillText("epoch", m.left + w / 2, height - 4);
  g.fillText("1", m.left, m.top + h + 14);
  g.fillText(String(maxEpoch), m.left + w, m.top + h + 14);
  if (!pts.length) {
    g.fillText("no epochs yet", m.left + w / 2, m.top + h / 2);
    return;
  }
  const costs = pts.map((p) => p.cost);
  let lo = Math.min(...costs);
  let hi = Math.max(...costs);
  if (hi - lo < 1e-9) {
    hi += 1;
    lo -= 1;
  }
  const x = (epoch) => m.left + (maxEpoch === 1 ? w / 2 : ((epoch - 1) / (maxEpoch - 1)) * w);
  const yCost = (c) => m.top + h - ((c - lo) / (hi - lo)) * h;
  const yAcc = (a) => m.top + h - a * h;
  g.textAlign = "right";
  g.fillStyle = "#2563eb";
  g.fillText(hi.toPrecision(4), m.left - 4, m.top + 8);
  g.fillText(lo.toPrecision(4), m.left - 4, m.top + h);
  const line = (color, ys) => {
    g.strokeStyle = color;
    g.fillStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    ys.forEach(([px, py], i) => (i ? g.lineTo(px, py) : g.moveTo(px, py)));
    g.stroke();
    if (ys.length < 60) ys.forEach(([px, py]) => g.fillRect(px - 2, py - 2, 4, 4));
  };
  line("#2563eb", pts.map((p) => [x(p.epoch), yCost(p.cost)]));
  const accs = pts.filter((p) => p.acc !== null && p.acc !== undefined);
  if (accs.length) {
    g.textAlign = "left";
    g.fillStyle = "#ea7317";
    g.fillText("100%", m.left + w + 4, m.top + 8);
    g.fillText("0%", m.left + w + 4, m.top + h);
    line("#ea7317", accs.map((p) => [x(p.epoch), yAcc(p.acc)]));
  }
}

// ---------------------------------------------------------------- serving, models and aliases

// The serving alias's name (SERVING_ALIAS): /readyz names it only while it serves, so
// the page keeps the last name it saw.
let servingAlias = "production";
let knownAliases = []; // [{name, model_id, updated_at}] as GET /aliases last told
let promoting = null; // the open promote form: {id, name, reason}
let historyAlias = null; // the alias whose history is shown
let modelsSeq = 0;

const short = (id) => (id ? String(id).slice(0, 8) : "–");
const when = (iso) => (iso ? iso.slice(0, 19).replace("T", " ") : "–");

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function button(text, className, onclick) {
  return el("button", { type: "button", className, textContent: text, onclick });
}

function say(text, isError = false) {
  // What the last model or alias action did, or why the API refused it.
  const status = $("#models-status");
  status.className = isError ? "caption error" : "caption ok";
  status.textContent = text;
}

async function refreshServing() {
  const line = $("#serving");
  let health;
  try {
    health = await (await fetch("/readyz")).json();
  } catch (error) {
    health = { status: "unavailable", detail: error.message };
  }
  const s = health.serving;
  if (s && s.alias) servingAlias = s.alias;
  line.dataset.status = health.status;
  line.dataset.modelId = (s && s.model_id) || "";
  line.dataset.alias = (s && s.alias) || "";
  line.className = `serving serving-${health.status}`;
  if (!s) {
    line.textContent = `Serving: unknown (${health.detail || health.status})`;
  } else if (!s.model_id) {
    line.textContent = s.fallback
      ? "degraded: no intact model to fall back to"
      : "Serving: no model yet (train one below)";
  } else if (s.fallback) {
    const why = knownAliases.some((a) => a.name === servingAlias)
      ? `${servingAlias}'s model is unusable`
      : "a newer model is unusable";
    line.textContent = `degraded: fell back to model ${short(s.model_id)}, the newest intact one (${why})`;
  } else if (s.alias) {
    line.textContent = `Serving: ${s.alias} → ${short(s.model_id)}`;
  } else {
    line.textContent = `Serving: newest model ${short(s.model_id)} (no ${servingAlias} alias yet)`;
  }
}

function refreshAll() {
  return Promise.all([refreshModels(), refreshServing()]);
}

async function refreshModels() {
  const seq = ++modelsSeq;
  let page;
  let aliases;
  try {
    [page, aliases] = await Promise.all([api("/models?limit=50"), api("/aliases")]);
  } catch (error) {
    if (seq === modelsSeq) say(`could not list models: ${error.message}`, true);
    return;
  }
  if (seq !== modelsSeq) return; // a newer refresh is on its way
  knownAliases = aliases.items;
  $("#alias-names").replaceChildren(
    ...[...new Set([servingAlias, ...knownAliases.map((a) => a.name)])].map((name) => new Option(name)),
  );
  renderModels(page.items);
  renderPicker(page.items);
  const listed = page.items.map((m) => m.id).join();
  if (ancestryOf && listed !== ancestryListed) showAncestry(ancestryOf); // a model came or went
  ancestryListed = listed;
  renderAliases();
  await showHistory();
}

function renderModels(models) {
  const body = $("#models tbody");
  body.replaceChildren();
  for (const model of models) {
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
      const parent = button(`← ${short(model.parent_model_id)}`, "link parent", () => showAncestry(model.id));
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
      el("a", { className: "npz", href: `/models/${model.id}/download`, textContent: "npz", download: `${model.id}.npz` }),
      " · ",
      el("a", { className: "onnx", href: `/models/${model.id}/onnx`, textContent: "ONNX", download: `${model.id}.onnx` }),
    );
    row.querySelector(".actions").append(
      button("use for drawing", "use", () => {
        $("#model-picker").value = model.id;
        if (strokes) predictPad();
      }),
      " ",
      button("errors", "show-errors", () => showModelDetail(model)),
      " ",
      button("ancestry", "show-ancestry", () => showAncestry(model.id)),
      " ",
      button("promote…", "promote", () => {
        promoting = promoting && promoting.id === model.id ? null : { id: model.id, name: servingAlias, reason: "" };
        renderPromote("alias");
      }),
      " ",
      button("delete", "delete danger", () => deleteModel(model)),
    );
    row.classList.toggle("selected", model.id === detailModel);
    body.append(row);
  }
  renderPromote();
}

function renderPromote(focus = null) {
  // One promote form at a time, in a row under its model's; it survives the table's
  // refreshes (with what was typed, and the focus).
  const old = document.querySelector("#models tr.promote-row");
  if (old && old.contains(document.activeElement)) focus = document.activeElement.name || null;
  old?.remove();
  if (!promoting) return;
  const row = document.querySelector(`#models tbody tr[data-id="${promoting.id}"]`);
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
    el("span", { textContent: `Point alias ` }),
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
      const answer = await api(`/aliases/${encodeURIComponent(alias)}`, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      promoting = null;
      historyAlias = answer.name;
      say(`${answer.name} → ${short(answer.model_id)}`);
    } catch (error) {
      say(`promote to ${alias || "(no name)"}: ${error.message}`, true);
    }
    await refreshAll();
  };
  const cell = el("td", { colSpan: row.cells.length }, form);
  const formRow = el("tr", { className: "promote-row" }, cell);
  formRow.dataset.for = id;
  row.after(formRow);
  if (focus === "reason") reason.focus();
  else if (focus) name.focus();
}

async function deleteModel(model) {
  const aliases = model.aliases.length ? ` Aliases point at it: ${model.aliases.join(", ")}.` : "";
  if (!confirm(`Delete model ${short(model.id)}? Its files are removed for good.${aliases}`)) return;
  try {
    await api(`/models/${model.id}`, { method: "DELETE" });
    say(`model ${short(model.id)} deleted`);
    if (detailModel === model.id) {
      detailModel = null;
      $("#model-detail").hidden = true;
    }
  } catch (error) {
    say(`delete ${short(model.id)}: ${error.message}`, true);
  }
  await refreshAll();
}

// ------------------------------------ a model's ancestry: model → parent → grandparent …

const ANCESTRY_STEPS = 20; // cards read at most: a longer (or looping) chain is cut there
let ancestryOf = null; // the model whose ancestry is shown
let ancestryListed = ""; // the listed models' ids when it was last walked
let ancestrySeq = 0;

function generation(n) {
  if (n === 0) return "this model";
  if (n === 1) return "parent";
  if (n === 2) return "grandparent";
  if (n === 3) return "great-grandparent";
  return `${n} generations up`;
}

function points(a, b) {
  // the difference of two accuracies in percentage points, as the page shows them
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

async function walkAncestry(id) {
  // GET /models/{id}, then its parent's, … : [{id, card}] or a step that ends the walk
  // ({id, deleted}, {id, cycle}, {id, error}, {id, more}).
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
      const card = await api(`/models/${next}`);
      steps.push({ id: next, card });
      next = card.parent_model_id;
    } catch (error) {
      steps.push(error.message.startsWith("404") ? { id: next, deleted: true } : { id: next, error: error.message });
      break;
    }
  }
  return steps;
}

async function showAncestry(id) {
  const seq = ++ancestrySeq;
  ancestryOf = id;
  const box = $("#ancestry");
  box.hidden = false;
  box.dataset.model = id;
  $("#ancestry-model").textContent = short(id);
  $("#ancestry-model").title = id;
  $("#ancestry-summary").textContent = "reading the model cards…";
  const steps = await walkAncestry(id);
  if (seq !== ancestrySeq) return; // another model was picked meanwhile
  const body = $("#ancestry-table tbody");
  body.replaceChildren();
  steps.forEach((step, n) => {
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
    } else {
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
    }
    body.append(row);
  });
  const read = steps.filter((s) => s.card).length;
  const last = steps[steps.length - 1];
  const chain = steps.map((s) => short(s.id) + (s.deleted ? " (deleted)" : "")).join(" → ");
  const end = last.card ? `${short(last.id)} was trained from scratch`
    : last.deleted ? `${short(last.id)} was deleted` : "the walk stopped early";
  $("#ancestry-summary").textContent = `${chain} (${read} model${read === 1 ? "" : "s"} read; ${end})`;
  box.dataset.steps = String(steps.length);
}

$("#ancestry-close").addEventListener("click", () => {
  ancestryOf = null;
  ancestrySeq++;
  $("#ancestry").hidden = true;
});

function renderPicker(models) {
  const picker = $("#model-picker");
  const chosen = picker.value;
  picker.replaceChildren(new Option("what serves by default", ""));
  for (const alias of knownAliases) {
    picker.append(new Option(`alias ${alias.name} (${short(alias.model_id)})`, `alias:${alias.name}`));
  }
  for (const model of models) {
    picker.append(new Option(`${short(model.id)} (${percent(model.test_accuracy)})`, model.id));
  }
  picker.value = [...picker.options].some((o) => o.value === chosen) ? chosen : "";
}

function renderAliases() {
  const body = $("#aliases tbody");
  body.replaceChildren();
  $("#aliases-empty").hidden = knownAliases.length > 0;
  $("#aliases").hidden = knownAliases.length === 0;
  for (const alias of knownAliases) {
    const row = document.createElement("tr");
    row.dataset.alias = alias.name;
    row.classList.toggle("selected", alias.name === historyAlias);
    const badge = el("span", { className: "badge", textContent: alias.name });
    if (alias.name === servingAlias) badge.classList.add("serving-badge");
    row.append(
      el("td", {}, badge),
      el("td", { className: "id", textContent: short(alias.model_id), title: alias.model_id }),
      el("td", { textContent: when(alias.updated_at) }),
      el(
        "td",
        {},
        button("history", "history", () => {
          historyAlias = alias.name;
          renderAliases();
          showHistory();
        }),
        " ",
        button("rollback", "rollback", () => rollback(alias.name)),
        " ",
        button("remove", "remove danger", () => removeAlias(alias.name)),
      ),
    );
    body.append(row);
  }
}

async function rollback(name) {
  try {
    const answer = await api(`/aliases/${encodeURIComponent(name)}/rollback`, { method: "POST" });
    say(`${name} rolled back to ${short(answer.model_id)}`);
  } catch (error) {
    say(`rollback ${name}: ${error.message}`, true);
  }
  historyAlias = name;
  await refreshAll();
}

async function removeAlias(name) {
  if (!confirm(`Remove alias ${name}? Its history goes with it; the model stays.`)) return;
  try {
    await api(`/aliases/${encodeURIComponent(name)}`, { method: "DELETE" });
    say(`alias ${name} removed`);
    if (historyAlias === name) historyAlias = null;
  } catch (error) {
    say(`remove ${name}: ${error.message}`, true);
  }
  await refreshAll();
}

async function showHistory() {
  // The chosen alias's changes; by default the serving alias's, else the first alias's.
  if (!knownAliases.some((a) => a.name === historyAlias)) {
    const fallback = knownAliases.find((a) => a.name === servingAlias) || knownAliases[0];
    historyAlias = fallback ? fallback.name : null;
    for (const row of document.querySelectorAll("#aliases tbody tr")) {
      row.classList.toggle("selected", row.dataset.alias === historyAlias);
    }
  }
  const box = $("#alias-history");
  if (!historyAlias) {
    box.hidden = true;
    return;
  }
  const name = historyAlias;
  let alias;
  try {
    alias = await api(`/aliases/${encodeURIComponent(name)}`);
  } catch (error) {
    if (historyAlias === name) say(`history of ${name}: ${error.message}`, true);
    return;
  }
  if (historyAlias !== name) return;
  box.hidden = false;
  box.dataset.alias = name;
  $("#history-alias").textContent = name;
  const body = $("#history tbody");
  body.replaceChildren();
  for (const change of alias.history) {
    const row = document.createElement("tr");
    row.dataset.source = change.source;
    row.append(
      el("td", { textContent: when(change.at) }),
      el("td", { className: "id", textContent: short(change.model_id), title: change.model_id }),
      el("td", { className: "id", textContent: short(change.previous_model_id), title: change.previous_model_id || "" }),
      el("td", { className: `source source-${change.source}`, textContent: change.source }),
      el("td", { textContent: change.reason || "" }),
    );
    body.append(row);
  }
}

$("#model-picker").addEventListener("change", () => {
  if (strokes) predictPad();
});
$("#key-button").addEventListener("click", () => askForKey());

// ---------------------------------------------------------------- dataset and a model's errors

let detailModel = null;

function digitCanvas(pixels, title = "") {
  const canvas = document.createElement("canvas");
  canvas.width = 28;
  canvas.height = 28;
  canvas.className = "digit";
  canvas.title = title;
  const g = canvas.getContext("2d");
  const image = g.createImageData(28, 28);
  pixels.flat().forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  g.putImageData(image, 0, 0);
  return canvas;
}

async function loadDataset() {
  const grid = $("#dataset-grid");
  try {
    const samples = await api("/dataset/samples?per_class=12");
    grid.replaceChildren();
    for (let digit = 0; digit < 10; digit++) {
      const row = document.createElement("div");
      row.className = "class-row";
      row.dataset.label = String(digit);
      row.append(Object.assign(document.createElement("span"), { textContent: String(digit) }));
      for (const item of samples.items.filter((s) => s.label === digit)) {
        row.append(digitCanvas(item.pixels, `test image ${item.index}`));
      }
      grid.append(row);
    }
    grid.dataset.count = String(samples.items.length);
  } catch (error) {
    grid.replaceChildren(Object.assign(document.createElement("p"), { className: "error", textContent: error.message }));
  }
}

function drawConfusion(confusion) {
  const table = $("#confusion");
  table.replaceChildren();
  const head = table.insertRow();
  head.append(Object.assign(document.createElement("th"), { textContent: "true \\ pred" }));
  for (let p = 0; p < 10; p++) head.append(Object.assign(document.createElement("th"), { textContent: String(p) }));
  confusion.forEach((counts, truth) => {
    const row = table.insertRow();
    row.append(Object.assign(document.createElement("th"), { textContent: String(truth) }));
    const total = counts.reduce((a, b) => a + b, 0) || 1;
    counts.forEach((count, predicted) => {
      const cell = row.insertCell();
      cell.textContent = String(count);
      const share = count / total;
      // the diagonal in blue by its share of the row, mistakes in red (stronger: small shares show)
      cell.style.background = truth === predicted
        ? `rgba(37, 99, 235, ${(0.1 + 0.6 * share).toFixed(3)})`
        : count ? `rgba(185, 28, 28, ${Math.min(0.7, 0.08 + 4 * share).toFixed(3)})` : "";
      cell.title = `${count} test images of ${truth} read as ${predicted}`;
    });
  });
}

async function showModelDetail(summary) {
  detailModel = summary.id;
  for (const row of document.querySelectorAll("#models tbody tr")) {
    row.classList.toggle("selected", row.dataset.id === summary.id);
  }
  const box = $("#model-detail");
  box.hidden = false;
  $("#detail-model").textContent = `model ${summary.id.slice(0, 8)}, test accuracy ${percent(summary.test_accuracy)}`;
  const grid = $("#errors-grid");
  grid.replaceChildren();
  grid.dataset.count = "0";
  // the list has summaries: the confusion matrix and the errors are on the model's card
  let model;
  try {
    model = await api(`/models/${summary.id}`);
  } catch (error) {
    if (detailModel !== summary.id) return;
    $("#confusion").replaceChildren();
    $("#errors-caption").textContent = "";
    grid.replaceChildren(el("p", { className: "error", textContent: error.message }));
    return;
  }
  if (detailModel !== summary.id) return; // another model was picked meanwhile
  if (!model.confusion) {
    $("#confusion").replaceChildren();
    $("#errors-caption").textContent = "this model was trained before confusion matrices were stored";
    return;
  }
  drawConfusion(model.confusion);
  const wrong = model.confusion.flat().reduce((a, b) => a + b, 0) - model.confusion.reduce((a, row, i) => a + row[i], 0);
  $("#errors-caption").textContent = `misclassified test images (true → predicted): the first ${model.errors.length} of ${wrong}`;
  try {
    const images = await Promise.all(model.errors.map((e) => api(`/dataset/test/${e.index}`)));
    if (detailModel !== model.id) return; // another model was picked meanwhile
    images.forEach((image, i) => {
      const error = model.errors[i];
      const figure = document.createElement("figure");
      figure.dataset.index = String(error.index);
      figure.append(digitCanvas(image.pixels, `test image ${error.index}`));
      figure.append(Object.assign(document.createElement("figcaption"), { textContent: `${error.label} → ${error.predicted}` }));
      grid.append(figure);
    });
    grid.dataset.count = String(images.length);
  } catch (error) {
    grid.replaceChildren(Object.assign(document.createElement("p"), { className: "error", textContent: error.message }));
  }
}

// ---------------------------------------------------------------- sweeps

// Searchable TrainParams fields and their suggested ranges (the fast preset's neighbourhood).
const SPACE_DEFAULTS = {
  eta: { low: 0.001, high: 0.2, log: true, on: true },
  n_hidden: { low: 16, high: 256, log: false, on: true },
  l2: { low: 0.0001, high: 0.1, log: true },
  alpha: { low: 0, high: 0.9 },
  decrease_const: { low: 0.00001, high: 0.1, log: true },
  minibatches: { low: 20, high: 600, log: true },
  lr_schedule: { choices: "compound,inverse" },
};
const NOT_SEARCHED = new Set(["seed", "train_size", "validation_fraction", "epochs", "init_model", "feedback_weight"]);
const TRIAL_FINISHED = new Set(["complete", "pruned", "failed", "cancelled"]);
const SWEEP_FINISHED = new Set(["succeeded", "failed", "cancelled"]);

let sweepFields = {}; // name -> resolved schema
let sweepShown = null; // the sweep on show, as its event stream last told
let sweepFollower = null;
let sweepSort = { key: "number", dir: 1 };
const trialHistories = new Map(); // job id -> [{epoch, val_accuracy}] (final once its trial ended)

function sweepPreset() {
  return $("#sweep-presets input[name=sweep-preset]:checked").value;
}

function applySweepPreset(name) {
  // The base grid shows what each trial gets; a sweep needs a validation split.
  const values = { validation_fraction: 0.1, ...(presets[name] || {}) };
  if (!values.validation_fraction) values.validation_fraction = 0.1;
  for (const input of $("#sweep-base").querySelectorAll("input, select")) {
    const value = values[input.name] ?? sweepFields[input.name].default;
    if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value === null || value === undefined ? "" : String(value);
  }
}

function buildSweepForm(spec) {
  const params = spec.components.schemas.TrainParams.properties;
  const base = $("#sweep-base");
  const space = $("#sweep-space tbody");
  for (const [name, raw] of Object.entries(params)) {
    const s = resolve(raw, spec);
    sweepFields[name] = s;
    base.append(paramField(name, s, false));
    if (NOT_SEARCHED.has(name) || !(s.enum || ["integer", "number", "boolean"].includes(s.type))) continue;
    const d = SPACE_DEFAULTS[name] || {};
    const row = document.createElement("tr");
    row.dataset.field = name;
    const on = el("input", { type: "checkbox", name: "on", checked: Boolean(d.on) });
    const numeric = !s.enum && s.type !== "boolean";
    const low = el("input", { type: "number", name: "low", step: "any", value: d.low ?? "", disabled: !numeric });
    const high = el("input", { type: "number", name: "high", step: "any", value: d.high ?? "", disabled: !numeric });
    const log = el("input", { type: "checkbox", name: "log", checked: Boolean(d.log), disabled: !numeric });
    const choices = el("input", {
      name: "choices",
      size: 22,
      value: d.choices ?? (s.enum ? s.enum.join(",") : s.type === "boolean" ? "true,false" : ""),
      placeholder: numeric ? "e.g. 50,100,200" : "",
    });
    row.append(
      el("td", {}, on),
      el("td", { className: "name", textContent: name, title: s.description || "" }),
      el("td", {}, low),
      el("td", {}, high),
      el("td", {}, log),
      el("td", {}, choices),
    );
    on.addEventListener("change", () => markSearched());
    space.append(row);
  }
  applySweepPreset(sweepPreset());
  markSearched();
  for (const radio of document.querySelectorAll("#sweep-presets input[name=sweep-preset]")) {
    radio.addEventListener("change", () => applySweepPreset(radio.value));
  }
}

function markSearched() {
  // A searched field is the sampler's, not the base's: its base input is greyed out.
  const searched = new Set();
  for (const row of document.querySelectorAll("#sweep-space tbody tr")) {
    const on = row.querySelector("input[name=on]").checked;
    row.classList.toggle("off", !on);
    if (on) searched.add(row.dataset.field);
  }
  for (const input of $("#sweep-base").querySelectorAll("input, select")) input.disabled = searched.has(input.name);
}

function choiceValue(text, s) {
  if (s.type === "boolean") return text === "true";
  if (s.type === "integer" || s.type === "number") return Number(text);
  return text;
}

function sweepBody() {
  const space = {};
  for (const row of document.querySelectorAll("#sweep-space tbody tr")) {
    if (!row.querySelector("input[name=on]").checked) continue;
    const name = row.dataset.field;
    const s = sweepFields[name];
    const field = (n) => row.querySelector(`input[name=${n}]`);
    const listed = field("choices").value.split(",").map((c) => c.trim()).filter(Boolean);
    const numeric = !s.enum && s.type !== "boolean";
    if (numeric && field("low").value !== "" && field("high").value !== "") {
      space[name] = { low: Number(field("low").value), high: Number(field("high").value), log: field("log").checked };
    } else if (listed.length) {
      space[name] = { choices: listed.map((c) => choiceValue(c, s)) };
    } else {
      throw new Error(`${name}: give low and high, or choices`);
    }
  }
  if (!Object.keys(space).length) throw new Error("tick at least one field to search");
  const base = {};
  for (const input of $("#sweep-base").querySelectorAll("input, select")) {
    if (input.disabled) continue;
    if (input.type === "checkbox") base[input.name] = input.checked;
    else if (input.type === "number") {
      if (input.value !== "") base[input.name] = Number(input.value);
    } else base[input.name] = input.value;
  }
  const form = $("#sweep-form");
  const body = {
    base,
    space,
    trials: Number(form.elements.trials.value),
    parallel: Number(form.elements.parallel.value),
    sampler: form.elements.sampler.value,
    pruner: form.elements.pruner.value,
  };
  if (form.elements.sampler_seed.value !== "") body.seed = Number(form.elements.sampler_seed.value);
  const alias = form.elements.promote.value.trim();
  if (alias) body.promote = { alias };
  return body;
}

$("#sweep-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const status = $("#sweep-status");
  status.className = "caption";
  try {
    const body = sweepBody();
    status.textContent = "submitting…";
    const accepted = await api(`/sweeps?preset=${encodeURIComponent(sweepPreset())}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    status.textContent = `sweep ${short(accepted.id)} submitted: ${body.trials} trials, ${body.parallel} at a time (followed below)`;
    await refreshSweeps();
    selectSweep(accepted.id);
  } catch (error) {
    status.className = "caption error";
    status.textContent = error.message;
  }
});

function bestValue(sweep) {
  return sweep.best ? percent(sweep.best.value) : "–";
}

async function refreshSweeps() {
  let page;
  try {
    page = await api("/sweeps?limit=10");
  } catch (_) {
    return;
  }
  const body = $("#sweeps tbody");
  body.replaceChildren();
  $("#sweeps-empty").hidden = page.items.length > 0;
  for (const sweep of page.items) {
    // the one on show: as its event stream says (fresher than this list)
    const shown = sweepShown && sweepShown.id === sweep.id ? { ...sweep, ...sweepShown } : sweep;
    const done = shown.trials.filter((t) => TRIAL_FINISHED.has(t.state)).length;
    const row = el(
      "tr",
      {},
      el("td", { className: "id", textContent: short(shown.id), title: shown.id }),
      el("td", { className: `status-${shown.status}`, textContent: shown.status }),
      el("td", { textContent: `${done}/${shown.request.trials}` }),
      el("td", { textContent: bestValue(shown) }),
      el("td", { textContent: when(shown.created_at) }),
      el("td"),
    );
    row.dataset.id = shown.id;
    row.dataset.status = shown.status;
    row.classList.toggle("selected", sweepShown !== null && sweepShown.id === shown.id);
    if (!SWEEP_FINISHED.has(shown.status)) {
      row.lastElementChild.append(button("cancel", "cancel", (event) => {
        event.stopPropagation();
        cancelSweep(shown.id);
      }));
    }
    row.onclick = () => selectSweep(shown.id);
    body.append(row);
  }
}

function selectSweep(id) {
  if (sweepFollower) sweepFollower.abort();
  sweepFollower = new AbortController();
  const signal = sweepFollower.signal;
  sweepShown = { id, status: "queued", trials: [], request: { space: {}, trials: 0 } };
  sweepSort = { key: "number", dir: 1 };
  for (const row of document.querySelectorAll("#sweeps tbody tr")) row.classList.toggle("selected", row.dataset.id === id);
  $("#sweep-detail").hidden = false;
  $("#sweep-id").textContent = short(id);
  $("#sweep-id").title = id;
  $("#sweep-action").textContent = "";
  if (!$("#promote-alias").value) $("#promote-alias").value = servingAlias;
  renderSweep();
  followEvents(`/sweeps/${id}/events`, (event, data) => {
    if (!sweepShown || sweepShown.id !== id) return;
    if (event === "status" || event === "end") {
      sweepShown = data;
    } else if (event === "trial_start" || event === "trial_end") {
      const trials = sweepShown.trials.filter((t) => t.number !== data.number);
      trials.push(data);
      sweepShown = { ...sweepShown, trials };
    }
    renderSweep();
    if (event === "trial_end" || event === "end") loadHistories(id);
    if (event === "end") {
      refreshSweeps();
      refreshAll(); // its promotion gate may have moved an alias
    }
  }, signal).catch((error) => {
    if (!signal.aborted) $("#sweep-state").textContent = error.message;
  });
}

async function loadHistories(id) {
  // Each trial's learning curve is its job's history (GET /jobs/{id}); an ended trial's is final.
  const wanted = (sweepShown.trials || []).filter(
    (t) => t.job_id && (!trialHistories.has(t.job_id) || !TRIAL_FINISHED.has(t.state) || !trialHistories.get(t.job_id).final),
  );
  await Promise.all(wanted.map(async (trial) => {
    try {
      const job = await api(`/jobs/${trial.job_id}`);
      const ended = ["succeeded", "failed", "cancelled"].includes(job.status);
      trialHistories.set(trial.job_id, { rows: job.history, final: ended });
    } catch (_) {
      // drawn at the next try
    }
  }));
  if (sweepShown && sweepShown.id === id) drawSweepPlots();
}

async function cancelSweep(id) {
  const line = $("#sweep-action");
  try {
    await api(`/sweeps/${id}/cancel`, { method: "POST" });
    line.className = "caption ok";
    line.textContent = `sweep ${short(id)}: cancelling (running trials stop at their next epoch)`;
  } catch (error) {
    line.className = "caption error";
    line.textContent = `cancel ${short(id)}: ${error.message}`;
  }
  refreshSweeps();
}

$("#cancel-sweep").addEventListener("click", () => sweepShown && cancelSweep(sweepShown.id));

$("#promote-best").addEventListener("click", async () => {
  const line = $("#sweep-action");
  const best = sweepShown && sweepShown.best;
  const alias = $("#promote-alias").value.trim() || servingAlias;
  if (!best || !best.model_id) return;
  try {
    const answer = await api(`/aliases/${encodeURIComponent(alias)}`, {
      method: "PUT",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model_id: best.model_id, reason: `best trial (#${best.number}) of sweep ${short(sweepShown.id)}` }),
    });
    line.className = "caption ok";
    line.textContent = `${answer.name} → model ${short(answer.model_id)} (trial #${best.number})`;
  } catch (error) {
    line.className = "caption error";
    line.textContent = `promote to ${alias}: ${error.message}`;
  }
  await refreshAll();
});

function spaceOf(sweep) {
  return (sweep.request && sweep.request.space) || {};
}

function fmtParam(value) {
  if (typeof value === "number" && !Number.isInteger(value)) return value.toPrecision(3);
  return String(value);
}

function sortValue(trial, key) {
  if (key === "number") return trial.number;
  if (key === "state") return trial.state;
  if (key === "value") return trial.value;
  if (key === "epochs") return trial.epochs_run;
  if (key.startsWith("param:")) return trial.params[key.slice(6)];
  return null;
}

function sortedTrials(trials) {
  const { key, dir } = sweepSort;
  return [...trials].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    if (x === y) return a.number - b.number;
    if (x === null || x === undefined) return 1; // no value yet: last either way
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
}

function renderSweep() {
  const sweep = sweepShown;
  const names = Object.keys(spaceOf(sweep));
  const finished = SWEEP_FINISHED.has(sweep.status) && sweep.settled !== false;
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
  $("#cancel-sweep").hidden = finished || SWEEP_FINISHED.has(sweep.status);
  // the trial table: one column per searched field
  const columns = [["number", "#"], ["state", "state"], ["value", "val acc"], ["epochs", "epochs"],
    ...names.map((n) => [`param:${n}`, n]), ["model", "model"]];
  const head = $("#trials thead tr");
  head.replaceChildren(...columns.map(([key, label]) => {
    const th = el("th", { textContent: label });
    th.dataset.key = key;
    if (key !== "model") {
      th.title = `sort by ${label}`;
      th.onclick = () => {
        sweepSort = { key, dir: sweepSort.key === key ? -sweepSort.dir : 1 };
        renderSweep();
      };
    }
    if (sweepSort.key === key) {
      th.classList.add(`sorted-${sweepSort.dir}`);
      th.setAttribute("aria-sort", sweepSort.dir > 0 ? "ascending" : "descending");
    }
    return th;
  }));
  const body = $("#trials tbody");
  body.replaceChildren();
  for (const trial of sortedTrials(sweep.trials)) {
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
    body.append(row);
  }
  $("#trials").dataset.rows = String(sweep.trials.length);
  drawSweepPlots();
}

// ------------------------------------ the sweep's plots (SVG: each point is an element)

const SVG = "http://www.w3.org/2000/svg";
const PLOT = { width: 300, height: 200, left: 42, right: 10, top: 10, bottom: 32 };
const CURVE_COLORS = ["#2563eb", "#ea7317", "#15803d", "#9333ea", "#db2777", "#0891b2", "#ca8a04", "#4b5563"];

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

function axisRange(values, pad = 0.02) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (!Number.isFinite(lo)) return [0, 1];
  if (hi - lo < 1e-9) {
    lo -= 0.01;
    hi += 0.01;
  }
  return [Math.max(0, lo - pad), Math.min(1, hi + pad)];
}

function plotFrame(kind, title, xLabel, [ylo, yhi], xTicks) {
  // A figure with an empty plot: axes, tick labels; returns it and its y scale.
  const { width, height, left, right, top, bottom } = PLOT;
  const w = width - left - right;
  const h = height - top - bottom;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  root.dataset.plot = kind;
  root.append(svg("rect", { x: left, y: top, width: w, height: h, fill: "none", stroke: "#d1d5db" }));
  const y = (v) => top + h - ((v - ylo) / (yhi - ylo)) * h;
  root.append(svg("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, percent(yhi)));
  root.append(svg("text", { x: left - 4, y: top + h, "text-anchor": "end" }, percent(ylo)));
  for (const [px, label] of xTicks) {
    // at the frame's edges a label runs inwards, not out of the picture
    const anchor = px <= left + 1 ? "start" : px >= left + w - 1 ? "end" : "middle";
    root.append(svg("text", { x: px, y: top + h + 12, "text-anchor": anchor }, label));
  }
  root.append(svg("text", { x: left + w / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  const figure = el("figure", {}, root, el("figcaption", { textContent: title }));
  figure.dataset.plot = kind;
  return { figure, root, y, w, h };
}

function paramScale(name, spec, values) {
  // x position of a parameter's value: log axis where the range is log, evenly spaced choices.
  const { left } = PLOT;
  const w = PLOT.width - PLOT.left - PLOT.right;
  if (spec.choices) {
    const n = spec.choices.length;
    const at = (v) => left + ((spec.choices.findIndex((c) => c === v) + 0.5) / n) * w;
    return { x: at, ticks: spec.choices.map((c) => [at(c), String(c)]), label: name };
  }
  const lo = Math.min(spec.low, ...values);
  const hi = Math.max(spec.high, ...values);
  const t = spec.log ? Math.log : (v) => v;
  const span = t(hi) - t(lo) || 1;
  const x = (v) => left + ((t(v) - t(lo)) / span) * w;
  return { x, ticks: [[x(lo), fmtParam(lo)], [x(hi), fmtParam(hi)]], label: spec.log ? `${name} (log scale)` : name };
}

function drawSweepPlots() {
  const box = $("#sweep-plots");
  const sweep = sweepShown;
  if (!sweep || !sweep.trials.length) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  box.hidden = false;
  const scored = sweep.trials.filter((t) => t.value !== null && t.value !== undefined);
  const yRange = axisRange(scored.map((t) => t.value));
  const figures = [];
  const best = sweep.best;
  // validation accuracy against each searched parameter
  for (const [name, spec] of Object.entries(spaceOf(sweep))) {
    const scale = paramScale(name, spec, scored.map((t) => t.params[name]).filter((v) => typeof v === "number"));
    const plot = plotFrame(`param-${name}`, `validation accuracy by ${name}`, scale.label, yRange, scale.ticks);
    for (const trial of scored) {
      const cls = trial.state === "pruned" ? "pt pruned" : best && best.number === trial.number ? "pt best" : "pt";
      const dot = svg("circle", { cx: scale.x(trial.params[name]), cy: plot.y(trial.value), r: 4, class: cls });
      dot.append(svg("title", {}, `trial #${trial.number}: ${name} ${fmtParam(trial.params[name])}, ${percent(trial.value)} (${trial.state})`));
      plot.root.append(dot);
    }
    plot.root.dataset.points = String(scored.length);
    figures.push(plot.figure);
  }
  // best so far against trial number (complete trials choose the best)
  const total = Math.max(sweep.request.trials || 0, ...sweep.trials.map((t) => t.number + 1), 1);
  const xN = (n) => PLOT.left + (total === 1 ? 0.5 : n / (total - 1)) * (PLOT.width - PLOT.left - PLOT.right);
  const progress = plotFrame("best", "best validation accuracy so far, by trial number", "trial", yRange,
    [[xN(0), "0"], [xN(total - 1), String(total - 1)]]);
  let running = null;
  const steps = [];
  for (const trial of [...sweep.trials].sort((a, b) => a.number - b.number)) {
    if (!TRIAL_FINISHED.has(trial.state)) continue;
    if (trial.state === "complete" && trial.value !== null) running = running === null ? trial.value : Math.max(running, trial.value);
    if (running === null) continue;
    steps.push([xN(trial.number), progress.y(running)]);
    const dot = svg("circle", { cx: xN(trial.number), cy: progress.y(running), r: 3.5, class: "pt best" });
    dot.append(svg("title", {}, `after trial #${trial.number}: ${percent(running)}`));
    progress.root.append(dot);
  }
  if (steps.length > 1) {
    progress.root.prepend(svg("polyline", { class: "step", points: steps.map((p) => p.join(",")).join(" ") }));
  }
  progress.root.dataset.points = String(steps.length);
  figures.push(progress.figure);
  // the trials' learning curves (validation accuracy per epoch), pruned ones fainter
  const curves = sweep.trials
    .filter((t) => t.job_id && trialHistories.has(t.job_id))
    .map((t) => ({ trial: t, rows: trialHistories.get(t.job_id).rows.filter((r) => r.val_accuracy !== null && r.val_accuracy !== undefined) }))
    .filter((c) => c.rows.length);
  const epochs = Math.max(1, ...curves.flatMap((c) => c.rows.map((r) => r.epoch)), (sweep.base && sweep.base.epochs) || 1);
  const cRange = axisRange(curves.flatMap((c) => c.rows.map((r) => r.val_accuracy)));
  const xE = (e) => PLOT.left + (epochs === 1 ? 0.5 : (e - 1) / (epochs - 1)) * (PLOT.width - PLOT.left - PLOT.right);
  const learning = plotFrame("curves", "learning curves: validation accuracy per epoch (pruned: faint)", "epoch", cRange,
    [[xE(1), "1"], [xE(epochs), String(epochs)]]);
  for (const { trial, rows } of curves) {
    const color = CURVE_COLORS[trial.number % CURVE_COLORS.length];
    const line = svg("polyline", {
      class: `curve ${trial.state === "pruned" ? "pruned" : ""}`.trim(),
      stroke: color,
      points: rows.map((r) => `${xE(r.epoch)},${learning.y(r.val_accuracy)}`).join(" "),
    });
    line.dataset.number = String(trial.number);
    line.append(svg("title", {}, `trial #${trial.number} (${trial.state})`));
    learning.root.append(line);
  }
  learning.root.dataset.curves = String(curves.length);
  figures.push(learning.figure);
  box.replaceChildren(...figures);
}

// ---------------------------------------------------------------- start

buildBars();
buildFeedbackButtons();
buildFeedbackCounts();
clearPad();
drawCurve();
buildForm().catch((error) => {
  $("#train-status").textContent = `could not read /openapi.json: ${error.message}`;
});
refreshJobs();
refreshAll();
loadDataset();
refreshFeedback();
setInterval(refreshJobs, 2000);
setInterval(refreshFeedback, 10000);
setInterval(refreshModels, 10000);
setInterval(refreshServing, 5000);
refreshSweeps();
setInterval(refreshSweeps, 3000);
setInterval(() => sweepShown && !SWEEP_FINISHED.has(sweepShown.status) && loadHistories(sweepShown.id), 3000);
