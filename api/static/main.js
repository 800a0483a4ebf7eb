// mnist-service web page: ES modules, no build step, no dependencies. This module mounts
// the panels; each panel owns its state, and each resource of the API is polled or
// followed in one place only, which publishes what it read in the shared store
// (store.js) for the others:
//
//   resource                                   followed by        how
//   /readyz (what serves)                      serving.js         every 5 s, and on request
//   /models + /aliases (the registry)          registry.js        every 10 s, and on request
//   /aliases/{name} (one alias's history)      aliases.js         when the registry changes
//   /models/{id} (model cards)                 ancestry.js        on a click; again when models come or go
//                                              model-errors.js    on a click (the confusion matrix)
//   /jobs (the jobs table)                     jobs.js            every 2 s, and on request
//   /jobs/{id}/events (one job's progress)     jobs.js            the picked job's stream, else the newest job's
//   /feedback/stats + /feedback (corrections)  feedback.js        every 10 s, and on request
//   /feedback/{id}, /feedback/{id}.png         feedback.js        once per correction (pixels, image)
//   /sweeps (the sweeps list)                  sweeps.js          every 3 s, and on request
//   /sweeps/{id}/events (one sweep's trials)   sweeps.js          the shown sweep's stream
//   /jobs/{id} (a trial's learning curve)      sweeps.js          as trials end; every 3 s while the sweep runs
//   /dataset/samples, /dataset/test/{index}    dataset.js, model-errors.js   once, on a click
//   /models/{id}/download, /models/{id}/onnx   models.js          on a click (a file to save)
//   /models/{id}/drift (the serving model's)   drift.js           every 10 s, and when what serves changes
//   /aliases/{name}/canary (the split)         canary.js          each time serving.js reads /readyz
//   /openapi.json + /presets.json (the forms)  schema.js          once, at start
//
// Every request but the always open /readyz, /openapi.json and /presets.json goes through
// api.js, with the API key the user gave (images and model files too: a plain <img> or
// link could not send it). Writes come from the panel whose button makes them: pad.js
// (POST /predict/image), answer.js (POST /feedback), train.js and feedback.js
// (POST /jobs), jobs.js (cancel), models.js and aliases.js (PUT and DELETE /aliases,
// rollback, DELETE /models), canary.js (promote or abort a split), sweep-form.js and
// sweeps.js (POST /sweeps, cancel, promote best), feedback.js (DELETE /feedback/{id}). Pollers pause while the tab is hidden.

import { mountAliases } from "./aliases.js";
import { mountAncestry } from "./ancestry.js";
import { mountAnswer } from "./answer.js";
import { Api } from "./api.js";
import { mountCanary } from "./canary.js";
import { showDataset } from "./dataset.js";
import { mountDrift } from "./drift.js";
import { $ } from "./dom.js";
import { mountFeedback } from "./feedback.js";
import { mountJobs } from "./jobs.js";
import { mountModelErrors } from "./model-errors.js";
import { mountModels } from "./models.js";
import { mountPad } from "./pad.js";
import { followRegistry } from "./registry.js";
import { loadSchema } from "./schema.js";
import { followServing } from "./serving.js";
import { Store } from "./store.js";
import { mountSweepForm } from "./sweep-form.js";
import { mountSweeps } from "./sweeps.js";
import { mountTrain } from "./train.js";

const store = new Store();
const api = new Api($("#key-dialog"));
$("#key-button").addEventListener("click", () => api.askForKey());

// the panels first (they watch the store), then the followers that fill it
const answer = mountAnswer({ api, store });
const pad = mountPad({ api, store, answer });
followServing({ store });
mountCanary({ api, store });
mountDrift({ api, store });
const jobs = mountJobs({ api, store });
mountFeedback({ api, store, jobs });
const aliases = mountAliases({ api, store });
const ancestry = mountAncestry({ api, store });
const details = mountModelErrors({ api, store });
mountModels({ api, store, pad, aliases, ancestry, details });
const sweeps = mountSweeps({ api, store });
followRegistry({ api, store });
showDataset({ api });
loadSchema().then(
  (schema) => {
    mountTrain({ api, store, schema, jobs });
    mountSweepForm({ api, schema, sweeps });
  },
  (error) => {
    $("#train-status").textContent = `could not read /openapi.json: ${error.message}`;
  },
);
