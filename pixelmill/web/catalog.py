"""The gallery (every image across runs), the node catalogue, and the health page."""

from __future__ import annotations

import resource
import sys

from flask import render_template, request

from . import queries
from .blueprint import bp, service

GALLERY_PAGE = 24


@bp.get("/gallery")
def gallery():
    svc = service()
    store = svc.runtime.store
    workflow = (request.args.get("workflow") or "").strip()[:200] or None
    try:
        page = max(1, min(100_000, int(request.args.get("page", 1))))
    except ValueError:
        page = 1
    items, more = queries.gallery(store, workflow=workflow, limit=GALLERY_PAGE, offset=(page - 1) * GALLERY_PAGE)
    names = sorted(set(queries.workflow_names(store)) | {w.name for w in svc.workflows.all()})
    return render_template("gallery.html", title="Gallery", items=items, more=more, page=page, workflow=workflow,
                           workflows=names)


def _type_text(prop: dict, defs: dict) -> str:
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "enum" in prop:
        return " | ".join(repr(v) for v in prop["enum"])
    if "const" in prop:
        return repr(prop["const"])
    if "anyOf" in prop:
        return " | ".join(_type_text(p, defs) for p in prop["anyOf"])
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list[{_type_text(prop.get('items') or {}, defs)}]"
    if kind == "object" and "additionalProperties" in prop and isinstance(prop["additionalProperties"], dict):
        return f"dict[str, {_type_text(prop['additionalProperties'], defs)}]"
    return {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None",
            "object": "object"}.get(kind, str(kind))


def schema_rows(model) -> list[dict]:
    """A pydantic model's fields as rows: name, type, default, required, description."""
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    rows = []
    for name, prop in (schema.get("properties") or {}).items():
        rows.append({"name": name, "type": _type_text(prop, defs), "required": name in required,
                     "default": prop.get("default"), "has_default": "default" in prop,
                     "description": prop.get("description", "")})
    return rows


@bp.get("/nodes")
def nodes():
    svc = service()
    items = []
    for info in svc.runtime.registry:
        cls = info.cls
        doc = (cls.__doc__ or "").strip()
        summary, _, rest = doc.partition("\n\n")
        items.append({"type": info.type, "version": info.version, "source": info.source,
                      "gpu": bool(getattr(cls, "uses_gpu", False)),
                      "deterministic": bool(getattr(cls, "deterministic", False)),
                      "summary": " ".join(summary.split()), "details": rest.strip(),
                      "config": schema_rows(cls.Config), "inputs": schema_rows(cls.Inputs),
                      "outputs": schema_rows(cls.Outputs)})
    items.sort(key=lambda i: i["type"])
    return render_template("nodes.html", title="Nodes", items=items)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (OSError, ValueError):
        return None


def _models(svc) -> tuple[list[dict], int | None]:
    """Models the process-wide model manager holds (only when a node has created it)."""
    from ..models.manager import SERVICE_KEY

    try:
        manager = svc.runtime.services.get(SERVICE_KEY)
    except KeyError:
        return [], None
    rows = [{"key": " · ".join(str(k) for k in m["key"]), "bytes": m["bytes"], "users": m["users"],
             "idle_s": m["idle_s"]} for m in manager.loaded()]
    return rows, manager.budget_bytes or None


def _gpu() -> list[dict]:
    torch = sys.modules.get("torch")  # never import torch just for this page
    if torch is None:
        return []
    try:
        if not torch.cuda.is_available():
            return []
        return [{"name": torch.cuda.get_device_name(i), "allocated": torch.cuda.memory_allocated(i),
                 "reserved": torch.cuda.memory_reserved(i)} for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a driver hiccup must not break the page
        return []


@bp.get("/health")
def health():
    svc = service()
    models, budget = _models(svc)
    jobs = svc.scheduler.jobs() if svc.scheduler is not None else []
    template = "_health_body.html" if request.args.get("fragment") == "body" else "health.html"
    return render_template(
        template, title="Health", queue_depth=svc.queue.depth, busy=svc.queue.busy, workers=svc.queue.workers,
        counts=queries.status_counts(svc.runtime.store), models=models, budget=budget, rss=_rss_bytes(), gpus=_gpu(),
        scheduler=svc.scheduler is not None, jobs=len(jobs), served=len(svc.workflows.all()),
        problems=len(svc.workflows.catalog.problems), started=svc.started)
