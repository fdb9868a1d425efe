// Spend: cost, tokens and requests over time with a breakdown, and each budget's burn-down.

import { line, pivot, stackedBars } from "../chart.js";
import { field, fmt, h, replace, select, table, tile } from "../dom.js";

const SPAN_MS = { hour: 24 * 3600e3, day: 30 * 86400e3 };
// The breakdowns offered (tenant for admins only), and the usage row field that holds each one's value.
const GROUPS = [["model", "Model"], ["route", "Route"], ["key", "API key"], ["user", "End user"], ["deployment", "Deployment"]];
const FIELD = { key: "key_id", user: "end_user" };
const fieldOf = (group) => FIELD[group] || group;

export function tenantOptions(ctx, all = true) {
  if (ctx.principal.role !== "operator") return [ctx.principal.tenant];
  return [...(all ? [["*", "All tenants"]] : []), ...ctx.tenants];
}

export async function render(root, ctx) {
  const admin = ctx.principal.role === "operator";
  const [tenantField, tenant] = field("spend-tenant", "Tenant", select(tenantOptions(ctx), admin ? "*" : ctx.principal.tenant));
  const [bucketField, bucket] = field("spend-bucket", "Period", select([["hour", "Last 24 hours, by hour"], ["day", "Last 30 days, by day"]], "hour"));
  const groups = [...GROUPS, ...(admin ? [["tenant", "Tenant"]] : [])];
  const [groupField, group] = field("spend-group", "Break down by", select(groups, "model"));
  const data = h("div", { id: "spend-data" });
  replace(
    root,
    h("h1", {}, "Spend"),
    h("form", { class: "filters card", "aria-label": "Spend filters", onsubmit: (e) => e.preventDefault() }, tenantField, bucketField, groupField),
    data,
  );

  async function load() {
    const since = new Date(Date.now() - SPAN_MS[bucket.value]);
    const [series, totals, budgets] = await Promise.all([
      ctx.api("/v1/admin/usage/series", { query: { tenant: tenant.value, bucket: bucket.value, group_by: group.value } }),
      ctx.api("/v1/admin/usage", { query: { tenant: tenant.value, start: Math.floor(since / 1000), group_by: group.value } }),
      tenant.value === "*" ? null : ctx.api("/v1/admin/budgets", { query: { tenant: tenant.value } }),
    ]);
    const span = { start: Number(since), end: Date.now(), step: series.bucket_seconds };
    replace(data, ...summary(totals.data, group.value), ...charts(series.data, group.value, bucket.value, span), ...budgetViews(budgets));
  }
  for (const control of [tenant, bucket, group]) control.addEventListener("change", () => load().catch(ctx.fail));
  await load();
  return load;
}

function summary(rows, group) {
  const sum = (name) => rows.reduce((total, row) => total + Number(row[name] || 0), 0);
  const label = (GROUPS.find(([name]) => name === group) || [group, "Tenant"])[1];
  const name = fieldOf(group);
  // "Model" reads "model" mid-sentence; an acronym ("API key") keeps its capitals.
  const noun = label.replace(/^[A-Z][a-z]/, (start) => start.toLowerCase());
  return [
    h(
      "div",
      { class: "tiles", id: "spend-totals" },
      tile("Cost", fmt.usd(sum("cost_usd"))),
      tile("Requests", fmt.int(sum("requests"))),
      tile("Tokens", fmt.int(sum("prompt_tokens") + sum("completion_tokens"))),
      tile("Errors", fmt.int(sum("errors"))),
    ),
    h("h2", {}, `By ${noun}`),
    table(`Spend by ${noun}`, [
      { name: label, value: (r) => r[name] || "(none)" },
      { name: "Requests", value: (r) => fmt.count(r.requests), num: true },
      { name: "Errors", value: (r) => fmt.count(r.errors), num: true },
      { name: "Prompt tokens", value: (r) => fmt.count(r.prompt_tokens), num: true },
      { name: "Completion tokens", value: (r) => fmt.count(r.completion_tokens), num: true },
      { name: "Cost", value: (r) => fmt.usd(r.cost_usd || 0), num: true },
      { name: "Mean latency", value: (r) => fmt.ms(r.mean_latency_ms || 0), num: true },
    ], rows, "no requests in this period."),
  ];
}

function charts(rows, group, bucket, span) {
  if (!rows.length) return [];
  const tick = bucket === "hour" ? fmt.hour : fmt.day;
  const name = fieldOf(group);
  const cost = pivot(rows, name, "cost_usd", span);
  const requests = pivot(rows, name, "requests", span);
  const tokens = pivot(rows, name, (r) => r.prompt_tokens + r.completion_tokens, span);
  return [
    h("h2", {}, "Cost over time"),
    stackedBars(`Cost per ${bucket} by ${group}`, cost.buckets, cost.series, fmt.usd, tick),
    h("h2", {}, "Requests over time"),
    stackedBars(`Requests per ${bucket} by ${group}`, requests.buckets, requests.series, fmt.int, tick),
    h("h2", {}, "Tokens over time"),
    stackedBars(`Tokens per ${bucket} by ${group}`, tokens.buckets, tokens.series, fmt.int, tick),
  ];
}

function budgetViews(budgets) {
  if (!budgets) return [h("h2", {}, "Budgets"), h("p", { class: "muted" }, "Choose a tenant to see its budgets.")];
  if (!budgets.data.length) return [h("h2", {}, "Budgets"), h("p", { class: "muted" }, `No budget is set for ${budgets.tenant}.`)];
  return [
    h("h2", {}, `Budgets of ${budgets.tenant}`),
    budgets.data.map((b) => {
      const used = Math.min(100, (b.spent_usd / (b.budget_usd || 1)) * 100);
      const bar = h("span", {});
      bar.style.setProperty("width", `${used}%`);
      // A key's own budget names the key; the tenant's is the tenant's.
      const whose = b.scope === "key" ? ` of key ${b.key_name || b.key_id}` : "";
      const name = `${b.period} budget${whose}`;
      return h(
        "section",
        { class: "card", "aria-label": name },
        h("p", {}, h("strong", {}, `${name[0].toUpperCase()}${name.slice(1)} ${fmt.usd(b.budget_usd)}`),
          `: spent ${fmt.usd(b.spent_usd)}, ${fmt.usd(b.remaining_usd)} left (${used.toFixed(1)}% used).`),
        h("div", { class: "bar", role: "progressbar", "aria-label": `${name} used`, "aria-valuenow": used.toFixed(1), "aria-valuemin": 0, "aria-valuemax": 100 }, bar),
        line(`Remaining ${name}`, b.points.map((p) => ({ at: p.at, value: p.remaining_usd })), fmt.usd, b.period === "daily" ? fmt.hour : fmt.day, periodOf(b)),
      );
    }),
  ];
}

// The budget's whole period on the time axis: the day, or the calendar month (UTC), it covers.
function periodOf(budget) {
  const start = new Date(budget.since);
  const end = budget.period === "daily"
    ? new Date(start.getTime() + 86400e3)
    : new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1));
  return { start: start.getTime(), end: end.getTime() };
}
