"""``pixelmill run``, ``validate``, ``schema`` and ``nodes``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..executor import RunResult
from ..inputs import InputError
from ..loader import load_file, load_many, workflow_files
from ..problems import WorkflowInvalid, did_you_mean
from ..runtime import Runtime
from ..schema import workflow_schema
from ..status import RunStatus
from . import nodeinfo
from .common import echo_json, is_tty, print_problems, registry
from .oneshot import close_frozen, one_shot
from .progress import Progress

EXIT = {RunStatus.SUCCEEDED: 0, RunStatus.FAILED: 1, RunStatus.BLOCKED: 3, RunStatus.CANCELLED: 4}


def _parse_inputs(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"'{pair}' is not key=value", param_hint="-i/--input")
        out[key.strip()] = value
    return out


@click.command("run")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-i", "--input", "pairs", multiple=True, metavar="KEY=VALUE", help="a workflow input (repeatable)")
@click.option("--json", "as_json", is_flag=True, help="print the run result as JSON")
@one_shot()
def run_cmd(file: Path, pairs, as_json: bool) -> None:
    """Run a workflow FILE once, here, with live per-step progress."""
    given = _parse_inputs(pairs)
    runtime = Runtime.create(registry=registry())
    runtime.store.recover_interrupted()
    try:
        try:
            loaded = load_file(file, runtime.registry)
        except WorkflowInvalid as exc:
            print_problems(exc)
            sys.exit(2)
        unsubscribe = runtime.bus.subscribe(Progress(loaded).on_event) if (is_tty() and not as_json) else None
        try:
            result = runtime.run(loaded, given, trigger={"source": "cli"}, trigger_kind="manual")
        except InputError as exc:
            for problem in exc.problems:
                click.echo(f"{file}: {problem}", err=True)
            sys.exit(2)
        finally:
            if unsubscribe:
                unsubscribe()
        _report(result, as_json, runtime.settings.artifacts_root)
        sys.exit(EXIT.get(result.status, 1))
    finally:
        close_frozen(runtime.close)


def _report(result: RunResult, as_json: bool, artifacts_root: Path | None = None) -> None:
    if as_json:
        echo_json({
            "run_id": result.run_id, "workflow": result.workflow, "status": result.status.value,
            "outputs": result.outputs, "error": _public_error(result.error),
            "steps": {sid: {"status": r.status.value, "outputs": r.outputs, "attempts": r.attempts,
                            "duration_s": round(r.duration_s, 4), "error": _public_error(r.error)}
                      for sid, r in result.steps.items()},
        })
        return
    click.echo(f"run {result.run_id}: {result.status.value}")
    for key, value in result.outputs.items():
        if artifacts_root is not None and isinstance(value, dict) and value.get("kind") == "artifact":
            value = str(artifacts_root / value.get("run_id", "") / value.get("name", ""))  # where the file is
        click.echo(f"  {key}: {json.dumps(value, default=str) if not isinstance(value, str) else value}")
    if result.error:
        click.echo(f"  error: {result.error['message']}", err=True)


def _public_error(error):
    return None if error is None else {k: v for k, v in error.items() if k != "traceback"}


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print {valid, workflows, problems} as JSON on stdout")
def validate_cmd(paths, as_json: bool) -> None:
    """Check workflow files (or folders of them); print every problem as file:line:col."""
    files: list[Path] = []
    for p in paths:
        files.extend(workflow_files(p) if p.is_dir() else [p])
    loaded, problems = load_many(files, registry())
    for warning in (w for wf in loaded for w in wf.warnings):
        click.echo(str(warning), err=True)
    if as_json:
        echo_json(_validation_json(files, loaded, problems))
        sys.exit(1 if problems else 0)
    if problems:
        print_problems(WorkflowInvalid(problems))
        sys.exit(1)
    for wf in loaded:
        click.echo(f"ok: {wf.file} ({wf.name}, {len(wf.order)} steps"
                   f"{f', {len(wf.warnings)} warnings' if wf.warnings else ''})")


def _validation_json(files, loaded, problems) -> dict:
    bad = {p.file for p in problems}
    return {
        "valid": not problems,
        "files": len(files),
        "workflows": [{"file": str(wf.file), "name": wf.name, "steps": len(wf.order), "valid": str(wf.file) not in bad}
                      for wf in loaded],
        "problems": [p.to_dict() for p in sorted(problems)],
    }


@click.command("schema")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="write here instead of stdout")
def schema_cmd(output: Path | None) -> None:
    """Write the JSON Schema for workflow files (for editor autocompletion)."""
    text = json.dumps(workflow_schema(registry()), indent=2, sort_keys=True) + "\n"
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)


@click.command("nodes")
@click.argument("node_type", required=False)
@click.option("--json", "as_json", is_flag=True, help="include each node's config, input and output schemas")
def nodes_cmd(node_type: str | None, as_json: bool) -> None:
    """List node types (type, version, where they came from, inputs, outputs), or describe NODE_TYPE."""
    reg = registry()
    infos = list(reg)
    if node_type:
        info = reg.get(node_type.partition("@")[0])
        if info is None:
            hint = did_you_mean(node_type, reg.types())
            click.echo(f"error: no node type '{node_type}'{' (' + hint + ')' if hint else ''}; "
                       f"installed: {', '.join(reg.types())}", err=True)
            sys.exit(1)
        infos = [info]
    if as_json:
        data = [{
            "type": i.type, "version": i.version, "source": i.source, "gpu": i.cls.uses_gpu,
            "deterministic": i.cls.deterministic, "description": nodeinfo.description(i.cls),
            "summary": nodeinfo.summary(i.cls),
            "config": i.cls.Config.model_json_schema(), "inputs": i.cls.Inputs.model_json_schema(),
            "outputs": i.cls.Outputs.model_json_schema(),
        } for i in infos]
        echo_json(data[0] if node_type else data)
        return
    if node_type:
        click.echo("\n".join(nodeinfo.details(infos[0])))
        return
    for i in infos:
        click.echo("\n".join(nodeinfo.brief(i)))
    click.echo("\none node's fields, types and defaults: pixelmill nodes TYPE", err=True)


COMMANDS = [run_cmd, validate_cmd, schema_cmd, nodes_cmd]
