// The console's shell: sign-in, navigation between pages, and the bounded live refresh.

import { api, ApiError, session } from "./api.js";
import { replace } from "./dom.js";
import * as health from "./pages/health.js";
import * as keys from "./pages/keys.js";
import * as requests from "./pages/requests.js";
import * as routing from "./pages/routing.js";
import * as spend from "./pages/spend.js";

const PAGES = { spend, requests, routing, keys, health };
const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

const state = { principal: null, tenants: [], refresh: null, busy: false, page: "" };

function announce(text) {
  $("status").textContent = text;
}

function showError(root, error) {
  const message = error instanceof ApiError ? `${error.message} (HTTP ${error.status})` : String(error.message || error);
  root.prepend(Object.assign(document.createElement("p"), { className: "error", role: "alert", textContent: message }));
}

async function signIn(key) {
  const principal = await api("/v1/admin/whoami", { key });
  session.key = key;
  state.principal = principal;
  state.tenants = (await api("/v1/admin/tenants")).data;
  $("who").textContent = `${principal.key_name || "key"} · tenant ${principal.tenant} · role ${principal.role}`;
  $("sign-in").hidden = true;
  $("nav").hidden = false;
  $("session").hidden = false;
  $("page").hidden = false;
  if (!location.hash) location.hash = "#/spend";
  await show();
}

function signOut(message = "") {
  session.key = null;
  state.principal = null;
  state.refresh = null;
  $("nav").hidden = true;
  $("session").hidden = true;
  $("page").hidden = true;
  replace($("page"));
  $("sign-in").hidden = false;
  $("sign-in-error").textContent = message;
  $("api-key").value = "";
  $("api-key").focus();
}

async function show() {
  if (!state.principal) return;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const page = PAGES[name] ? name : "spend";
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const root = $("page");
  root.dataset.page = page;
  replace(root);
  state.page = page;
  state.refresh = null;
  document.title = `${$("nav").querySelector(`[data-page="${page}"]`).textContent} · ATP console`;
  const ctx = { api, principal: state.principal, tenants: state.tenants, fail: (e) => showError(root, e) };
  try {
    const refresh = await PAGES[page].render(root, ctx);
    if (state.page === page) state.refresh = refresh || null;
    announce(`${page} loaded`);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return signOut("The key is no longer accepted.");
    showError(root, error);
  }
}

async function tick() {
  const live = $("live").checked && document.visibilityState === "visible";
  if (!live || !state.refresh || state.busy) return;
  state.busy = true; // one refresh at a time: a slow answer delays the next tick, never stacks requests
  try {
    await state.refresh();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) signOut("The key is no longer accepted.");
  } finally {
    state.busy = false;
  }
}

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  $("sign-in-error").textContent = "";
  try {
    await signIn(key);
  } catch (error) {
    session.key = null;
    const refused = error instanceof ApiError && (error.status === 401 || error.status === 403);
    $("sign-in-error").textContent = refused ? `Sign-in refused: ${error.message}` : `Sign-in failed: ${error.message}`;
  }
});
$("sign-out").addEventListener("click", () => signOut());
window.addEventListener("hashchange", show);
setInterval(tick, REFRESH_MS);

if (session.key) signIn(session.key).catch(() => signOut());
else $("api-key").focus();
