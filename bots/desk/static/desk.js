// Shared by every desk page: the JSON API with the CSRF header, the navigation bar and
// a tiny element builder. Text from users always goes in with textContent, never HTML.
"use strict";

function csrfToken() {
  const hit = document.cookie.split("; ").find(c => c.startsWith("desk_csrf="));
  return hit ? decodeURIComponent(hit.slice("desk_csrf=".length)) : "";
}

async function api(method, path, body) {
  const headers = {"Accept": "application/json"};
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, {method, headers, credentials: "same-origin",
                               body: body === undefined ? undefined : JSON.stringify(body)});
  const data = await r.json().catch(() => ({}));
  if (r.status === 401 && !location.pathname.startsWith("/desk/login")) {
    location.href = "/desk/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  if (!r.ok) throw new Error(data.error || (r.status + " " + r.statusText));
  return data;
}

// el("div", {className: "x", onclick: fn}, "text", child, ...): strings become text nodes.
function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.entries(props || {}).forEach(([k, v]) => {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node[k] = v;
  });
  children.flat().forEach(c => { if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c)); });
  return node;
}

function when(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000), s = Math.round((Date.now() - d) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return d.toLocaleString();
}

function badge(status) { return el("span", {className: "badge " + status}, status); }

async function signOut() {
  try { await api("POST", "/api/auth/logout"); } finally { location.href = "/desk/login"; }
}

// Draws the navigation bar; resolves to the signed-in account.
async function deskNav(here) {
  const me = await api("GET", "/api/auth/me");
  const links = [["queue", "/desk/", "Queue"]];
  if (me.role === "admin") {
    links.push(["personas", "/desk/admin/personas", "Personas & routing"],
               ["accounts", "/desk/admin/accounts", "Accounts"], ["audit", "/desk/admin/audit", "Audit log"]);
  }
  const nav = document.getElementById("nav");
  nav.replaceChildren(
    el("span", {className: "brand"}, "Support desk"),
    ...links.map(([key, href, text]) => el("a", {href, className: key === here ? "here" : ""}, text)),
    el("span", {className: "who"}, me.username + " · " + me.role),
    el("button", {type: "button", onclick: signOut}, "Sign out"));
  return me;
}

// One EventSource on the desk's push channel; calls back with each ticket event.
function deskEvents(onEvent) {
  const source = new EventSource("/api/desk/events");
  source.addEventListener("ticket", ev => onEvent(JSON.parse(ev.data)));
  return source;
}
