// pixelmill dashboard: the workflow editor. Line numbers, live validation through the server's own
// validator (debounced), problems marked at their line, Ctrl+S to save.
"use strict";

(function () {
  const code = document.getElementById("code");
  if (!code) return;
  const gutter = document.getElementById("gutter");
  const list = document.getElementById("problems");
  const check = document.getElementById("check");
  const form = document.getElementById("editor-form");
  const fileInput = document.getElementById("file");
  let bad = new Map();  // line -> messages
  list.querySelectorAll("li[data-line]").forEach((li) => {
    const n = Number(li.dataset.line); bad.set(n, (bad.get(n) || []).concat([li.textContent.trim()]));
  });

  function drawGutter() {
    const lines = code.value.split("\n").length;
    const frag = document.createDocumentFragment();
    for (let i = 1; i <= lines; i++) {
      const s = document.createElement("span");
      s.textContent = String(i); s.dataset.line = String(i);
      if (bad.has(i)) { s.className = "bad"; s.title = bad.get(i).join("\n"); }
      frag.appendChild(s); frag.appendChild(document.createTextNode("\n"));
    }
    gutter.replaceChildren(frag);
    gutter.scrollTop = code.scrollTop;
  }

  function lineHeight() { return parseFloat(getComputedStyle(code).lineHeight) || 19.5; }

  function goto(line, col) {
    const lines = code.value.split("\n");
    line = Math.max(1, Math.min(line, lines.length));
    let start = 0;
    for (let i = 0; i < line - 1; i++) start += lines[i].length + 1;
    const end = start + lines[line - 1].length;
    code.focus();
    code.setSelectionRange(Math.min(start + Math.max(0, (col || 1) - 1), end), end);
    code.scrollTop = Math.max(0, (line - 4) * lineHeight());
    gutter.scrollTop = code.scrollTop;
  }

  function render(result) {
    bad = new Map();
    list.replaceChildren();
    for (const p of result.problems) {
      bad.set(p.line, (bad.get(p.line) || []).concat([p.message]));
      const li = document.createElement("li"); li.dataset.line = String(p.line);
      const b = document.createElement("button");
      b.type = "button"; b.className = "link goto"; b.dataset.line = p.line; b.dataset.col = p.col;
      b.textContent = "line " + p.line + ":" + p.col;
      li.append(b, " " + p.message);
      if (p.hint) { const h = document.createElement("span"); h.className = "muted"; h.textContent = " (" + p.hint + ")"; li.append(h); }
      list.appendChild(li);
    }
    const n = result.problems.length;
    check.textContent = n ? n + " problem" + (n === 1 ? "" : "s") : "valid" + (result.name ? ": workflow " + result.name : "");
    check.className = "check " + (n ? "bad" : "ok");
    drawGutter();
  }

  let timer = null, seq = 0;
  async function validate() {
    const mine = ++seq;
    try {
      const r = await fetch(code.dataset.validate, {
        method: "POST", headers: window.pm.headers({"Content-Type": "application/json"}),
        body: JSON.stringify({yaml: code.value, file: (fileInput && fileInput.value) || "workflow.yaml"}),
      });
      if (mine !== seq) return;  // a newer check is on its way
      if (r.ok) render(await r.json());
      else check.textContent = "could not check (" + r.status + ")";
    } catch (e) { check.textContent = "could not reach the server to check"; }
  }

  code.addEventListener("input", () => { drawGutter(); check.textContent = "checking…"; clearTimeout(timer); timer = setTimeout(validate, 300); });
  code.addEventListener("scroll", () => { gutter.scrollTop = code.scrollTop; });
  list.addEventListener("click", (ev) => {
    const b = ev.target.closest("button.goto"); if (b) goto(Number(b.dataset.line), Number(b.dataset.col));
  });
  document.addEventListener("keydown", (ev) => {
    if ((ev.ctrlKey || ev.metaKey) && ev.key.toLowerCase() === "s") { ev.preventDefault(); form.requestSubmit(); }
  });
  drawGutter();
  const m = /^#L(\d+)$/.exec(window.location.hash);
  if (m) goto(Number(m[1]), 1);
  check.className = "check " + (bad.size ? "bad" : "ok");
})();
