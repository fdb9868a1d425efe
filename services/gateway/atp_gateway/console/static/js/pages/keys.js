// Keys and tenants: create (the key shown once), rotate, revoke and limit keys; set tenant limits and budgets;
// the audit log of these changes. A tenant_admin sees and changes its own tenant only (the API enforces it).

import { fmt, field, h, replace, select, table } from "../dom.js";

const LIMITS = [["requests_per_minute", "Requests per minute"], ["tokens_per_minute", "Tokens per minute"]];

function numberInput(value) {
  return h("input", { type: "number", min: "0", step: "any", value: value ?? "", placeholder: "none" });
}

function valueOf(input) {
  return input.value === "" ? null : Number(input.value);
}

export async function render(root, ctx) {
  if (ctx.principal.role === "user") return ownTenant(root, ctx);
  const operator = ctx.principal.role === "operator";
  const secret = h("div", { id: "new-key", "aria-live": "polite" });
  const keyList = h("div", { id: "key-list" });
  const tenantView = h("div", { id: "tenant-settings" });
  const tenantInput = h("input", { type: "text", required: true, value: ctx.principal.tenant });
  if (!operator) tenantInput.readOnly = true; // a tenant_admin creates keys of its own tenant only
  const [tenantField, tenant] = field("key-tenant", "Tenant", tenantInput);
  const [nameField, name] = field("key-name", "Name", h("input", { type: "text", maxlength: "128" }));
  const [roleField, role] = field("key-role", "Role", select([["user", "user"], ["tenant_admin", "tenant_admin"], ...(operator ? [["operator", "operator"]] : [])], "user"));
  const [rpmField, rpm] = field("key-rpm", "Requests per minute", numberInput(null));
  const [budgetField, budget] = field("key-budget", "Daily budget (USD)", numberInput(null));
  const [modelsField, models] = field("key-models", "Allowed models (comma-separated)", h("input", { type: "text", placeholder: "the tenant's" }));
  const [expiresField, expires] = field("key-expires", "Expires at (UTC)", h("input", { type: "datetime-local" }));
  const revoked = h("input", { type: "checkbox", id: "key-show-revoked" });
  const revokedField = h("label", { class: "inline", for: "key-show-revoked" }, revoked, "Show revoked keys");
  const create = h(
    "form",
    { class: "filters card", "aria-label": "Create an API key" },
    tenantField, nameField, roleField, rpmField, budgetField, modelsField, expiresField,
    h("div", {}, h("button", { type: "submit" }, "Create key")),
  );
  const [settingsField, settingsTenant] = field("settings-tenant", "Tenant", select(ctx.tenants, ctx.principal.tenant));
  const auditView = h("div", { id: "audit-log" });
  replace(
    root,
    h("h1", {}, "Keys and tenants"),
    h("h2", {}, "Create an API key"),
    create,
    secret,
    h("h2", {}, "API keys"),
    revokedField,
    keyList,
    h("h2", {}, "Tenant limits and budgets"),
    h("div", { class: "filters" }, settingsField),
    tenantView,
    h("h2", {}, "Audit log"),
    auditView,
  );

  async function loadKeys() {
    const keys = (await ctx.api("/v1/admin/keys", { query: { include_revoked: revoked.checked } })).data;
    replace(keyList, keyTable(keys, ctx, { rotated: showSecret, changed: loadKeys }));
    await loadAudit(auditView, ctx);
  }
  function showSecret(key, what) {
    replace(
      secret,
      h("section", { class: "card", "aria-labelledby": "new-key-title" },
        h("h3", { id: "new-key-title", tabindex: "-1" }, `${what}: copy it now, it is not shown again`),
        h("p", { class: "secret", id: "new-key-value" }, key.key),
        h("p", { class: "muted" }, `Key ${key.id} of tenant ${key.tenant}, role ${key.role}.`)),
    );
    secret.querySelector("h3").focus();
  }
  create.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const limits = {};
      if (valueOf(rpm) !== null) limits.requests_per_minute = valueOf(rpm);
      if (valueOf(budget) !== null) limits.daily_budget_usd = valueOf(budget);
      const body = { tenant: tenant.value.trim(), name: name.value.trim(), role: role.value, limits };
      const allowed = models.value.split(",").map((m) => m.trim()).filter(Boolean);
      if (allowed.length) body.allowed_models = allowed;
      if (expires.value) body.expires_at = `${expires.value}:00Z`;
      const key = await ctx.api("/v1/admin/keys", { method: "POST", body });
      showSecret(key, "New key created");
      await loadKeys();
    } catch (error) {
      ctx.fail(error);
    }
  });
  revoked.addEventListener("change", () => loadKeys().catch(ctx.fail));
  const loadTenant = () => tenantSettings(tenantView, ctx, settingsTenant.value).catch(ctx.fail);
  settingsTenant.addEventListener("change", loadTenant);
  await Promise.all([loadKeys(), loadTenant()]);
  return null; // forms are not refreshed under the operator's hands
}

function keyTable(keys, ctx, on) {
  const act = (fn) => async () => {
    try {
      await fn();
    } catch (error) {
      ctx.fail(error);
    }
  };
  return table("API keys", [
    { name: "Key id", value: (k) => h("code", {}, k.id) },
    { name: "Name", value: (k) => k.name || "—" },
    { name: "Tenant", value: (k) => k.tenant },
    { name: "Role", value: (k) => k.role },
    { name: "Created", value: (k) => fmt.time(k.created_at) },
    { name: "Revoked", value: (k) => (k.revoked_at ? fmt.time(k.revoked_at) : "no") },
    { name: "Requests/min", value: (k) => limitEditor(k, ctx, on.changed) },
    { name: "Budget/day", value: (k) => (k.limits.daily_budget_usd == null ? "—" : `$${k.limits.daily_budget_usd}`) },
    { name: "Models", value: (k) => (k.allowed_models.length ? k.allowed_models.join(", ") : "tenant's") },
    { name: "Expires", value: (k) => (k.expires_at ? fmt.time(k.expires_at) : "never") },
    {
      name: "Actions",
      value: (k) =>
        k.revoked_at
          ? "—"
          : h("span", {},
              h("button", { type: "button", class: "secondary", "aria-label": `Rotate key ${k.name || k.id}`, onclick: act(async () => { on.rotated(await ctx.api(`/v1/admin/keys/${k.id}/rotate`, { method: "POST" }), "Key rotated (the old one is revoked)"); await on.changed(); }) }, "Rotate"),
              " ",
              h("button", { type: "button", class: "danger", "aria-label": `Revoke key ${k.name || k.id}`, onclick: act(async () => { await ctx.api(`/v1/admin/keys/${k.id}`, { method: "DELETE" }); await on.changed(); }) }, "Revoke")),
    },
  ], keys, "no keys.");
}

function limitEditor(key, ctx, changed) {
  if (key.revoked_at) return fmt.int(key.limits.requests_per_minute);
  const input = numberInput(key.limits.requests_per_minute);
  input.setAttribute("aria-label", `Requests per minute for key ${key.name || key.id} (0 removes the limit)`);
  input.classList.add("small");
  const save = h("button", { type: "button", class: "secondary", "aria-label": `Save limit of key ${key.name || key.id}` }, "Save");
  save.addEventListener("click", async () => {
    try {
      await ctx.api(`/v1/admin/keys/${key.id}`, { method: "PATCH", body: { limits: { requests_per_minute: valueOf(input) ?? 0 } } });
      await changed();
    } catch (error) {
      ctx.fail(error);
    }
  });
  return h("span", {}, input, " ", save);
}

async function tenantSettings(view, ctx, tenant) {
  const s = await ctx.api(`/v1/admin/tenants/${encodeURIComponent(tenant)}`);
  const inputs = {};
  const fields = [["daily_budget_usd", "Daily budget (USD)"], ["monthly_budget_usd", "Monthly budget (USD)"], ...LIMITS];
  const form = h("form", { class: "filters card", "aria-label": `Settings of tenant ${tenant}` });
  for (const [name, text] of fields) {
    const [wrapper, input] = field(`tenant-${name}`, text, numberInput(s[name]));
    inputs[name] = input;
    form.append(wrapper);
  }
  const note = h("p", { class: "muted" }, `Changed here: ${s.overridden.join(", ") || "nothing"}. Empty leaves a value as it is; 0 removes a limit.`);
  form.append(h("div", {}, h("button", { type: "submit" }, "Save tenant settings")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    for (const [name] of fields) if (valueOf(inputs[name]) !== null) body[name] = valueOf(inputs[name]);
    try {
      await ctx.api(`/v1/admin/tenants/${encodeURIComponent(tenant)}`, { method: "PATCH", body });
      await tenantSettings(view, ctx, tenant);
    } catch (error) {
      ctx.fail(error);
    }
  });
  replace(view, form, note);
}

async function loadAudit(view, ctx) {
  const entries = (await ctx.api("/v1/admin/audit", { query: { limit: 20 } })).data;
  replace(view, table("Audit log: the latest admin actions", [
    { name: "When", value: (e) => fmt.time(e.at) },
    { name: "Action", value: (e) => e.action },
    { name: "Tenant", value: (e) => e.tenant },
    { name: "Target", value: (e) => h("code", {}, e.target) },
    { name: "By", value: (e) => `${e.actor.key_id || "internal"} (${e.actor.role}, ${e.actor.tenant || "—"})` },
  ], entries, "no admin actions yet."));
}

async function ownTenant(root, ctx) {
  const s = await ctx.api(`/v1/admin/tenants/${encodeURIComponent(ctx.principal.tenant)}`);
  const rows = Object.entries(s).filter(([k]) => !["object", "overridden"].includes(k));
  replace(
    root,
    h("h1", {}, "Keys and tenants"),
    h("p", { class: "muted" }, "Keys are created, rotated and revoked with a tenant_admin or operator key. This key's tenant:"),
    table(`Settings of ${s.tenant}`, [
      { name: "Setting", value: (r) => r[0] },
      { name: "Value", value: (r) => (Array.isArray(r[1]) ? r[1].join(", ") || "—" : r[1] ?? "none") },
    ], rows),
  );
  return null;
}
