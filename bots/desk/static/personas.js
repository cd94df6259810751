// The persona editor: every field of a bot's persona, the routing rule of each intent,
// a preview of the form as it stands, and the saved versions. Saving validates on the
// server with the same rules as `chatbot persona import` and keeps a version.
"use strict";
const ROUTES = ["generate", "canned", "escalate"];
const PLATFORMS = ["web", "console", "telegram", "slack", "discord"];
let current = null;

function field(label, path, value, kind) {
  const id = "f-" + path.replace(/\W/g, "-");
  let input;
  if (kind === "long") input = el("textarea", {id, rows: 3, value: value ?? ""});
  else if (kind === "bool") input = el("input", {id, type: "checkbox", checked: !!value});
  else if (kind && kind.startsWith("select:")) {
    input = el("select", {id}, ...kind.slice(7).split(",").map(o => el("option", {value: o, selected: o === value}, o)));
  } else input = el("input", {id, value: value ?? "", type: kind === "int" || kind === "float" ? "number" : "text",
                                step: kind === "float" ? "any" : "1"});
  input.dataset.path = path;
  input.dataset.kind = kind || "text";
  if (path === "bot_id") input.readOnly = true;
  return el("div", {}, el("label", {htmlFor: id}, label), input);
}

function section(title, ...children) { return el("div", {className: "card"}, el("h2", {}, title), ...children); }

function factRow(name, value) {
  const row = el("div", {className: "kv fact"}, el("input", {value: name, placeholder: "slot, e.g. Website Name"}),
    el("input", {value: value, placeholder: "value"}));
  row.append(el("button", {type: "button", className: "secondary", onclick: () => row.remove()}, "Remove"));
  return row;
}

function routeRow(intent, p) {
  const route = p.routing.routes[intent] || "";
  const select = el("select", {dataset: {intent}}, el("option", {value: ""}, "default (" + p.routing.default_route + ")"),
    ...ROUTES.map(r => el("option", {value: r, selected: r === route}, r)));
  select.className = "route";
  const canned = el("textarea", {rows: 1, value: p.routing.canned[intent] || "", placeholder: "fixed answer (for canned)"});
  canned.className = "canned"; canned.dataset.intent = intent;
  return el("tr", {}, el("td", {}, intent), el("td", {}, select), el("td", {}, canned));
}

function render(p, intents) {
  const g = p.generation, r = p.routing;
  const names = [...new Set([...intents, ...Object.keys(r.routes), ...Object.keys(r.canned)])].sort();
  const facts = el("div", {id: "facts"}, ...Object.entries(p.facts).map(([k, v]) => factRow(k, v)));
  const form = document.getElementById("persona");
  form.replaceChildren(
    section("Identity", el("div", {className: "grid2"}, field("Bot id", "bot_id", p.bot_id),
      field("Display name", "display_name", p.display_name)),
      field("Greeting", "greeting", p.greeting, "long"), field("Style (put at the top of every prompt)", "style", p.style, "long")),
    section("Facts", el("p", {className: "small muted"}, "Values for the {{placeholders}} of the dialogue data."), facts,
      el("button", {type: "button", className: "secondary", onclick: () => facts.append(factRow("", ""))}, "Add a fact")),
    section("Routing rules",
      el("div", {className: "grid3"}, field("Default route", "routing.default_route", r.default_route, "select:" + ROUTES),
        field("Confidence threshold", "routing.confidence_threshold", r.confidence_threshold, "float"),
        field("Escalate after N unsure turns", "routing.escalate_after_low_confidence", r.escalate_after_low_confidence, "int")),
      el("table", {id: "routes"}, el("thead", {}, el("tr", {}, el("th", {}, "Intent"), el("th", {}, "Route"), el("th", {}, "Canned answer"))),
        el("tbody", {}, ...names.map(i => routeRow(i, p))))),
    section("Generation", el("div", {className: "grid3"},
      field("Max new tokens", "generation.max_new_tokens", g.max_new_tokens, "int"),
      field("Temperature", "generation.temperature", g.temperature, "float"),
      field("Top p", "generation.top_p", g.top_p, "float"), field("Top k", "generation.top_k", g.top_k, "int"),
      field("Repetition penalty", "generation.repetition_penalty", g.repetition_penalty, "float"),
      field("History turns in the prompt", "generation.history_turns", g.history_turns, "int"),
      field("Sample (do_sample)", "generation.do_sample", g.do_sample, "bool"))),
    section("Messages", ...Object.entries(p.messages).map(([k, v]) => field(k.replace(/_/g, " "), "messages." + k, v, "long"))),
    section("Models and platforms", el("div", {className: "grid2"},
      field("Intent model", "models.intent", p.models.intent), field("Reply model", "models.lm", p.models.lm)),
      el("label", {}, "Platforms"),
      el("div", {className: "tabs"}, ...PLATFORMS.map(name => el("label", {className: "small"},
        el("input", {type: "checkbox", className: "platform", value: name, checked: p.platforms.includes(name)}), " " + name))),
      field("In group chats answer", "group_replies", p.group_replies, "select:mentions,all")),
    el("p", {id: "error", className: "error"}),
    el("p", {}, el("button", {type: "submit", id: "save"}, "Save persona"), " ", el("span", {id: "saved", className: "ok"})));
}

function collect() {
  const p = JSON.parse(JSON.stringify(current));
  document.querySelectorAll("#persona [data-path]").forEach(input => {
    const parts = input.dataset.path.split("."), last = parts.pop();
    const node = parts.reduce((o, k) => o[k], p), kind = input.dataset.kind;
    node[last] = kind === "bool" ? input.checked : kind === "int" ? parseInt(input.value, 10)
      : kind === "float" ? parseFloat(input.value) : input.value;
  });
  p.facts = {};
  document.querySelectorAll("#facts .fact").forEach(row => {
    const [k, v] = row.querySelectorAll("input");
    if (k.value.trim()) p.facts[k.value.trim()] = v.value;
  });
  p.routing.routes = {};
  document.querySelectorAll("#routes select.route").forEach(s => { if (s.value) p.routing.routes[s.dataset.intent] = s.value; });
  p.routing.canned = {};
  document.querySelectorAll("#routes textarea.canned").forEach(t => { if (t.value.trim()) p.routing.canned[t.dataset.intent] = t.value; });
  p.platforms = [...document.querySelectorAll("input.platform:checked")].map(c => c.value);
  return p;
}

async function load(bot) {
  const data = await api("GET", "/api/admin/personas/" + encodeURIComponent(bot));
  const intents = await api("GET", "/api/admin/intents/" + encodeURIComponent(bot)).then(d => d.intents).catch(() => []);
  current = data.persona;
  render(current, intents);
  document.getElementById("version").textContent = data.versions.length + " saved versions";
  document.getElementById("versions").replaceChildren(...data.versions.slice().reverse().slice(0, 20).map(v =>
    el("li", {}, v.author, el("span", {className: "muted"}, " · " + when(v.at)))));
}

deskNav("personas").then(async () => {
  const bots = (await api("GET", "/api/admin/personas")).bots;
  const select = document.getElementById("bot");
  select.replaceChildren(...bots.map(b => el("option", {value: b}, b)));
  select.addEventListener("change", () => load(select.value));
  document.getElementById("persona").addEventListener("submit", async e => {
    e.preventDefault();
    const error = document.getElementById("error"), saved = document.getElementById("saved");
    error.textContent = ""; saved.textContent = "";
    try {
      const r = await api("PUT", "/api/admin/personas/" + encodeURIComponent(select.value), {persona: collect()});
      await load(select.value);
      document.getElementById("saved").textContent = "Saved as version " + r.version;
    } catch (err) { error.textContent = err.message; }
  });
  document.getElementById("try").addEventListener("click", async () => {
    const result = document.getElementById("result");
    result.replaceChildren(el("dd", {className: "muted"}, "running…"));
    try {
      const r = await api("POST", `/api/admin/personas/${encodeURIComponent(select.value)}/preview`,
                          {text: document.getElementById("sample").value, persona: collect()});
      result.replaceChildren(...[["Intent", r.intent + " (" + Math.round(r.confidence * 100) + "%)"], ["Route", r.route],
        ["Why", r.reason], ["Reply", r.reply], ["Buttons", (r.buttons || []).join(" · ") || "none"]]
        .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    } catch (err) { result.replaceChildren(el("dd", {className: "error"}, err.message)); }
  });
  if (bots.length) await load(bots[0]);
});
