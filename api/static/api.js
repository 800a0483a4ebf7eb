// The API client every panel uses. It sends the API key the user gave on every request,
// writes included (asked for once when the server answers 401, kept for the browser tab
// in sessionStorage, sent as X-API-Key), and turns refusals into readable messages.

const KEY_STORE = "mnist-api-key";

/** A refusal as a person reads it: "eta: Input should be greater than 0", "409 …". */
export function errorText(status, body) {
  const detail = body && body.detail;
  if (Array.isArray(detail)) {
    return detail
      .map((e) => `${(e.loc || []).filter((p) => p !== "body").join(".") || "request"}: ${e.msg}`)
      .join("; ");
  }
  return `${status} ${detail || "request failed"}`;
}

export class Api {
  #key = sessionStorage.getItem(KEY_STORE) || "";
  #prompt = null; // the open key dialog: every request that got a 401 waits for its answer
  #dialog;

  /** @param {HTMLDialogElement} dialog the key dialog (#key-input, #key-ok, #key-cancel) */
  constructor(dialog) {
    this.#dialog = dialog;
  }

  /** Request headers with the key, if the user gave one (the event streams use them too). */
  headers(extra = {}) {
    const headers = { ...extra };
    if (this.#key) headers["X-API-Key"] = this.#key;
    return headers;
  }

  /** The answer's JSON body; throws an Error with a readable message (and its ``status``). ``json``: a body to send. */
  async call(path, options = {}) {
    return (await this.answer(path, options)).body;
  }

  /** ``{status, body}``, where the status matters (POST /feedback: 201 new, 200 sent before). */
  async answer(path, options = {}) {
    const response = await this.#fetch(path, options);
    const body = await response.json().catch(() => null);
    if (!response.ok) throw Object.assign(new Error(errorText(response.status, body)), { status: response.status });
    return { status: response.status, body };
  }

  /**
   * A panel's refresh: reads ``paths`` together, then ``show(bodies, newest)`` or ``fail(message)``.
   * Of overlapping refreshes only the newest shows its answer (an older one answering later is
   * dropped); ``newest()`` lets ``show`` ask again after it awaited more reads of its own.
   */
  reader(paths, show, fail = () => {}) {
    let seq = 0;
    return async () => {
      const mine = ++seq;
      const newest = () => mine === seq;
      let bodies;
      try {
        bodies = await Promise.all(paths.map((path) => this.call(path)));
      } catch (error) {
        if (newest()) await fail(error.message);
        return;
      }
      if (newest()) await show(bodies, newest);
    };
  }

  /** A binary answer (an image, a model file) as a Blob: <img src> and <a href> send no key. */
  async blob(path) {
    const response = await this.#fetch(path, {});
    if (!response.ok) throw new Error(errorText(response.status, await response.json().catch(() => null)));
    return response.blob();
  }

  async #fetch(path, options, mayAsk = true) {
    const { json, ...init } = options;
    const headers = this.headers(init.headers);
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    const response = await fetch(path, { ...init, headers });
    if (response.status === 401 && mayAsk && (await this.askForKey())) return this.#fetch(path, options, false);
    return response;
  }

  /** Asks for the key (one dialog at a time); true once the user gave one. */
  askForKey() {
    if (this.#prompt) return this.#prompt;
    const dialog = this.#dialog;
    const input = dialog.querySelector("#key-input");
    this.#prompt = new Promise((resolve) => {
      const done = (ok) => {
        dialog.close();
        this.#prompt = null;
        resolve(ok);
      };
      dialog.querySelector("#key-ok").onclick = (event) => {
        event.preventDefault();
        this.#key = input.value.trim();
        sessionStorage.setItem(KEY_STORE, this.#key);
        done(Boolean(this.#key));
      };
      dialog.querySelector("#key-cancel").onclick = () => done(false);
      dialog.oncancel = () => done(false);
      input.value = this.#key;
      dialog.showModal();
      input.focus();
    });
    return this.#prompt;
  }
}
