// Health: each service's readiness and the stores behind them, as the gateway sees them.

import { badge, fmt, h, replace, table } from "../dom.js";

const GOOD = new Set(["SERVING", "ready", true]);

function state(value) {
  return badge(String(value === true ? "reachable" : value === false ? "unreachable" : value), GOOD.has(value) ? "ok" : "bad");
}

export async function render(root, ctx) {
  const data = h("div", { id: "health-data" });
  replace(root, h("h1", {}, "Health"), data);
  if (ctx.principal.role !== "operator") {
    replace(data, h("p", { class: "muted" }, "The suite's health needs an operator key."));
    return null;
  }

  async function load() {
    const s = await ctx.api("/v1/admin/health");
    const a = s.adapters;
    const backlog = a.error
      ? `backlog unknown: ${a.error}`
      : a.replica_id === undefined
        ? "gRPC health of the data plane"
        : `replica ${a.replica_id}: ${fmt.int(a.queued_observations)} observations queued, ${fmt.int(a.spool_bytes)} bytes spooled`;
    const rows = [
      ["Gateway", state(s.gateway.status), `${s.gateway.websockets} WebSocket sessions open`],
      ["Adapters (from the gateway)", state(a.status), backlog],
      ["Router (from the gateway)", state(s.router.status), "gRPC health; admin API and policy snapshots"],
      ["Observer (from the gateway)", state(s.observer.status), "gRPC health; observations, usage, feedback"],
      [`Observation store (${s.store.backend})`, state(s.store.reachable), s.store.error || `${fmt.int(s.store.ingest_pending ?? 0)} observations waiting in the ingest queue`],
      [`Key directory (${s.directory.store})`, state(s.directory.reachable), `version ${s.directory.version || "—"}`],
    ];
    replace(
      data,
      table("Components", [
        { name: "Component", value: (r) => r[0] },
        { name: "Status", value: (r) => r[1] },
        { name: "Detail", value: (r) => r[2] },
      ], rows),
      h("p", { class: "muted" }, `Checked in ${fmt.ms(s.checked_in_ms)}. The backlog is the answering adapters replica's; each replica's is also on its metrics port (atp_adapters_spool_bytes).`),
    );
  }
  await load();
  return load;
}
