// The web chat page: history after a reload; each reply shown as it is written ("partial"
// events) in one bubble that the final reply then replaces; replies pushed later (an
// agent's answer, a "still waiting" notice) without one; quick replies as buttons (a
// click sends the choice, shown as the customer's message; the buttons go) and "Talk to a
// person". Every text is set with textContent, never HTML.
// The API is called by relative URLs: the page of bot B at /b/B/ talks to /b/B/api/...
"use strict";
const log = document.getElementById("log"), form = document.getElementById("form"),
      input = document.getElementById("text"), send = document.getElementById("send"),
      human = document.getElementById("human");
let loaded = false;
const early = [];  // pushed before the history arrived: shown unless the history has them
const asked = new Map();  // this page's messages still without their reply: ref -> {bubble, seq}

function fill(div, text, who, opts) {
  const o = opts || {};
  div.className = "msg " + who;
  div.textContent = "";
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
  if (o.choices && o.choices.length) div.appendChild(buttons(o.choices));
}

function buttons(choices) {
  const row = document.createElement("div"); row.className = "choices";
  choices.forEach(c => {
    const b = document.createElement("button"); b.type = "button"; b.className = "choice";
    b.textContent = c.label;
    b.addEventListener("click", () => { row.remove(); ask({text: c.label, choice: c.choice}, c.label); });
    row.appendChild(b);
  });
  return row;
}

function add(text, who, opts) {
  const div = document.createElement("div");
  fill(div, text, who, opts);
  log.appendChild(div); log.scrollTop = log.scrollHeight; return div;
}

function showTurn(t) {
  add(t.text, t.role === "user" ? "me" : t.role, {name: t.name, choices: t.quick_replies});
}

function newRef() {  // names a message so its partials and reply find its bubble
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
}

// The final reply is authoritative: it replaces whatever the bubble showed, once.
function finish(ref, reply) {
  const wait = asked.get(ref);
  if (!wait) return;
  asked.delete(ref);
  const who = reply.role === "agent" ? "agent" : "bot";
  const opts = {name: reply.name, meta: reply.route === "escalate" ? "handed to our support team" : "",
                choices: reply.quick_replies};
  if (!reply.text) { if (wait.bubble) wait.bubble.remove(); return; }
  if (wait.bubble) fill(wait.bubble, reply.text, who, opts); else add(reply.text, who, opts);
  log.scrollTop = log.scrollHeight;
}

async function start() {
  const bot = await fetch("api/bot").then(r => r.ok ? r.json() : null).catch(() => null);
  if (bot) document.getElementById("title").textContent = bot.display_name;
  connect();
  const hist = await fetch("api/chat/history").then(r => r.ok ? r.json() : {turns: []}).catch(() => ({turns: []}));
  if (bot && bot.greeting) add(bot.greeting, "bot", {choices: hist.turns.length ? [] : bot.quick_replies});
  hist.turns.forEach(showTurn);
  const recent = new Set(hist.turns.slice(-10).map(t => t.role + "\u0000" + t.text));
  early.filter(e => !recent.has(e.role + "\u0000" + e.text)).forEach(showTurn);
  loaded = true;
  input.disabled = send.disabled = human.disabled = false;  // the greeting and history come first
  input.focus();
}

function connect() {
  const source = new EventSource("api/chat/events");
  source.addEventListener("reply", ev => {
    const reply = JSON.parse(ev.data);
    if (reply.ref && asked.has(reply.ref)) finish(reply.ref, reply);  // its request gave up waiting
    else if (loaded) showTurn(reply); else early.push(reply);
  });
  source.addEventListener("partial", ev => {
    const partial = JSON.parse(ev.data), wait = asked.get(partial.ref);
    if (!wait || partial.seq <= wait.seq || !partial.text) return;  // not this page's, or stale
    wait.seq = partial.seq;
    if (!wait.bubble) wait.bubble = add("", "bot");
    fill(wait.bubble, partial.text, "bot streaming");
    log.scrollTop = log.scrollHeight;
  });
}

async function ask(body, shown) {  // a typed message, a clicked choice or "Talk to a person"
  add(shown, "me"); send.disabled = human.disabled = true;
  const ref = newRef(), wait = {bubble: add("typing…", "bot typing"), seq: -1};
  asked.set(ref, wait);
  try {
    const r = await fetch("api/chat", {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify({...body, ref})});
    const data = await r.json();
    if (r.ok) { finish(ref, data); return; }
    if (r.status !== 504) asked.delete(ref);  // else the reply still comes, pushed, into its bubble
    if (wait.seq < 0) { wait.bubble.remove(); wait.bubble = null; }
    add(data.error || "Something went wrong.", "bot");
  } catch (e) {
    asked.delete(ref); wait.bubble.remove();
    add("Cannot reach the server. Check your connection and try again.", "bot");
  }
  finally { send.disabled = human.disabled = false; input.focus(); }
}

function submit() {
  const text = input.value; if (!text.trim()) return;
  input.value = ""; ask({text}, text);
}

form.addEventListener("submit", e => { e.preventDefault(); submit(); });
human.addEventListener("click", () => ask({text: "Talk to a person", command: "human"}, "Talk to a person"));
input.addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); } });
input.disabled = send.disabled = human.disabled = true;  // until start() has shown the greeting
start();
