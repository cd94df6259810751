"use strict";
const error = document.getElementById("error");

async function act(method, path, body) {
  error.textContent = "";
  try { await api(method, path, body); await load(); } catch (err) { error.textContent = err.message; }
}

function resetForm(name) {
  const input = el("input", {type: "password", placeholder: "new password", autocomplete: "new-password"});
  return el("form", {className: "kv", onsubmit: e => {
    e.preventDefault(); act("POST", `/api/admin/accounts/${name}/password`, {password: input.value});
  }}, input, el("button", {type: "submit", className: "secondary"}, "Set password"));
}

async function load() {
  const data = await api("GET", "/api/admin/accounts");
  document.getElementById("accounts").replaceChildren(...data.accounts.map(a => el("tr", {dataset: {account: a.username}},
    el("td", {}, a.username), el("td", {}, a.role), el("td", {}, a.disabled ? "disabled" : "active"),
    el("td", {}, new Date(a.created_at * 1000).toLocaleDateString()),
    el("td", {},
      el("button", {type: "button", className: a.disabled ? "secondary" : "danger",
        onclick: () => act("POST", `/api/admin/accounts/${a.username}/${a.disabled ? "enable" : "disable"}`)},
        a.disabled ? "Enable" : "Disable"),
      resetForm(a.username)))));
}

deskNav("accounts").then(() => {
  document.getElementById("create").addEventListener("submit", e => {
    e.preventDefault();
    act("POST", "/api/admin/accounts", {username: document.getElementById("username").value,
      role: document.getElementById("role").value, password: document.getElementById("password").value});
  });
  return load();
});
