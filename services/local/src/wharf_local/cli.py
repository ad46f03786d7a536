"""The `wharf` command line."""

from __future__ import annotations

import click

from wharf_local import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Wharf: KServe-compatible model serving, on Kubernetes and on one machine."""


@main.command()
def version() -> None:
    """Print the Wharf version."""
    click.echo(f"wharf {__version__}")
