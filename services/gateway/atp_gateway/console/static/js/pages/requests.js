// Requests: recent observations with filters; each opens its decision, outcome and feedback.

import { facts, field, fmt, h, replace, select, statusName, table } from "../dom.js";
import { tenantOptions } from "./spend.js";

const SINCE = [["", "Any time"], ["900", "Last 15 minutes"], ["3600", "Last hour"], ["86400", "Last 24 hours"], ["604800", "Last 7 days"]];
const STATUSES = [["", "Any status"], ["ok", "OK"], ["error", "Error"], ["partial", "Partial"], ["cancelled", "Cancelled"]];

export async function render(root, ctx) {
  const [tenantField, tenant] = field("req-tenant", "Tenant", select(tenantOptions(ctx, false), ctx.principal.tenant));
  const [modelField, model] = field("req-model", "Model", h("input", { type: "text", placeholder: "any" }));
  const [routeField, route] = field("req-route", "Route", h("input", { type: "text", placeholder: "any" }));
  const [statusField, status] = field("req-status", "Status", select(STATUSES, ""));
  const [sinceField, since] = field("req-since", "Since", select(SINCE, ""));
  const list = h("div", { id: "requests-list" });
  const detail = h("div", { id: "request-detail" });
  const form = h(
    "form",
    { class: "filters card", "aria-label": "Request filters" },
    tenantField, modelField, routeField, statusField, sinceField,
    h("div", {}, h("button", { type: "submit" }, "Apply filters")),
  );
  replace(root, h("h1", {}, "Requests"), form, detail, list);

  async function load() {
    const after = since.value ? new Date(Date.now() - Number(since.value) * 1000).toISOString() : "";
    const query = { tenant: tenant.value, model: model.value.trim(), route: route.value.trim(), status: status.value, after, limit: 50 };
    const page = await ctx.api("/v1/admin/observations", { query });
    replace(list, rows(page.data, (obs) => open(obs).catch(ctx.fail)));
  }

  async function open(obs) {
    const decision = obs.decision || {};
    const feedback = decision.decision_id
      ? (await ctx.api(`/v1/admin/decisions/${encodeURIComponent(decision.decision_id)}/feedback`, { query: { tenant: obs.tenant } })).data
      : [];
    replace(detail, decisionView(obs, feedback, () => replace(detail)));
    detail.querySelector("h2").focus();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load().catch(ctx.fail);
  });
  tenant.addEventListener("change", () => load().catch(ctx.fail));
  await load();
  return load;
}

function rows(observations, open) {
  return table("Recent requests", [
    { name: "Started", value: (o) => fmt.time(o.started_at) },
    { name: "Model", value: (o) => o.model || "—" },
    { name: "Route", value: (o) => o.decision?.route || "—" },
    { name: "Status", value: (o) => statusName(o.status) },
    { name: "Latency", value: (o) => fmt.ms(o.latency_ms), num: true },
    { name: "TTFT", value: (o) => fmt.ms(o.time_to_first_token_ms), num: true },
    { name: "Tokens", value: (o) => fmt.int(Number(o.usage?.prompt_tokens || 0) + Number(o.usage?.completion_tokens || 0)), num: true },
    { name: "Cost", value: (o) => fmt.usd(o.cost_usd || 0), num: true },
    {
      name: "Decision",
      value: (o) =>
        o.decision?.decision_id
          ? h("button", { type: "button", class: "secondary", "aria-label": `Open decision ${o.decision.decision_id}`, "data-decision": o.decision.decision_id, onclick: () => open(o) }, "Open")
          : "—",
    },
  ], observations, "no requests match these filters.");
}

function decisionView(obs, feedback, close) {
  const d = obs.decision || {};
  const usage = obs.usage || {};
  return h(
    "section",
    { class: "card detail", "aria-labelledby": "decision-title" },
    h("h2", { id: "decision-title", tabindex: "-1" }, `Decision ${d.decision_id}`),
    h(
      "div",
      { class: "grid2" },
      facts([
        ["Served by", `${obs.model || "—"} (${obs.provider || "—"})`],
        ["Route", d.route],
        ["Policy", `${d.policy || "—"} · version ${d.policy_version || 0}`],
        ["Propensity", fmt.num(d.propensity || 0)],
        ["Why", d.explanation],
        ["Trace id", h("code", {}, obs.trace_id || "not traced")],
      ]),
      facts([
        ["Status", `${statusName(obs.status)}${obs.error_class ? ` (${obs.error_class})` : ""}${obs.finish_reason ? ` · ${obs.finish_reason}` : ""}`],
        ["Latency", `${fmt.ms(obs.latency_ms || 0)} · provider ${fmt.ms(obs.provider_ms || 0)}`],
        ["Time to first token", fmt.ms(obs.time_to_first_token_ms || 0)],
        ["Tokens", `${fmt.int(usage.prompt_tokens || 0)} in · ${fmt.int(usage.completion_tokens || 0)} out${usage.estimated ? " (estimated)" : ""}`],
        ["Cost", fmt.usd(obs.cost_usd || 0)],
        ["Attempts before", fmt.int(obs.attempts || 0)],
      ]),
    ),
    h("h3", {}, "Candidates, in rank order"),
    table("Candidates", [
      { name: "Model", value: (c) => c.model },
      { name: "Provider", value: (c) => c.provider || "—" },
      { name: "Score", value: (c) => fmt.num(c.score || 0), num: true },
    ], d.candidates || []),
    h("h3", {}, "Filtered out"),
    table("Filtered candidates", [
      { name: "Model", value: (c) => c.model },
      { name: "Why", value: (c) => c.reason },
    ], d.filtered || [], "no candidate was filtered."),
    h("h3", {}, "Feedback"),
    table("Feedback", [
      { name: "Given", value: (f) => fmt.time(f.created_at) },
      { name: "Score", value: (f) => fmt.num(f.score || 0, 2), num: true },
      { name: "Label", value: (f) => f.label || "—" },
      { name: "Comment", value: (f) => f.comment || "—" },
    ], feedback, "none received."),
    h("button", { type: "button", class: "secondary", onclick: close }, "Close decision"),
  );
}
