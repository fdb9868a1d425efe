// Routing: the router's policy snapshot per route, learned arm statistics, traffic share and exclusions.

import { pivot, stackedBars } from "../chart.js";
import { facts, fmt, h, replace, table } from "../dom.js";

export async function render(root, ctx) {
  const data = h("div", { id: "routing-data" });
  replace(root, h("h1", {}, "Routing"), data);
  if (ctx.principal.role !== "operator") {
    replace(data, h("p", { class: "muted" }, "The router's policy state covers every tenant: it needs an operator key."));
    return null;
  }

  async function load() {
    const [snapshot, usage] = await Promise.all([
      ctx.api("/v1/admin/routing"),
      ctx.api("/v1/admin/usage/series", { query: { tenant: "*", bucket: "hour", group_by: "route,model" } }),
    ]);
    replace(data, overview(snapshot), ...snapshot.routes.map((route) => routeView(route, usage.data)));
  }
  await load();
  return load;
}

function overview(s) {
  return h(
    "section",
    { class: "card", "aria-label": "Policy snapshot" },
    facts([
      ["Policy version", String(s.version)],
      ["Snapshot generated", fmt.time(s.generated_at)],
      ["Snapshot age", s.age_s === null ? "—" : `${s.age_s.toFixed(1)} s`],
      ["Default route", s.default_route || "—"],
      ["Configuration digest", h("code", {}, s.config_digest || "—")],
    ]),
    h("h2", {}, "Open circuits and exclusions"),
    table("Exclusions", [
      { name: "Model", value: (e) => e.model },
      { name: "Reason", value: (e) => e.reason },
      { name: "Until", value: (e) => fmt.time(e.until) },
    ], s.exclusions, "none: every model may be chosen."),
  );
}

function share(rows, name) {
  const mine = rows.filter((r) => r.route === name);
  const span = { start: Date.now() - 24 * 3600e3, end: Date.now(), step: 3600 };
  const { buckets, series } = pivot(mine, "model", "requests", span);
  const totals = buckets.map((_, i) => series.reduce((sum, s) => sum + s.values[i], 0) || 1);
  return { buckets, series: series.map((s) => ({ name: s.name, values: s.values.map((v, i) => (100 * v) / totals[i]) })) };
}

function routeView(route, rows) {
  const traffic = share(rows, route.name);
  return h(
    "section",
    { "aria-label": `Route ${route.name}` },
    h("h2", {}, `Route ${route.name}`),
    facts([
      ["Policy", route.policy],
      ["Candidates", route.candidates.join(", ")],
      ["Exploration", fmt.num(route.exploration, 2)],
      ["Tenants learning on their own", String(route.tenants_learning)],
    ]),
    h("h3", {}, "Traffic share per model, last 24 hours"),
    traffic.series.length
      ? stackedBars(`Share of ${route.name} requests per model, by hour`, traffic.buckets, traffic.series, (v) => `${v.toFixed(0)}%`, fmt.hour)
      : h("p", { class: "muted" }, "No traffic in the last 24 hours."),
    ...artifactView(route),
    h("h3", {}, "Learned arm statistics"),
    table(`Arms of ${route.name}`, [
      { name: "Model", value: (a) => a.model },
      { name: "Pulls", value: (a) => fmt.num(a.pulls, 0), num: true },
      { name: "Mean reward", value: (a) => fmt.num(a.mean_reward), num: true },
      { name: "Uncertainty (±1 s.e.)", value: (a) => (a.uncertainty === null ? "—" : fmt.num(a.uncertainty)), num: true },
      { name: "Beta posterior", value: (a) => `α ${fmt.num(a.alpha, 1)} · β ${fmt.num(a.beta, 1)}` },
      { name: "Mean cost", value: (a) => fmt.usd(a.mean_cost_usd), num: true },
      { name: "Mean latency", value: (a) => fmt.ms(a.mean_latency_ms), num: true },
    ], route.arms, "nothing learned yet."),
  );
}

function artifactView(route) {
  const a = route.artifact;
  if (!a) return [];
  const t = a.training || {};
  const fit = Object.entries(t.fit || {}).map(([model, f]) => ({ model, ...f }));
  return [
    h("h3", {}, "Trained router (the arms' prior)"),
    facts([
      ["Artifact digest", h("code", {}, a.digest)],
      ["Semantic features", String(a.semantic_dims)],
      ["Trained from", `${fmt.int(t.rows)} rows (${t.source || "—"})`],
      ["Training data digest", h("code", {}, t.digest || "—")],
      ["Model class", t.model_class || "—"],
    ]),
    table(`Training fit of ${route.name}`, [
      { name: "Model", value: (f) => f.model },
      { name: "Rows", value: (f) => fmt.num(f.rows, 0), num: true },
      { name: "Ridge", value: (f) => fmt.num(f.ridge, 2), num: true },
      { name: "Held-out MSE", value: (f) => fmt.num(f.held_out_mse, 4), num: true },
    ], fit, "no fit recorded."),
  ];
}
