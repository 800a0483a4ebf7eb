// Small DOM helpers every panel uses (no state).

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => [...root.querySelectorAll(selector)];

export function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

export function button(text, className, onclick) {
  return el("button", { type: "button", className, textContent: text, onclick });
}

/** A status line's writer: the text, green ("ok") or red ("error"), or plain. */
export function sayer(line) {
  return (text, kind = "") => {
    line.className = kind ? `caption ${kind}` : "caption";
    line.textContent = text;
  };
}

/** Paints 28x28 grey pixels (0..255, rows or flat) into a 28x28 canvas. */
export function paint(canvas, pixels) {
  const g = canvas.getContext("2d");
  const image = g.createImageData(28, 28);
  pixels.flat().forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  g.putImageData(image, 0, 0);
}

/** A new 28x28 canvas showing a digit (the dataset's samples, a model's errors). */
export function digitCanvas(pixels, title = "") {
  const canvas = el("canvas", { width: 28, height: 28, className: "digit", title });
  paint(canvas, pixels);
  return canvas;
}
