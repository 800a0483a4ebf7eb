// The training form: one input per TrainParams field of /openapi.json (its bounds,
// default and meaning), filled with the chosen preset's values from /presets.json;
// "Start training" is POST /jobs?preset=… with the form's values, and the line beside
// it follows the queued job (from the "job" states the jobs panel publishes) to its end.

import { $, $$ } from "./dom.js";
import { progressText } from "./format.js";
import { fillInputs, paramField, readInputs } from "./schema.js";

export function mountTrain({ api, store, schema, jobs }) {
  const box = $("#params");
  const status = $("#train-status");
  let submitted = null; // the job the form queued last, as last seen

  const preset = () => $("#presets input[name=preset]:checked").value;
  // every field shows what the job will get: the preset's value for each parameter
  const applyPreset = (name) => fillInputs(box, schema.preset(name));

  function showSubmitted() {
    status.className = `caption status-${submitted.status}`;
    status.textContent = progressText(submitted);
  }

  for (const [name, field] of schema.fields("TrainParams")) box.append(paramField(name, field));
  applyPreset(preset());
  for (const radio of $$("#presets input[name=preset]")) {
    radio.addEventListener("change", () => applyPreset(radio.value));
  }

  $("#train-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    status.className = "caption";
    status.textContent = "submitting…";
    const params = readInputs(box);
    try {
      const job = await api.call(`/jobs?preset=${encodeURIComponent(preset())}`, { method: "POST", json: params });
      submitted = { id: job.id, status: job.status, epoch: 0, epochs: params.epochs };
      showSubmitted();
      await store.refresh("jobs");
      jobs.select(job.id);
    } catch (error) {
      status.className = "caption error";
      status.textContent = error.message;
    }
  });

  store.watch("job", (job) => {
    if (!submitted || job.id !== submitted.id) return;
    submitted = { ...submitted, ...job };
    showSubmitted();
  });
}
