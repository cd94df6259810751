"use strict";
document.getElementById("nav").replaceChildren(el("span", {className: "brand"}, "Support desk"));
document.getElementById("login").addEventListener("submit", async e => {
  e.preventDefault();
  const error = document.getElementById("error");
  error.textContent = "";
  try {
    await api("POST", "/api/auth/login", {username: document.getElementById("username").value,
                                          password: document.getElementById("password").value});
    const next = new URLSearchParams(location.search).get("next") || "/desk/";
    location.href = next.startsWith("/desk") ? next : "/desk/";  // never off-site
  } catch (err) { error.textContent = err.message; }
});
