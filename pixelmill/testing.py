"""Helpers for node authors: check a node class against the contract and run it once in isolation.

```python
from pixelmill.testing import check_node
outputs = check_node(MyNode, inputs={"text": "hi"}, config={"loud": True})
```
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import BaseModel

from .node import Node, NodeContext, Services
from .registry import check_contract
from .secrets import Secrets


def make_context(tmp: Path, *, step_id: str = "step", run_id: str = "testrun", environ=None,
                 services: Services | None = None) -> NodeContext:
    """A NodeContext writing artifacts under ``tmp``; progress events are collected in ``ctx.progress_log``."""
    log: list = []
    ctx = NodeContext(run_id=run_id, step_id=step_id, workflow="test", artifacts_root=Path(tmp),
                      secrets=Secrets(environ if environ is not None else {}),
                      progress_cb=lambda v, t, m: log.append((v, t, m)), services=services)
    ctx.progress_log = log
    return ctx


def check_node(cls: type[Node], *, inputs: dict | None = None, config: dict | None = None, environ=None,
               artifacts_dir: Path | None = None) -> BaseModel:
    """Assert that ``cls`` follows the node contract, run it once and return its validated outputs.

    Checks: contract attributes (type, version, docstring, pydantic models, run), JSON schemas for config,
    inputs and outputs, that ``run`` returns the declared Outputs, and for cacheable calls (``node.cacheable(inputs)``) that a
    second run with the same inputs returns the same outputs.
    """
    check_contract(cls)
    for model in (cls.Config, cls.Inputs, cls.Outputs):
        model.model_json_schema()
    node = cls(cls.Config.model_validate(config or {}))
    parsed = cls.Inputs.model_validate(inputs or {})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(artifacts_dir or tmp)
        first = _run(node, parsed, make_context(root, environ=environ), cls)
        if node.cacheable(parsed):
            second = _run(node, parsed, make_context(root, environ=environ, run_id="testrun2"), cls)
            if _strip_runs(first.model_dump(mode="json")) != _strip_runs(second.model_dump(mode="json")):
                raise AssertionError(f"{cls.type} is marked deterministic but two runs gave different outputs")
    return first


def _run(node, inputs, ctx, cls):
    out = node.run(inputs, ctx)
    if not isinstance(out, cls.Outputs):
        raise AssertionError(f"{cls.type}.run returned {type(out).__name__}, not {cls.Outputs.__name__}")
    return out


def _strip_runs(value):
    """Artifact references name their run; compare everything else."""
    if isinstance(value, dict):
        return {k: _strip_runs(v) for k, v in value.items() if not (k == "run_id" and value.get("kind") == "artifact")}
    if isinstance(value, list):
        return [_strip_runs(v) for v in value]
    return value
