// mtlsgate dashboard: small progressive enhancements; every page also works without them.
"use strict";

// A select that shows the fieldset matching its value (Add Certificate's "Certificate Authority").
// The others get `hidden` and `disabled`: their controls leave the accessibility tree and the form.
for (const select of document.querySelectorAll("select[data-switch]")) {
  const key = select.dataset.switch;
  const update = () => {
    for (const set of select.form.querySelectorAll(`fieldset[data-${key}]`)) {
      const shown = set.dataset[key] === select.value;
      set.hidden = !shown;
      set.disabled = !shown;
    }
  };
  select.addEventListener("change", update);
  update();
}

// Menu buttons ("Actions for NAME"): open with click, Enter, Space or ArrowDown; Escape closes.
function closeMenu(button, focus) {
  const menu = document.getElementById(button.getAttribute("aria-controls"));
  button.setAttribute("aria-expanded", "false");
  menu.hidden = true;
  if (focus) button.focus();
}
for (const button of document.querySelectorAll("button[aria-haspopup='menu']")) {
  const menu = document.getElementById(button.getAttribute("aria-controls"));
  const items = () => [...menu.querySelectorAll("[role='menuitem']")];
  const open = (focusFirst) => {
    for (const other of document.querySelectorAll("button[aria-haspopup='menu'][aria-expanded='true']")) {
      if (other !== button) closeMenu(other, false);
    }
    button.setAttribute("aria-expanded", "true");
    menu.hidden = false;
    if (focusFirst && items().length) items()[0].focus();
  };
  button.addEventListener("click", () => {
    if (button.getAttribute("aria-expanded") === "true") closeMenu(button, false);
    else open(false);
  });
  button.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown") { e.preventDefault(); open(true); }
    else if (e.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
      e.preventDefault(); closeMenu(button, true);
    }
  });
  menu.addEventListener("keydown", (e) => {
    const list = items();
    const i = list.indexOf(document.activeElement);
    if (e.key === "Escape") { e.preventDefault(); closeMenu(button, true); }
    else if (e.key === "ArrowDown") { e.preventDefault(); list[(i + 1) % list.length].focus(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); list[(i - 1 + list.length) % list.length].focus(); }
    else if (e.key === "Tab") { closeMenu(button, false); }
  });
}
document.addEventListener("click", (e) => {
  for (const button of document.querySelectorAll("button[aria-haspopup='menu'][aria-expanded='true']")) {
    const menu = document.getElementById(button.getAttribute("aria-controls"));
    if (!button.contains(e.target) && !menu.contains(e.target)) closeMenu(button, false);
  }
});

// Links styled as buttons answer Space like buttons do.
for (const link of document.querySelectorAll("a[role='button']")) {
  link.addEventListener("keydown", (e) => {
    if (e.key === " ") { e.preventDefault(); link.click(); }
  });
}

// The expression editor's caret diagnostic as you type, from the server's rules engine.
for (const area of document.querySelectorAll("textarea[data-check]")) {
  const out = document.getElementById("expression-live");
  const csrf = area.form.querySelector("input[name='csrf_token']").value;
  let timer = null;
  let sent = 0;
  area.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++sent;
      const body = new URLSearchParams({ csrf_token: csrf, expression: area.value });
      try {
        const response = await fetch(area.dataset.check, { method: "POST", body, credentials: "same-origin" });
        if (mine !== sent || !response.ok) return; // a newer check is on its way
        const text = await response.text();
        out.textContent = text;
        area.setAttribute("aria-invalid", text ? "true" : "false");
      } catch (_) { /* offline: the diagnostic comes back on Deploy */ }
    }, 250);
  });
}
