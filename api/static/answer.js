// The answer to the last drawing or upload: the label, the ten probabilities as bars,
// the 28x28 image the model saw, and under it "Right" / "Wrong? It is: 0…9", which send
// that image as a correction (POST /feedback, with the API key like every write).
// Before the first answer (and after Clear) the label and the image are not shown: no empty
// box, no dash where the digit will be.

import { $, $$, button, paint } from "./dom.js";

export function mountAnswer({ api, store }) {
  let answered = null; // what the buttons correct: {pixels, label, model_id}

  const bars = $("#bars");
  for (let digit = 0; digit < 10; digit++) {
    const li = document.createElement("li");
    li.innerHTML = `<span>${digit}</span><span class="bar"><span class="fill"></span></span><span class="p">–</span>`;
    bars.append(li);
  }
  const digits = $("#wrong-digits");
  for (let digit = 0; digit < 10; digit++) {
    const b = button(String(digit), "digit", () => send(digit));
    b.dataset.digit = String(digit);
    b.title = `it is a ${digit}`;
    digits.append(b);
  }
  $("#right-button").addEventListener("click", () => answered && send(answered.label));

  /** Shows an answer of POST /predict/image for ``source``, or none (``null``: cleared, or refused). */
  function show(result, source = "") {
    answered = result ? { pixels: result.pixels, label: result.label, model_id: result.model_id } : null;
    $("#feedback-bar").hidden = !result;
    const status = $("#feedback-status");
    status.textContent = "";
    status.className = "caption";
    delete status.dataset.state;
    const label = $("#label");
    // no answer to a drawing or file (refused): a dash beside the reason; none asked yet: nothing
    label.textContent = result ? String(result.label) : source ? "–" : "";
    label.dataset.for = source;
    $$("#bars li").forEach((li, digit) => {
      const p = result ? result.probabilities[digit] : 0;
      li.classList.toggle("top", Boolean(result) && digit === result.label);
      li.querySelector(".fill").style.width = `${(100 * p).toFixed(1)}%`;
      li.querySelector(".p").textContent = result ? `${(100 * p).toFixed(1)}%` : "–";
    });
    $("#seen-box").hidden = !result;
    if (result) paint($("#seen"), result.pixels);
  }

  async function send(label) {
    if (!answered) return;
    const sent = answered;
    const status = $("#feedback-status");
    status.className = "caption";
    status.textContent = "saving…";
    const body = { pixels: sent.pixels, label, model_id: sent.model_id, predicted: sent.label };
    try {
      const answer = await api.answer("/feedback", { method: "POST", json: body });
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
    store.refresh("feedback");
  }

  show(null);
  return { show };
}
