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


CONFIG_FILES = ("*.json", "*.txt", "*.model", "*.tiktoken")


def _weights(prefix: str, variant: str | None) -> list[str]:
    if variant:
        return [f"{prefix}*.{variant}.safetensors", f"{prefix}*.{variant}-*-of-*.safetensors"]
    return [f"{prefix}*model.safetensors", f"{prefix}*model-*-of-*.safetensors"]


def pull_patterns(model_index: dict | None, variant: str | None = None) -> list[str]:
    """The files a load reads: for a diffusers pipeline its model_index.json and, per component it names,
    that folder's configs/tokenizer files and safetensors weights (of ``variant`` when given); no .bin/.ckpt
    copies, no other variants, no folders the pipeline does not use. Otherwise a transformers folder's
    configs and weights."""
    if not model_index:
        return [*CONFIG_FILES, *_weights("", variant)]
    patterns = ["model_index.json"]
    for name, spec in model_index.items():
        if name.startswith("_") or not isinstance(spec, list) or len(spec) != 2 or spec[0] is None:
            continue
        patterns += [f"{name}/{p}" for p in CONFIG_FILES] + _weights(f"{name}/", variant)
    return patterns


@models_cmd.command("pull")
@click.argument("model_id")
@click.option("--revision", default=None, help="branch, tag or commit")
@click.option("--variant", default=None, help="weight variant, e.g. fp16 (smaller downloads where published)")
def pull_cmd(model_id: str, revision: str | None, variant: str | None) -> None:
    """Download MODEL_ID into the local Hugging Face cache (needs internet), for offline use later: only
    the files its pipeline loads."""
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError as exc:  # pragma: no cover
        click.echo(f"huggingface_hub is not installed: {exc}", err=True)
        sys.exit(1)
    try:
        try:
            index = json.loads(Path(hf_hub_download(model_id, "model_index.json", revision=revision)).read_text())
        except Exception as exc:  # noqa: BLE001 - not a pipeline repo (or offline: the next call says so)
            if "EntryNotFound" not in type(exc).__name__ and "404" not in str(exc):
                raise
            index = None
        path = snapshot_download(model_id, revision=revision, allow_patterns=pull_patterns(index, variant))
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, auth: all told plainly
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        click.echo(f"could not download '{model_id}': {first}. This needs internet access to the Hugging Face "
                   "hub (HF_HUB_OFFLINE must be unset); gated models also need HF_TOKEN.", err=True)
        sys.exit(1)
    click.echo(f"{model_id} is in the cache at {path}")


COMMANDS = [models_cmd]
