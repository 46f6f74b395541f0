"""``pixelmill inspect FILE``: read AI labels back; ``pixelmill c2pa dev-cert DIR``: a local test signer."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import echo_json

EXIT_LABELLED, EXIT_UNLABELLED, EXIT_ERROR = 0, 1, 2


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="machine-readable report")
@click.option("--trust", "trust", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PEM file of root CAs to trust when validating C2PA (e.g. the dev-cert ca.pem)")
@click.option("--watermark-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="a file holding a watermark key to try (besides $PIXELMILL_WATERMARK_KEY, the key stored "
                   "under PIXELMILL_HOME and the public demo key)")
@click.option("--no-c2pa", is_flag=True, help="skip reading C2PA")
def inspect_cmd(file: Path, as_json: bool, trust: Path | None, watermark_key_file: Path | None,
                no_c2pa: bool) -> None:
    """Read every AI label of FILE: IPTC source type, generation parameters, invisible watermark, C2PA.

    Exit code: 0 labelled as AI-generated, 1 not labelled, 2 the file could not be read.
    """
    from ..labels import wmkeys
    from ..labels.inspect import InspectError, format_report, inspect_file
    from ..settings import Settings

    try:
        extra = [wmkeys.NamedKey("file", wmkeys.read_key_file(watermark_key_file))] if watermark_key_file else []
        keys = wmkeys.verification_keys(Settings.from_env().home, extra=extra)
        report = inspect_file(file, watermark_keys=keys,
                              trust_anchors_pem=trust.read_bytes() if trust else None, check_c2pa=not no_c2pa)
    except (InspectError, ValueError) as exc:
        if as_json:
            echo_json({"file": str(file), "error": str(exc), "labelled_ai": None})
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    if as_json:
        echo_json(report)
    else:
        click.echo(format_report(report))
    sys.exit(EXIT_LABELLED if report["labelled_ai"] else EXIT_UNLABELLED)


@click.group("c2pa")
def c2pa_group() -> None:
    """C2PA Content Credentials helpers."""


@c2pa_group.command("dev-cert")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--days", default=365, show_default=True, help="validity")
@click.option("--force", is_flag=True, help="overwrite existing files")
def dev_cert_cmd(directory: Path, days: int, force: bool) -> None:
    """Make a local test CA and a signing certificate in DIRECTORY (ca.pem, chain.pem, signer.key).

    For trying C2PA offline only: validators will report such signatures as untrusted, because nobody
    trusts this CA but you (pass ca.pem to `pixelmill inspect --trust` to check the chain).
    """
    from ..labels.c2pa import make_dev_cert

    existing = [p for p in ("ca.pem", "chain.pem", "signer.key") if (directory / p).exists()]
    if existing and not force:
        raise click.ClickException(f"{directory} already holds {', '.join(existing)}; use --force to replace")
    paths = make_dev_cert(directory, days=days)
    click.echo(f"wrote {paths['chain']} (end-entity + intermediate), {paths['key']} (private key, mode 600) "
               f"and {paths['ca']} (test root CA)")
    click.echo("label_ai config: c2pa: {{cert_chain: {}, private_key: {}}}".format(paths["chain"], paths["key"]))
    click.echo("note: validators will call this signature untrusted; it is for local tests only.")


COMMANDS = [inspect_cmd, c2pa_group]
