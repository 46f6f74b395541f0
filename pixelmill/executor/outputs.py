"""What a step hands to the run store, and the artifacts its outputs name.

The size limit of one stored value (``MAX_STORED_BYTES`` of JSON: a step's rendered inputs, its outputs,
the workflow outputs), the output cache's key, cached outputs whose artifacts still exist and their
adoption into the run that reuses them, and the partial files of unfinished steps removed when a run
resumes after a crash.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel

MAX_STORED_BYTES = 8 * 1024 * 1024  # one step's inputs or outputs, as JSON


def unstorable(value, what: str, max_bytes: int) -> str | None:
    """Why ``value`` cannot go into the run store (None if it can)."""
    try:
        size = len(json.dumps(value, allow_nan=False, default=_not_json).encode())
    except (TypeError, ValueError) as exc:
        return f"{what} cannot be stored: {exc}"
    if size > max_bytes:
        return (f"{what} take {size:,} bytes as JSON, more than the run store keeps for one value "
                f"({max_bytes:,}); pass large data as an artifact file")
    return None


def _not_json(value):
    raise TypeError(f"a {type(value).__name__} is not JSON data")


def cache_key(info, config: BaseModel, inputs: BaseModel) -> str:
    payload = json.dumps([info.type, info.version, config.model_dump(mode="json"), inputs.model_dump(mode="json")],
                         sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def artifacts_exist(outputs, artifacts) -> bool:
    if isinstance(outputs, dict):
        if outputs.get("kind") == "artifact" and "run_id" in outputs and "name" in outputs:
            try:
                return artifacts.exists(outputs["run_id"], outputs["name"])
            except ValueError:  # not a plain name: not one of ours
                return False
        return all(artifacts_exist(v, artifacts) for v in outputs.values())
    if isinstance(outputs, list):
        return all(artifacts_exist(v, artifacts) for v in outputs)
    return True


def adopt_artifacts(outputs, artifacts, run_id: str):
    """Cached outputs with their artifacts copied into ``run_id`` (a folder store hard-links them), so
    the new run owns its files and keeps them when the run that made them is deleted."""
    if isinstance(outputs, dict):
        if outputs.get("kind") == "artifact" and "run_id" in outputs and "name" in outputs:
            if outputs["run_id"] == run_id:
                return outputs
            if not artifacts.exists(run_id, outputs["name"]):
                artifacts.copy(outputs["run_id"], outputs["name"], run_id)
            return {**outputs, "run_id": run_id}
        return {k: adopt_artifacts(v, artifacts, run_id) for k, v in outputs.items()}
    if isinstance(outputs, list):
        return [adopt_artifacts(v, artifacts, run_id) for v in outputs]
    return outputs


def discard_partial_artifacts(artifacts, run_id: str, finished: dict[str, dict], step_ids) -> None:
    """Files of steps that had not finished when the run was interrupted: they are written again on resume."""
    kept = {name for row in finished.values() for name in _artifact_names(row.get("outputs"))}
    redo = [sid for sid in step_ids if sid not in finished]
    for info in artifacts.list(run_id):
        name = info.name
        if name in kept:
            continue
        owner = max((sid for sid in step_ids if name.startswith(f"{sid}-")), key=len, default=None)
        if owner in redo:
            artifacts.delete(run_id, name)


def _artifact_names(value):
    if isinstance(value, dict):
        if value.get("kind") == "artifact" and "name" in value:
            yield value["name"]
        for v in value.values():
            yield from _artifact_names(v)
    elif isinstance(value, list):
        for v in value:
            yield from _artifact_names(v)
