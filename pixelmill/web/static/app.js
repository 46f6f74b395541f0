// pixelmill dashboard: shared behaviour (copy buttons, confirmations, the self-updating runs list).
"use strict";

const pm = {
  csrf() { const m = document.querySelector('meta[name="csrf-token"]'); return m ? m.content : ""; },
  headers(extra) { return Object.assign({"X-Requested-With": "fetch", "X-CSRF-Token": pm.csrf()}, extra || {}); },
};
window.pm = pm;

function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const ta = document.createElement("textarea");
  ta.value = text; ta.setAttribute("readonly", ""); ta.className = "offscreen";
  document.body.appendChild(ta); ta.select();
  try { document.execCommand("copy"); } finally { ta.remove(); }
  return Promise.resolve();
}

document.addEventListener("click", (ev) => {
  const btn = ev.target.closest("button[data-copy]");
  if (!btn) return;
  const label = btn.textContent;
  copyText(btn.dataset.copy).then(() => { btn.textContent = "Copied"; },
                                  () => { btn.textContent = "Copy failed"; })
    .finally(() => setTimeout(() => { btn.textContent = label; }, 1500));
});

document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) ev.preventDefault();
});

// The runs list (and the health page) refresh themselves every few seconds while the tab is visible,
// but never under the keyboard focus of someone working in them.
function poll(box) {
  let busy = false, timer = null;
  const tick = async () => {
    if (busy || document.hidden || box.contains(document.activeElement)) return;
    busy = true;
    try {
      const r = await fetch(box.dataset.poll, {headers: pm.headers(), cache: "no-store"});
      if (r.status === 401) { clearInterval(timer); return; }
      if (r.ok) {
        const html = await r.text();
        if (html !== box.dataset.last) { box.innerHTML = html; box.dataset.last = html; }
      }
    } catch (e) { /* the server may be restarting; try again next tick */ }
    finally { busy = false; }
  };
  timer = setInterval(tick, Number(box.dataset.interval || 3000));
}

document.addEventListener("DOMContentLoaded", () => document.querySelectorAll("[data-poll]").forEach(poll));
