// Server-Sent Events read with fetch (EventSource cannot send the API key header), with
// Last-Event-ID on reconnect so a dropped stream resumes where it stopped.

import { errorText } from "./api.js";

/** Parses one "field: value" line of an event stream into the event being built. */
function readLine(line, event) {
  if (line.startsWith(":")) return; // a comment (keep-alive)
  const colon = line.indexOf(":");
  const field = colon < 0 ? line : line.slice(0, colon);
  const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
  if (field === "event") event.name = value;
  else if (field === "data") event.data.push(value);
  else if (field === "id") event.id = value;
}

/**
 * Follows ``path`` until its "end" event (resolved with that event's data), a refusal
 * (rejected with the readable message), eight failed attempts (resolved with null) or
 * ``signal`` aborts. ``onEvent(name, data)`` gets every event with data.
 */
export async function followEvents(api, path, onEvent, signal) {
  let last = null;
  for (let attempt = 0; attempt < 8 && !signal.aborted; attempt++) {
    const headers = api.headers(last ? { "Last-Event-ID": last } : {});
    try {
      const response = await fetch(path, { headers, signal });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        // a refusal (4xx) ends the follow; a busy or briefly unreachable server (429, 5xx:
        // Redis away, the model store away) is tried again like a dropped stream
        const retry = response.status === 429 || response.status >= 500;
        throw Object.assign(new Error(errorText(response.status, body)), { fatal: !retry });
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = { name: "message", data: [], id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          const line = buffer.slice(0, newline).replace(/\r$/, "");
          buffer = buffer.slice(newline + 1);
          if (line !== "") {
            readLine(line, event);
            continue;
          }
          if (event.data.length) {
            const payload = JSON.parse(event.data.join("\n"));
            if (event.id) last = event.id;
            onEvent(event.name, payload);
            if (event.name === "end") return payload;
          }
          event = { name: "message", data: [], id: null };
        }
      }
    } catch (error) {
      if (signal.aborted || error.fatal) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(4000, 250 * 2 ** attempt)));
  }
  return null;
}
