"""The `wharf` command line."""

from __future__ import annotations

from pathlib import Path

import click

from wharf_local import __version__
from wharf_local.validate import check_file, manifest_files


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Wharf: KServe-compatible model serving, on Kubernetes and on one machine."""


@main.command()
def version() -> None:
    """Print the Wharf version."""
    click.echo(f"wharf {__version__}")


@main.command("validate")
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A manifest file or a folder of them (repeatable).",
)
def validate_command(paths: tuple[Path, ...]) -> None:
    """Apply KServe's defaulting and validation to every object; exit 1 if any is invalid.

    Prints `OK kind/name` per accepted object and one `INVALID` line per reason (with the field
    path) for each rejected one; objects of other API groups are rejected as unknown kinds.
    """
    files = manifest_files(paths)
    if not files:
        raise click.UsageError(
            f"no manifests (*.yaml, *.yml, *.json) under {', '.join(map(str, paths))}"
        )
    valid = invalid = 0
    for path in files:
        for result in check_file(path):
            if result.ok:
                valid += 1
            else:
                invalid += 1
            for line in result.lines:
                click.secho(line, fg=None if result.ok else "red")
    click.echo(f"{valid} valid, {invalid} invalid")
    if invalid:
        raise SystemExit(1)
