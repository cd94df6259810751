"use strict";
deskNav("audit").then(async () => {
  const data = await api("GET", "/api/admin/audit?limit=500");
  document.getElementById("entries").replaceChildren(...data.entries.map(e => el("tr", {},
    el("td", {title: new Date(e.at * 1000).toLocaleString()}, when(e.at)), el("td", {}, e.actor),
    el("td", {}, e.action), el("td", {}, e.detail))));
});
