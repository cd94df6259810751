// One ticket: the whole conversation (earlier history, then everything since the hand-off,
// new customer messages appearing live), the reply box, claim / release / resolve and the
// audit trail.
"use strict";
const ticketId = decodeURIComponent(location.pathname.split("/").pop());
let me = null;

function turn(t) {
  const who = t.role === "user" ? (t.name || "Customer") : t.role === "agent" ? (t.name || "Agent") + " (agent)" : "Bot";
  return el("div", {className: "turn " + t.role}, el("span", {className: "who"}, who + " · " + when(t.at)), t.text,
    ...(t.attachments || []).map(attachment));
}

// What the customer sent besides text (the bot read none of it): kind, name, size, the
// platform's file id, and the platform's link where there is one.
function attachment(a) {
  const link = /^https?:\/\//.test(a.url || "") ? el("a", {href: a.url, target: "_blank", rel: "noopener noreferrer"}, "open") : null;
  return el("div", {className: "attachment"}, "📎 " + a.summary, link ? " · " : "", link);
}

async function load() {
  const data = await api("GET", "/api/desk/tickets/" + encodeURIComponent(ticketId));
  const t = data.ticket;
  document.title = (t.display_name || t.user_id) + " · Support desk";
  document.getElementById("title").replaceChildren(
    el("span", {}, (t.display_name || t.user_id) + " "), badge(t.status));
  const earlier = data.transcript.filter(x => x.at < t.created_at);
  const since = data.transcript.filter(x => x.at >= t.created_at);
  const box = document.getElementById("transcript");
  box.replaceChildren(
    ...(earlier.length ? [el("div", {className: "divider"}, "Earlier conversation"), ...earlier.map(turn)] : []),
    el("div", {className: "divider"}, "Handed to the team " + when(t.created_at)),
    ...since.map(turn));
  box.lastChild.scrollIntoView({block: "nearest"});
  const details = [["Status", t.status], ["Assignee", t.assignee || "nobody"], ["Customer", t.user_id],
    ["Platform", t.platform], ["Bot", t.bot_id], ["Why", t.reason + (t.detail ? " — " + t.detail : "")],
    ["Intent", t.intent ? t.intent + " (" + Math.round(t.confidence * 100) + "%)" : "—"],
    ["Opened", new Date(t.created_at * 1000).toLocaleString()], ["Last activity", when(t.updated_at)]];
  document.getElementById("details").replaceChildren(...details.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  document.getElementById("audit").replaceChildren(...data.audit.map(a =>
    el("li", {}, el("strong", {}, a.actor), " ", a.action, a.detail ? " — " + a.detail : "",
       el("span", {className: "muted"}, " · " + when(a.at)))));
  const mine = t.assignee === me.username;
  document.getElementById("claim").disabled = t.status === "resolved" || mine;
  document.getElementById("claim").textContent = t.status === "claimed" && !mine ? "Take over" : "Claim";
  document.getElementById("release").disabled = !mine;
  document.getElementById("resolve").disabled = t.status === "resolved";
  document.getElementById("send").disabled = t.status === "resolved";
}

function act(action) {
  return async () => {
    const error = document.getElementById("error");
    error.textContent = "";
    try { await api("POST", `/api/desk/tickets/${encodeURIComponent(ticketId)}/${action}`); await load(); }
    catch (err) { error.textContent = err.message; }
  };
}

let pending = null;
function soon() { clearTimeout(pending); pending = setTimeout(() => load().catch(() => {}), 100); }

deskNav("queue").then(async account => {
  me = account;
  ["claim", "release", "resolve"].forEach(a => document.getElementById(a).addEventListener("click", act(a)));
  document.getElementById("reply").addEventListener("submit", async e => {
    e.preventDefault();
    const text = document.getElementById("text"), error = document.getElementById("error");
    error.textContent = "";
    if (!text.value.trim()) return;
    try {
      await api("POST", `/api/desk/tickets/${encodeURIComponent(ticketId)}/reply`, {text: text.value});
      text.value = "";
      await load();
    } catch (err) { error.textContent = err.message; }
  });
  await load();
  deskEvents(ev => { if (ev.ticket_id === ticketId) soon(); });
}).catch(err => { document.getElementById("error").textContent = err.message; });
