// Small DOM helpers: every value reaches the page as text, never as markup.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "text") el.textContent = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

// A table with a caption; each column is {name, value(row), num?}.
export function table(caption, columns, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted" }, `${caption}: ${empty}`);
  return h(
    "table",
    {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.name)))),
    h(
      "tbody",
      {},
      rows.map((row) => h("tr", {}, columns.map((c) => h("td", { class: c.num ? "num" : null }, c.value(row))))),
    ),
  );
}

// A labelled form control: returns [wrapper, control].
export function field(id, text, control) {
  control.id = id;
  return [h("div", {}, h("label", { for: id }, text), control), control];
}

export function select(options, value) {
  const el = h("select", {});
  for (const option of options) {
    const [v, text] = Array.isArray(option) ? option : [option, option];
    el.append(h("option", { value: v, selected: v === value }, text));
  }
  return el;
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind}` }, text);
}

export function tile(name, value) {
  return h("div", { class: "tile" }, h("span", { class: "value" }, value), h("span", { class: "name" }, name));
}

export function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export const fmt = {
  usd: (v) => (v === null || v === undefined ? "—" : `$${Number(v).toFixed(Math.abs(v) < 1 ? 4 : 2)}`),
  int: (v) => (v === null || v === undefined ? "—" : Math.round(Number(v)).toLocaleString("en")),
  count: (v) => Math.round(Number(v || 0)).toLocaleString("en"),
  ms: (v) => (v === null || v === undefined ? "—" : `${Number(v).toFixed(0)} ms`),
  num: (v, digits = 3) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits)),
  time: (v) => (v ? new Date(v).toLocaleString("en-GB", { hour12: false }) : "—"),
  hour: (v) => new Date(v).toLocaleString("en-GB", { hour12: false, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }),
  day: (v) => new Date(v).toLocaleDateString("en-GB", { month: "short", day: "numeric" }),
};

export function statusName(status) {
  return String(status || "").replace("OBSERVATION_STATUS_", "").toLowerCase() || "unknown";
}
