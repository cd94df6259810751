// The queue: newest activity first, filtered by status, bot and platform, with counts per
// status; redrawn whenever the push channel says a ticket changed.
"use strict";
const state = {status: new URLSearchParams(location.search).get("status") || "open"};
const STATUSES = ["open", "claimed", "resolved", "all"];

async function load() {
  const q = new URLSearchParams({status: state.status});
  const bot = document.getElementById("bot").value, platform = document.getElementById("platform").value;
  if (bot) q.set("bot", bot);
  if (platform) q.set("platform", platform);
  const data = await api("GET", "/api/desk/tickets?" + q);
  const total = Object.values(data.counts).reduce((a, b) => a + b, 0);
  document.getElementById("statuses").replaceChildren(...STATUSES.map(s => el("button", {
    type: "button", className: s === state.status ? "here" : "", dataset: {status: s},
    onclick: () => { state.status = s; history.replaceState(null, "", "?status=" + s); load(); }},
    s, el("span", {className: "count"}, s === "all" ? total : (data.counts[s] || 0)))));
  document.getElementById("tickets").replaceChildren(...data.tickets.map(t => el("tr", {
    className: "link", dataset: {ticket: t.id}, onclick: () => { location.href = "/desk/tickets/" + t.id; }},
    el("td", {}, badge(t.status)),
    el("td", {}, el("a", {href: "/desk/tickets/" + t.id}, t.display_name || t.user_id),
       el("div", {className: "small muted"}, t.user_id)),
    el("td", {}, t.platform), el("td", {}, t.bot_id),
    el("td", {}, t.reason, el("div", {className: "small muted"}, t.detail)),
    el("td", {}, t.assignee || "—"), el("td", {title: new Date(t.updated_at * 1000).toLocaleString()}, when(t.updated_at)))));
  document.getElementById("empty").textContent = data.tickets.length ? "" : "No tickets here.";
}

async function loadBots() {
  const select = document.getElementById("bot");
  const seen = new Set([...select.options].map(o => o.value));
  const data = await api("GET", "/api/desk/tickets?status=all");
  data.tickets.map(t => t.bot_id).filter(b => !seen.has(b)).forEach(b => { seen.add(b); select.append(el("option", {value: b}, b)); });
}

let pending = null;
function soon() { clearTimeout(pending); pending = setTimeout(() => load().catch(showError), 150); }
function showError(err) { document.getElementById("empty").textContent = err.message; }

deskNav("queue").then(async () => {
  document.getElementById("bot").addEventListener("change", soon);
  document.getElementById("platform").addEventListener("change", soon);
  await loadBots();
  await load();
  const source = deskEvents(soon);
  source.addEventListener("ready", () => { document.getElementById("live").textContent = "● live"; });
}).catch(showError);
