// Hand-drawn SVG charts: stacked bars over time buckets and a line, each with a text equivalent.

import { h } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 900;
const H = 220;
const M = { left: 70, right: 40, top: 10, bottom: 28 };
const SERIES = 6;

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

export function color(index) {
  return `var(--series-${(index % SERIES) + 1})`;
}

function paint(el, index) {
  el.style.setProperty("fill", color(index)); // CSSOM, which the content security policy allows
  return el;
}

function frame(label, max, format) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": label });
  root.append(svg("title", {}, label));
  const plotH = H - M.top - M.bottom;
  for (let i = 0; i <= 4; i++) {
    const y = M.top + plotH - (plotH * i) / 4;
    root.append(svg("line", { x1: M.left, x2: W - M.right, y1: y, y2: y, class: "axis", "stroke-dasharray": i ? "2 4" : "" }));
    root.append(svg("text", { x: M.left - 6, y: y + 4, "text-anchor": "end" }, format((max * i) / 4)));
  }
  return root;
}

// buckets: sorted ISO times; series: [{name, values}] aligned with buckets.
export function stackedBars(label, buckets, series, format, tickFormat) {
  const totals = buckets.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const max = Math.max(...totals, 0) || 1;
  const root = frame(label, max, format);
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const step = plotW / Math.max(buckets.length, 1);
  const every = Math.max(1, Math.ceil(buckets.length / 8));
  buckets.forEach((bucket, i) => {
    let base = 0;
    const x = M.left + i * step + step * 0.12;
    series.forEach((s, k) => {
      const v = s.values[i] || 0;
      if (!v) return;
      const height = (v / max) * plotH;
      const rect = svg("rect", { x, width: Math.max(step * 0.76, 1), y: M.top + plotH - base - height, height });
      rect.append(svg("title", {}, `${tickFormat(bucket)} · ${s.name}: ${format(v)}`));
      root.append(paint(rect, k));
      base += height;
    });
    if (i % every === 0) {
      root.append(svg("text", { x: x + step * 0.38, y: H - 8, "text-anchor": "middle" }, tickFormat(bucket)));
    }
  });
  return h("figure", {}, root, legend(series));
}

// points: [{at, value}], in time order, drawn on the time axis from `domain.start` to `domain.end` (ms).
export function line(label, points, format, tickFormat, domain) {
  const values = points.map((p) => p.value);
  const max = Math.max(...values, 0) || 1;
  const root = frame(label, max, format);
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const x = (t) => M.left + (plotW * (t - domain.start)) / Math.max(domain.end - domain.start, 1);
  const y = (v) => M.top + plotH - (Math.max(v, 0) / max) * plotH;
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(Date.parse(p.at)).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
  const stroke = svg("path", { d: path, fill: "none", "stroke-width": 2.5 });
  stroke.style.setProperty("stroke", color(0));
  root.append(stroke);
  for (const p of points) {
    const dot = svg("circle", { cx: x(Date.parse(p.at)), cy: y(p.value), r: 3 });
    dot.append(svg("title", {}, `${tickFormat(p.at)}: ${format(p.value)}`));
    root.append(paint(dot, 0));
  }
  for (let i = 0; i <= 4; i++) {
    const t = domain.start + ((domain.end - domain.start) * i) / 4;
    root.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle" }, tickFormat(new Date(t).toISOString())));
  }
  return h("figure", {}, root);
}

function legend(series) {
  return h(
    "ul",
    { class: "legend", "aria-label": "Legend" },
    series.map((s, k) => {
      const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.setProperty("background", color(k));
      return h("li", {}, swatch, s.name);
    }),
  );
}

// Rows of a bucketed usage answer as chart series: one per value of `group`, aligned on every bucket of
// `span` ({start, end} in ms, `step` in seconds), so hours without traffic show as gaps.
export function pivot(rows, group, metric, span) {
  const stepMs = span.step * 1000;
  const first = Math.floor(span.start / stepMs) * stepMs;
  const buckets = [];
  for (let t = first; t <= span.end; t += stepMs) buckets.push(new Date(t).toISOString());
  const byName = new Map();
  for (const row of rows) {
    const name = row[group] || "(none)";
    const i = Math.round((Date.parse(row.bucket_start) - first) / stepMs);
    if (i < 0 || i >= buckets.length) continue;
    if (!byName.has(name)) byName.set(name, new Array(buckets.length).fill(0));
    byName.get(name)[i] += typeof metric === "function" ? metric(row) : row[metric];
  }
  return { buckets, series: [...byName.entries()].map(([name, values]) => ({ name, values })) };
}
