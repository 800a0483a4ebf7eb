// How the page writes ids, times, accuracies and a job's progress (pure functions).

export const JOB_ENDED = new Set(["succeeded", "failed", "cancelled"]);

export const short = (id) => (id ? String(id).slice(0, 8) : "–");
export const when = (iso) => (iso ? iso.slice(0, 19).replace("T", " ") : "–");

export function percent(value) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`;
}

/** "job 1a2b3c4d running, epoch 3/30", with the test accuracy or the error at the end. */
export function progressText(job) {
  let text = `job ${short(job.id)} ${job.status}, epoch ${job.epoch}/${job.epochs}`;
  if (job.status === "succeeded" && job.test_accuracy !== undefined) text += `: test accuracy ${percent(job.test_accuracy)}`;
  if (job.status === "failed" && job.error) text += `: ${job.error}`;
  return text;
}

/** A hyper-parameter's value in a table cell: three significant digits for fractions. */
export function fmtParam(value) {
  if (typeof value === "number" && !Number.isInteger(value)) return value.toPrecision(3);
  return String(value);
}
