// A job's learning curve on a canvas: cost per epoch (left axis) and, with a validation
// split, validation accuracy (right axis, 0 to 100%). Drawing only, no state.

/** Draws ``curve`` = {points: [{epoch, cost, acc}], epochs} (``data-points`` says how many). */
export function drawCurve(canvas, curve) {
  const g = canvas.getContext("2d");
  const { width, height } = canvas;
  const m = { left: 56, right: 44, top: 12, bottom: 30 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  g.clearRect(0, 0, width, height);
  g.fillStyle = "#fff";
  g.fillRect(0, 0, width, height);
  g.strokeStyle = "#d1d5db";
  g.strokeRect(m.left, m.top, w, h);
  canvas.dataset.points = String(curve.points.length);
  const pts = curve.points;
  g.fillStyle = "#6b7280";
  g.font = "11px system-ui, sans-serif";
  const maxEpoch = Math.max(curve.epochs, pts.length ? pts[pts.length - 1].epoch : 1, 1);
  g.textAlign = "center";
  g.fillText("epoch", m.left + w / 2, height - 4);
  g.fillText("1", m.left, m.top + h + 14);
  g.fillText(String(maxEpoch), m.left + w, m.top + h + 14);
  if (!pts.length) {
    g.fillText(curve.empty || "no epochs yet", m.left + w / 2, m.top + h / 2);
    return;
  }
  const costs = pts.map((p) => p.cost);
  let lo = Math.min(...costs);
  let hi = Math.max(...costs);
  if (hi - lo < 1e-9) {
    hi += 1;
    lo -= 1;
  }
  const x = (epoch) => m.left + (maxEpoch === 1 ? w / 2 : ((epoch - 1) / (maxEpoch - 1)) * w);
  const yCost = (c) => m.top + h - ((c - lo) / (hi - lo)) * h;
  const yAcc = (a) => m.top + h - a * h;
  g.textAlign = "right";
  g.fillStyle = "#2563eb";
  g.fillText(hi.toPrecision(4), m.left - 4, m.top + 8);
  g.fillText(lo.toPrecision(4), m.left - 4, m.top + h);
  const line = (color, ys) => {
    g.strokeStyle = color;
    g.fillStyle = color;
    g.lineWidth = 2;
    g.beginPath();
    ys.forEach(([px, py], i) => (i ? g.lineTo(px, py) : g.moveTo(px, py)));
    g.stroke();
    if (ys.length < 60) ys.forEach(([px, py]) => g.fillRect(px - 2, py - 2, 4, 4));
  };
  line("#2563eb", pts.map((p) => [x(p.epoch), yCost(p.cost)]));
  const accs = pts.filter((p) => p.acc !== null && p.acc !== undefined);
  if (accs.length) {
    g.textAlign = "left";
    g.fillStyle = "#ea7317";
    g.fillText("100%", m.left + w + 4, m.top + 8);
    g.fillText("0%", m.left + w + 4, m.top + h);
    line("#ea7317", accs.map((p) => [x(p.epoch), yAcc(p.acc)]));
  }
}
