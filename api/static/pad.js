// The drawing pad, "Upload an image…" and the model picker: each stroke or file goes to
// POST /predict/image, its answer to the answer panel. The picker lists the aliases and
// models the registry follower last read.

import { $ } from "./dom.js";
import { percent, short } from "./format.js";

const BRUSH = 20; // px on the 280x280 pad: about 2 MNIST pixels, like a pen stroke

export function mountPad({ api, store, answer }) {
  const pad = $("#pad");
  const ink = pad.getContext("2d");
  const picker = $("#model-picker");
  let drawing = null; // the pen's last point while a stroke is drawn
  let strokes = 0;
  let timer = null;
  let seq = 0; // the newest request: an older answer arriving later is dropped

  function clear() {
    ink.fillStyle = "#fff";
    ink.fillRect(0, 0, pad.width, pad.height);
    strokes = 0;
    pad.dataset.strokes = "0";
    $("#pad-hint").hidden = false; // an empty pad says what it is for
    answer.show(null);
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

  function endStroke() {
    if (!drawing) return;
    drawing = null;
    strokes += 1;
    pad.dataset.strokes = String(strokes);
    clearTimeout(timer);
    timer = setTimeout(predictPad, 150);
  }

  function predictPad() {
    const forStrokes = strokes;
    pad.toBlob((blob) => predict(blob, "pad.png", String(forStrokes)), "image/png");
  }

  async function predict(blob, name, source) {
    const mine = ++seq;
    const form = new FormData();
    form.append("file", blob, name);
    const model = picker.value;
    if (model.startsWith("alias:")) form.append("alias", model.slice(6));
    else if (model) form.append("model_id", model);
    const status = $("#predict-status");
    status.textContent = "classifying…";
    try {
      const result = await api.call("/predict/image", { method: "POST", body: form });
      if (mine !== seq) return; // a newer drawing is on its way
      answer.show(result, source);
      // which model answered, and through which alias
      status.textContent = `model ${short(result.model_id)}${result.alias ? ` via ${result.alias}` : ""}`;
      status.dataset.modelId = result.model_id;
      status.dataset.alias = result.alias || "";
      // the default answered from another model than the Serving line says: it changed (or fell back)
      const serving = store.get("serving");
      if (!model && result.model_id !== (serving && serving.model_id)) store.refresh("registry", "serving");
    } catch (error) {
      if (mine !== seq) return;
      answer.show(null, source);
      status.replaceChildren(Object.assign(document.createElement("span"), { className: "error", textContent: error.message }));
    }
  }

  function renderPicker({ models, aliases }) {
    const chosen = picker.value;
    picker.replaceChildren(new Option("what serves by default", ""));
    for (const alias of aliases) {
      picker.append(new Option(`alias ${alias.name} (${short(alias.model_id)})`, `alias:${alias.name}`));
    }
    for (const model of models) picker.append(new Option(`${short(model.id)} (${percent(model.test_accuracy)})`, model.id));
    picker.value = [...picker.options].some((o) => o.value === chosen) ? chosen : "";
  }

  pad.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    drawing = padPoint(event);
    $("#pad-hint").hidden = true;
    strokeTo(drawing); // a dot
    clearTimeout(timer);
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) strokeTo(padPoint(e));
  });
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);
  $("#clear").addEventListener("click", clear);
  $("#upload").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) predict(file, file.name, `upload:${file.name}`);
    event.target.value = "";
  });
  picker.addEventListener("change", () => strokes && predictPad());
  store.watch("registry", renderPicker);
  clear();

  return {
    /** "use for drawing": this model answers the pad from now on (the drawing again, if any). */
    use(modelId) {
      picker.value = modelId;
      if (strokes) predictPad();
    },
  };
}
