// The web chat page: history after a reload, replies pushed later (an agent's answer,
// a "still waiting" notice) without one, quick replies as buttons (a click sends the
// choice, shown as the customer's message; the buttons go) and "Talk to a person".
// Every text is set with textContent, never HTML.
"use strict";
const log = document.getElementById("log"), form = document.getElementById("form"),
      input = document.getElementById("text"), send = document.getElementById("send"),
      human = document.getElementById("human");
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
  if (o.choices && o.choices.length) div.appendChild(buttons(o.choices));
  log.appendChild(div); log.scrollTop = log.scrollHeight; return div;
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

function showTurn(t) {
  add(t.text, t.role === "user" ? "me" : t.role, {name: t.name, choices: t.quick_replies});
}

async function start() {
  const bot = await fetch("/api/bot").then(r => r.ok ? r.json() : null).catch(() => null);
  if (bot) document.getElementById("title").textContent = bot.display_name;
  connect();
  const hist = await fetch("/api/chat/history").then(r => r.ok ? r.json() : {turns: []}).catch(() => ({turns: []}));
  if (bot && bot.greeting) add(bot.greeting, "bot", {choices: hist.turns.length ? [] : bot.quick_replies});
  hist.turns.forEach(showTurn);
  const recent = new Set(hist.turns.slice(-10).map(t => t.role + "\u0000" + t.text));
  early.filter(e => !recent.has(e.role + "\u0000" + e.text)).forEach(showTurn);
  loaded = true;
}

function connect() {
  const source = new EventSource("/api/chat/events");
  source.addEventListener("reply", ev => {
    const reply = JSON.parse(ev.data);
    if (loaded) showTurn(reply); else early.push(reply);
  });
}

async function ask(body, shown) {
  add(shown, "me"); send.disabled = human.disabled = true;
  const wait = add("typing…", "bot typing");
  try {
    const r = await fetch("/api/chat", {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify(body)});
    const data = await r.json(); wait.remove();
    if (!r.ok) { add(data.error || "Something went wrong.", "bot"); return; }
    if (data.text) add(data.text, "bot", {meta: data.route === "escalate" ? "handed to our support team" : "",
                                          choices: data.quick_replies});
  } catch (e) { wait.remove(); add("Cannot reach the server. Check your connection and try again.", "bot"); }
  finally { send.disabled = human.disabled = false; input.focus(); }
}

function submit() {
  const text = input.value; if (!text.trim()) return;
  input.value = ""; ask({text}, text);
}

form.addEventListener("submit", e => { e.preventDefault(); submit(); });
human.addEventListener("click", () => ask({text: "Talk to a person", command: "human"}, "Talk to a person"));
input.addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); } });
start();
