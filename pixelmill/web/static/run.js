// pixelmill dashboard: the run page follows its run live through the event stream (EventSource).
"use strict";

(function () {
  const root = document.getElementById("run");
  if (!root) return;

  function badge(status) {
    const s = document.createElement("span");
    s.className = "badge s-" + status; s.textContent = status; return s;
  }
  function row(stepId) { return document.querySelector('#steps tr[data-step="' + CSS.escape(stepId) + '"]'); }
  function setStepStatus(stepId, status) {
    const tr = row(stepId); if (!tr) return null;
    tr.className = "st-" + status;
    const cell = tr.querySelector(".step-status"); cell.replaceChildren(badge(status));
    return tr;
  }
  function secs(v) {
    if (v === null || v === undefined) return "—";
    return v < 1 ? Math.round(v * 1000) + " ms" : v < 60 ? v.toFixed(1) + " s" : Math.floor(v / 60) + " min " + Math.round(v % 60) + " s";
  }
  const live = document.getElementById("live");
  const say = (text) => { if (live) live.textContent = text; };

  // AI labels of each image: read on demand (at once for the run's output image, which starts open).
  document.querySelectorAll("details[data-labels]").forEach((d) => {
    const load = async () => {
      if (d.dataset.loaded) return; d.dataset.loaded = "1";
      const body = d.querySelector(".labels-body");
      try {
        const r = await fetch(d.dataset.labels, {headers: window.pm.headers()});
        body.innerHTML = r.ok ? await r.text() : "could not read the labels (" + r.status + ")";
        body.classList.remove("muted");
      } catch (e) { body.textContent = "could not read the labels"; }
    };
    d.addEventListener("toggle", () => { if (d.open) load(); });
    if (d.open) load();
  });

  const url = root.dataset.events;
  if (!url || !window.EventSource) return;
  const es = new EventSource(url);
  const on = (kind, fn) => es.addEventListener(kind, (m) => { try { fn(JSON.parse(m.data)); } catch (e) { console.error(e); } });

  on("run.started", () => { document.getElementById("run-status").replaceChildren(badge("running")); say("Running…"); });
  on("step.started", (ev) => {
    const tr = setStepStatus(ev.step_id, "running");
    if (tr) tr.querySelector(".attempts").firstChild.textContent = String(ev.data.attempt || 1);
    say(ev.step_id + ": started" + (ev.data.attempt > 1 ? " (attempt " + ev.data.attempt + ")" : ""));
  });
  on("step.progress", (ev) => {
    const tr = row(ev.step_id); if (!tr) return;
    const box = tr.querySelector(".prog"); const bar = box.querySelector("progress");
    const total = ev.data.total || 0, value = ev.data.value || 0;
    box.hidden = false;
    if (total) { bar.max = total; bar.value = value; } else { bar.removeAttribute("value"); }
    bar.dataset.live = "1";
    const text = (ev.data.message ? ev.data.message + " " : "") + Math.round(value) + " / " + (total ? Math.round(total) : "?");
    box.querySelector(".ptext").textContent = text;
    say(ev.step_id + ": " + text);
  });
  on("step.retrying", (ev) => {
    const tr = row(ev.step_id);
    if (tr) tr.querySelector(".attempts").firstChild.textContent = String(ev.data.attempt);
    say(ev.step_id + ": retrying in " + secs(ev.data.delay_s) + " after " + ((ev.data.error || {}).message || "an error"));
  });
  const finished = (ev) => {
    const tr = setStepStatus(ev.step_id, ev.data.status || "succeeded");
    if (tr && ev.data.duration_s !== undefined) tr.querySelector(".dur").textContent = secs(ev.data.duration_s);
  };
  on("step.finished", finished);
  on("step.failed", finished);
  on("step.skipped", finished);
  on("run.finished", (ev) => {
    es.close();
    document.getElementById("run-status").replaceChildren(badge(ev.data.status));
    say("Run " + ev.data.status + "; loading the results…");
    setTimeout(() => window.location.reload(), 300);
  });
  es.addEventListener("end", () => es.close());
})();
