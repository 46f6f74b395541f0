"""The workflow editor: edit a file of the served folder with live validation (the loader's own problems,
at their line), save it keeping the previous version under ``.versions/``, and reload the service; or
start a new file from an example."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from flask import flash, jsonify, redirect, render_template, request, url_for

from ..loader import load_text
from ..problems import WorkflowInvalid
from .blueprint import PageError, bp, service

FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,100}\.ya?ml$")
VERSIONS = ".versions"
MAX_TEXT = 1024 * 1024


def _folder() -> Path:
    folder = service().workflows.folder
    if folder is None:
        raise PageError(409, "No workflow folder", "This server was started without a workflow folder "
                                                   "(pixelmill serve --workflows DIR), so there is nothing to edit.")
    return Path(folder)


def _path(name: str, must_exist: bool = True) -> Path:
    """A file directly in the workflow folder, by a plain name (no separators, no dot files)."""
    if not FILENAME.match(name or ""):
        raise PageError(400, "Bad file name", "A workflow file name uses letters, digits, '.', '-' and '_' and "
                                              "ends in .yaml or .yml, e.g. my-workflow.yaml.")
    path = _folder() / name
    if must_exist and not path.is_file():
        raise PageError(404, "No such file", f"There is no {name} in the workflow folder.")
    return path


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _problems(text: str, name: str) -> tuple[list[dict], str | None]:
    """Every problem the loader finds, plus names and webhook paths another served file already uses."""
    svc = service()
    try:
        loaded = load_text(text, name, svc.runtime.registry)
    except WorkflowInvalid as exc:
        return [p.to_dict() for p in exc.problems], None
    problems = []
    for other in svc.workflows.all():
        if Path(other.file).name == name:
            continue
        if other.name == loaded.name:
            problems.append({"file": name, "line": 1, "col": 1, "message": f"workflow name '{loaded.name}' is "
                             f"already used by {Path(other.file).name}", "hint": "choose another name"})
        hook, mine = other.workflow.on.webhook, loaded.workflow.on.webhook
        if hook is not None and mine is not None and hook.path.strip("/") == mine.path.strip("/"):
            problems.append({"file": name, "line": 1, "col": 1, "message": f"webhook path '{mine.path}' is "
                             f"already served by {Path(other.file).name}", "hint": "choose another path"})
    return problems, loaded.name


def _versions(name: str) -> list[str]:
    folder = _folder() / VERSIONS
    if not folder.is_dir():
        return []
    return sorted((p.name for p in folder.iterdir() if p.name.startswith(name + ".")), reverse=True)[:20]


def _files() -> list[dict]:
    folder = _folder()
    served = {Path(w.file).name: w.name for w in service().workflows.all()}
    return [{"name": p.name, "workflow": served.get(p.name)} for p in sorted(folder.iterdir())
            if p.is_file() and FILENAME.match(p.name)]


def _render(name: str, text: str, *, new: bool, base: str, problems=None, status: int = 200, example=None):
    return render_template("editor.html", title=f"Edit {name}", name=name, text=text, new=new, base=base,
                           problems=problems or [], versions=[] if new else _versions(name), files=_files(),
                           example=example), status


@bp.get("/editor")
def editor():
    name = request.args.get("file")
    if not name:
        return render_template("editor_index.html", title="Editor", files=_files())
    path = _path(name)
    version = request.args.get("version")
    text = path.read_text(encoding="utf-8", errors="replace")
    base = _digest(text)
    if version:
        if version not in _versions(name):
            raise PageError(404, "No such version", f"{name} has no saved version {version!r}.")
        text = (_folder() / VERSIONS / version).read_text(encoding="utf-8", errors="replace")
        flash(f"Loaded the saved version {version}; save to make it the current file.", "info")
    return _render(name, text, new=False, base=base, problems=_problems(text, name)[0])


@bp.get("/editor/new")
def new_workflow():
    example = request.args.get("example") or ""
    stem = "my-workflow"
    text = "name: my-workflow\ndescription: ''\nsteps:\n  - id: first\n    node: prompt\n    with:\n" \
           "      template: \"hello\"\n"
    if example:
        src = _path(example)
        stem = re.sub(r"\.ya?ml$", "", example) + "-copy"
        text = src.read_text(encoding="utf-8", errors="replace")
        text = re.sub(r"(?m)^name:\s*.*$", f"name: {stem}", text, count=1)
        hook = text.find("webhook")
        if hook >= 0:  # a copy must not claim the example's webhook path
            text = text[:hook] + re.sub(r"(\bpath:\s*)(['\"]?)[A-Za-z0-9:_./-]+\2", lambda m: m.group(1) + stem,
                                        text[hook:], count=1)
    n, name = 1, f"{stem}.yaml"
    while (_folder() / name).exists():
        n += 1
        name = f"{stem}-{n}.yaml"
    return _render(name, text, new=True, base="", problems=_problems(text, name)[0], example=example)


@bp.post("/editor/validate")
def validate():
    body = request.get_json(silent=True) or {}
    text, name = body.get("yaml"), body.get("file") or "workflow.yaml"
    if not isinstance(text, str) or not isinstance(name, str) or len(text) > MAX_TEXT:
        return jsonify({"error": "invalid_body", "message": "send {\"yaml\": text, \"file\": name}"}), 400
    problems, wf_name = _problems(text, Path(name).name[:120])
    return jsonify({"valid": not problems, "name": wf_name, "problems": problems})


@bp.post("/editor/save")
def save():
    svc = service()
    name = request.form.get("file", "")
    new = request.form.get("new") == "1"
    text = request.form.get("text", "").replace("\r\n", "\n")
    base = request.form.get("base", "")
    path = _path(name, must_exist=not new)
    if len(text) > MAX_TEXT:
        raise PageError(413, "Too large", f"A workflow file may hold at most {MAX_TEXT} bytes.")
    problems, _ = _problems(text, name)
    if problems:
        return _render(name, text, new=new, base=base, problems=problems, status=400)
    folder = _folder()
    kept = None
    if new and path.exists():
        flash(f"{name} already exists; pick another file name.", "error")
        return _render(name, text, new=True, base="", status=409)
    if not new:
        current = path.read_text(encoding="utf-8", errors="replace")
        if base and _digest(current) != base:
            flash(f"{name} changed on disk after you opened it; your text is below, the file was not saved. "
                  "Copy your changes, reload the file and apply them again.", "error")
            return _render(name, text, new=False, base=base, status=409)
        if current == text:
            flash("No changes to save.", "info")
            return redirect(url_for("web.editor", file=name))
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
        (folder / VERSIONS).mkdir(exist_ok=True)
        kept = f"{name}.{stamp}"
        (folder / VERSIONS / kept).write_text(current, encoding="utf-8")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)
    result = svc.reload()
    own = [p for p in result.get("problems", []) if Path(p["file"]).name == name]
    changes = ", ".join(f"{k} {', '.join(v)}" for k in ("added", "changed", "removed") if (v := result.get(k)))
    if own:
        flash(f"Saved {name}, but the service did not load it: " + "; ".join(p["message"] for p in own), "error")
    else:
        flash(f"Saved {name} and reloaded the workflows ({changes or 'no change in served workflows'})."
              + (f" The previous version is kept as {VERSIONS}/{kept}." if kept else ""), "ok")
    return redirect(url_for("web.editor", file=name))
