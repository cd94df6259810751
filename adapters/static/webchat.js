// The web chat page: history after a reload, replies pushed later (an agent's answer,
// a "still waiting" notice) without one. Every text is set with textContent, never HTML.
// The API is called by relative URLs: the page of bot B at /b/B/ talks to /b/B/api/...
"use strict";
const log = document.getElementById("log"), form = document.getElementById("form"),
      input = document.getElementById("text"), send = document.getElementById("send");
let loaded = false;
const early = [];  // pushed before the history arrived: shown unless the history has them

function add(text, who, opts) {
  const o = opts || {};
  const div = document.createElement("div");
  div.className = "msg " + who;
  if (who === "agent") {
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = (o.name || "Support team") + " · support team";
    div.appendChild(name);
  }
  div.appendChild(document.createTextNode(text));
  if (o.meta) {
    const m = document.createElement("div"); m.className = "meta"; m.textContent = o.meta; div.appendChild(m);
  }
  log.appendChild(div); log.scrollTop = log.scrollHeight; return div;
}

function showTurn(t) {
  add(t.text, t.role === "user" ? "me" : t.role, {name: t.name});
}

async function start() {
  const bot = await fetch("api/bot").then(r => r.ok ? r.json() : null).catch(() => null);
  if (bot) document.getElementById("title").textContent = bot.display_name;
  connect();
  const hist = await fetch("api/chat/history").then(r => r.ok ? r.json() : {turns: []}).catch(() => ({turns: []}));
  if (bot && bot.greeting) add(bot.greeting, "bot");
  hist.turns.forEach(showTurn);
  const recent = new Set(hist.turns.slice(-10).map(t => t.role + "\u0000" + t.text));
  early.filter(e => !recent.has(e.role + "\u0000" + e.text)).forEach(showTurn);
  loaded = true;
}

function connect() {
  const source = new EventSource("api/chat/events");
  source.addEventListener("reply", ev => {
    const reply = JSON.parse(ev.data);
    if (loaded) showTurn(reply); else early.push(reply);
  });
}

async function submit() {
  const text = input.value; if (!text.trim()) return;
  input.value = ""; add(text, "me"); send.disabled = true;
  const wait = add("typing…", "bot typing");
  try {
    const r = await fetch("api/chat", {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify({text})});
    const data = await r.json(); wait.remove();
    if (!r.ok) { add(data.error || "Something went wrong.", "bot"); return; }
    if (data.text) add(data.text, "bot", {meta: data.route === "escalate" ? "handed to our support team" : ""});
  } catch (e) { wait.remove(); add("Cannot reach the server. Check your connection and try again.", "bot"); }
  finally { send.disabled = false; input.focus(); }
}

form.addEventListener("submit", e => { e.preventDefault(); submit(); });
input.addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); } });
start();
