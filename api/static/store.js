// A tiny shared store. Each resource has one owner, the module that polls or follows it
// (main.js lists them): the owner publishes what it last read with set(), other panels
// read it with get() or watch() it, and anyone may ask the owner for a fresh read with
// refresh(), which the owner registered with provide().

export class Store {
  #values = new Map();
  #watchers = new Map();
  #owners = new Map();

  get(name) {
    return this.#values.get(name);
  }

  /** Publishes a value; resolves once every watcher has handled it. */
  set(name, value) {
    this.#values.set(name, value);
    return Promise.all((this.#watchers.get(name) || []).map((watcher) => watcher(value)));
  }

  watch(name, watcher) {
    this.#watchers.set(name, [...(this.#watchers.get(name) || []), watcher]);
  }

  /** Registers the one module that reads ``name`` afresh when asked. */
  provide(name, refresh) {
    if (this.#owners.has(name)) throw new Error(`${name} is followed by another module already`);
    this.#owners.set(name, refresh);
  }

  /** Asks the owners of these resources to read them now. */
  refresh(...names) {
    return Promise.all(names.map((name) => this.#owners.get(name)?.()));
  }
}

/**
 * Calls ``read`` now and ``ms`` after each call settles (never two at once), and not
 * while the tab is hidden: at once when it shows again.
 */
export function every(ms, read) {
  let timer = null;
  let busy = false;
  const tick = async () => {
    clearTimeout(timer);
    timer = null;
    if (busy || document.hidden) return; // the running call schedules the next one
    busy = true;
    try {
      await read();
    } finally {
      busy = false;
      if (!document.hidden) timer = setTimeout(tick, ms);
    }
  };
  document.addEventListener("visibilitychange", () => !document.hidden && tick());
  tick();
}
