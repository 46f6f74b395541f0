"""``pixelmill models list`` and ``pixelmill models pull``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..models.locate import ModelNotAvailable, embedded_root
from .common import echo_json


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _embedded() -> tuple[list[dict], str | None]:
    try:
        root = embedded_root()
    except ModelNotAvailable as exc:
        return [], str(exc)
    rows = []
    for kind, what in (("sd", "text-to-image"), ("blip", "captioning")):
        folder = root / kind
        if not folder.is_dir():
            continue
        meta = {}
        if (folder / "pixelmill.json").is_file():
            try:
                meta = json.loads((folder / "pixelmill.json").read_text())
            except ValueError:
                meta = {}
        rows.append({"model": "embedded", "kind": what, "path": str(folder), "bytes": _folder_bytes(folder),
                     "defaults": meta.get("defaults", {})})
    return rows, None


def _cached() -> tuple[list[dict], str | None]:
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError as exc:  # pragma: no cover - huggingface_hub comes with diffusers
        return [], f"huggingface_hub is not installed: {exc}"
    try:
        info = scan_cache_dir()
    except Exception as exc:  # noqa: BLE001 - an absent cache folder is a normal state
        return [], f"no Hugging Face cache at {HF_HUB_CACHE} ({type(exc).__name__})"
    rows = [{"model": repo.repo_id, "kind": repo.repo_type, "path": str(repo.repo_path), "bytes": repo.size_on_disk,
             "revisions": len(repo.revisions)} for repo in sorted(info.repos, key=lambda r: r.repo_id)]
    return rows, None


@click.group("models")
def models_cmd() -> None:
    """Embedded and cached models (offline by default)."""


@models_cmd.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(as_json: bool) -> None:
    """Show the embedded models and what the local Hugging Face cache holds."""
    embedded, emb_note = _embedded()
    cached, cache_note = _cached()
    if as_json:
        echo_json({"embedded": embedded, "cache": cached, "notes": [n for n in (emb_note, cache_note) if n]})
        return
    click.echo("embedded (model: embedded):")
    for row in embedded:
        click.echo(f"  {row['kind']:<14} {row['bytes'] / 2**20:6.1f} MB  {row['path']}")
    if emb_note:
        click.echo(f"  ({emb_note})")
    click.echo("Hugging Face cache:")
    for row in cached:
        click.echo(f"  {row['model']:<50} {row['bytes'] / 2**20:9.1f} MB  ({row['kind']})")
    if not cached:
        click.echo(f"  ({cache_note or 'empty'})")


@models_cmd.command("pull")
@click.argument("model_id")
@click.option("--revision", default=None, help="branch, tag or commit")
def pull_cmd(model_id: str, revision: str | None) -> None:
    """Download MODEL_ID into the local Hugging Face cache (needs internet), for offline use later."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover
        click.echo(f"huggingface_hub is not installed: {exc}", err=True)
        sys.exit(1)
    try:
        path = snapshot_download(model_id, revision=revision,
                                 allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors", "*.md"])
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, auth: all told plainly
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        click.echo(f"could not download '{model_id}': {first}. This needs internet access to the Hugging Face "
                   "hub (HF_HUB_OFFLINE must be unset); gated models also need HF_TOKEN.", err=True)
        sys.exit(1)
    click.echo(f"{model_id} is in the cache at {path}")


COMMANDS = [models_cmd]
