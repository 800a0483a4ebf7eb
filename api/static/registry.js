// Follows the model registry: GET /models and GET /aliases, read together so the badges
// and the aliases table agree, every 10 s and whenever a panel asks (a promotion, a
// deletion, a job's end). Publishes {models, aliases} as "registry", or the reason it
// could not read them as "registry-error".

import { every } from "./store.js";

export function followRegistry({ api, store }) {
  const refresh = api.reader(
    ["/models?limit=50", "/aliases"],
    ([page, aliases]) => store.set("registry", { models: page.items, aliases: aliases.items }),
    (message) => store.set("registry-error", message),
  );
  store.provide("registry", refresh);
  every(10_000, refresh);
}
