"""The `wharf` command line."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console

from wharf_local import __version__
from wharf_local.client import Daemon, DaemonError
from wharf_local.home import Home
from wharf_local.manifests import resolve_local_paths
from wharf_local.render import condition, describe_lines, get_table

TERMINAL_REASONS = frozenset({"ModelDownloadFailed", "CommandNotFound", "CrashLoopBackOff"})
ISVC_KINDS = frozenset({"inferenceservice", "inferenceservices", "isvc"})

_files_option = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="A manifest file or a folder of them (repeatable).",
)
_namespace_option = click.option("-n", "--namespace", default="default", show_default=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Wharf: KServe-compatible model serving, on Kubernetes and on one machine."""


@main.command()
def version() -> None:
    """Print the Wharf version."""
    click.echo(f"wharf {__version__}")


@main.command("validate")
@_files_option
def validate_command(paths: tuple[Path, ...]) -> None:
    """Apply KServe's defaulting and validation to every object; exit 1 if any is invalid.

    Prints `OK kind/name` per accepted object and one `INVALID` line per reason (with the field
    path) for each rejected one; objects of other API groups are rejected as unknown kinds.
    """
    from wharf_local.validate import check_file  # the API models load only when needed

    files = _files(paths)
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


def _files(paths: tuple[Path, ...]) -> list[Path]:
    from wharf_local.validate import manifest_files

    files = manifest_files(paths)
    if not files:
        raise click.UsageError(
            f"no manifests (*.yaml, *.yml, *.json) under {', '.join(map(str, paths))}"
        )
    return files


def _documents(paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    from wharf_api import load_documents

    docs: list[dict[str, Any]] = []
    for path in _files(paths):
        try:
            loaded = load_documents(path)
        except (OSError, yaml.YAMLError, ValueError) as exc:
            raise click.ClickException(f"{path}: {exc}") from exc
        docs.extend(resolve_local_paths(doc, path.resolve().parent) for doc in loaded)
    return docs


def _daemon() -> Daemon:
    return Daemon(Home.from_env())


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


@main.command()
@_files_option
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until Ready.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for Ready.")
def up(paths: tuple[Path, ...], wait: bool, timeout: float) -> None:
    """Apply manifests to the local runtime (started on first use) and print each URL.

    Re-applying a changed InferenceService rolls out a new revision without dropping requests.
    """
    docs = _documents(paths)
    daemon = _daemon()
    try:
        daemon.ensure()
        results = daemon.call("POST", "/apply", {"documents": docs})["results"]
    except DaemonError as exc:
        _fail(exc)
        return
    failed = False
    waiting: list[tuple[str, str]] = []
    for r in results:
        label = f"{r['kind'].lower()}/{r['name']}"
        if r["error"]:
            failed = True
            click.secho(f"{label} {r['action']}: {r['error']}", fg="red", err=True)
        else:
            click.echo(f"{label} {r['action']}")
            if r["kind"] == "InferenceService":
                waiting.append((r["namespace"], r["name"]))
    if wait:
        failed |= not _wait_ready(daemon, waiting, timeout)
    else:
        for namespace, name in waiting:
            item = daemon.call("GET", f"/services/{namespace}/{name}")
            click.echo(f"{name}: {item['status']['url']}")
    if failed:
        raise SystemExit(1)


def _predict_path(item: dict[str, Any]) -> str:
    name = item["metadata"]["name"]
    model = (item.get("spec", {}).get("predictor") or {}).get("model") or {}
    if str(model.get("protocolVersion", "v1")).endswith("v2"):
        return f"/v2/models/{name}/infer"
    return f"/v1/models/{name}:predict"


def _wait_ready(daemon: Daemon, keys: list[tuple[str, str]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    ingress = daemon.call("GET", "/healthz")["ingress"]
    pending = list(keys)
    ok = True
    while pending:
        for namespace, name in list(pending):
            item = daemon.call("GET", f"/services/{namespace}/{name}")
            ready = condition(item, "Ready")
            generation = item["metadata"]["generation"]
            if (
                ready
                and ready["status"] == "True"
                and item["status"]["observedGeneration"] == generation
            ):
                url = item["status"]["url"]
                host = url.removeprefix("http://")
                click.echo(f"{name} is ready: {url}")
                click.echo(
                    f"  curl -H 'Host: {host}' {ingress}/v1/models/{name}:predict -d @input.json"
                )
                click.echo(
                    f"  curl {ingress}/serving/{namespace}/{name}/v1/models/{name}:predict -d @input.json"
                )
                pending.remove((namespace, name))
            elif ready and ready.get("reason") in TERMINAL_REASONS:
                click.secho(
                    f"{name} failed: {ready['reason']}: {ready.get('message')}", fg="red", err=True
                )
                pending.remove((namespace, name))
                ok = False
        if pending and time.monotonic() > deadline:
            for namespace, name in pending:
                item = daemon.call("GET", f"/services/{namespace}/{name}")
                ready = condition(item, "Ready") or {}
                click.secho(
                    f"{name} not ready after {timeout:.0f}s: {ready.get('reason')}: {ready.get('message')}",
                    fg="red",
                    err=True,
                )
            return False
        if pending:
            time.sleep(0.1)
    return ok


@main.command()
@click.argument("kind", required=False)
@click.argument("name", required=False)
@_namespace_option
@click.option("-o", "--output", type=click.Choice(["table", "yaml", "json"]), default="table")
def get(kind: str | None, name: str | None, namespace: str, output: str) -> None:
    """List InferenceServices: NAME, URL, READY, PREV/LATEST traffic, AGE."""
    if kind is not None and kind.lower() not in ISVC_KINDS:
        if name is None:
            kind, name = None, kind
        else:
            raise click.UsageError(
                f"unknown kind {kind!r}; the local runtime serves inferenceservices"
            )
    daemon = _daemon()
    if not daemon.alive():
        click.echo("No resources found (the local runtime is not running).")
        return
    items = daemon.call("GET", "/services")["items"]
    items = [i for i in items if i["metadata"]["namespace"] == namespace]
    if name is not None:
        items = [i for i in items if i["metadata"]["name"] == name]
        if not items:
            raise click.ClickException(
                f'inferenceservice "{name}" not found in namespace {namespace}'
            )
    if output == "json":
        import json

        click.echo(json.dumps(items if name is None else items[0], indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(items if name is None else items[0], sort_keys=False))
    elif not items:
        click.echo(f"No resources found in {namespace} namespace.")
    else:
        Console(width=200).print(get_table(items))


@main.command()
@click.argument("name")
@_namespace_option
def describe(name: str, namespace: str) -> None:
    """Status conditions, revisions, replicas and recent events of an InferenceService."""
    try:
        item = _daemon().call("GET", f"/services/{namespace}/{name}")
    except DaemonError as exc:
        _fail(exc)
        return
    click.echo("\n".join(describe_lines(item)))


@main.command()
@click.argument("name")
@_namespace_option
@click.option(
    "--component",
    type=click.Choice(["predictor", "transformer", "explainer"]),
    default="predictor",
    show_default=True,
)
@click.option("--tail", default=200, show_default=True, help="Lines per process log.")
def logs(name: str, namespace: str, component: str, tail: int) -> None:
    """Print the logs of a component's processes (its current revisions)."""
    home = Home.from_env()
    folder = home.log_dir(namespace, name, component)
    daemon = _daemon()
    paths: list[Path] = []
    if daemon.alive():
        try:
            item = daemon.call("GET", f"/services/{namespace}/{name}")
        except DaemonError as exc:
            _fail(exc)
            return
        for rev in item["local"]["revisions"].get(component, []):
            paths += [Path(r["log"]) for r in rev["replicas"] if r.get("log")]
    if not paths:
        paths = sorted(folder.glob("*.log"))
    if not paths:
        raise click.ClickException(f"no logs for {component} of {namespace}/{name} under {folder}")
    for path in paths:
        click.secho(f"==> {path.name} <==", bold=True)
        lines = path.read_text(errors="replace").splitlines()[-tail:]
        click.echo("\n".join(lines))


@main.command()
@_files_option
def delete(paths: tuple[Path, ...]) -> None:
    """Delete the InferenceServices named in the manifests (their processes stop)."""
    daemon = _daemon()
    if not daemon.alive():
        raise click.ClickException("the local runtime is not running")
    missing = False
    for doc in _documents(paths):
        if doc.get("kind") != "InferenceService":
            continue
        meta = doc.get("metadata") or {}
        ns, name = meta.get("namespace") or "default", meta.get("name")
        try:
            daemon.call("DELETE", f"/services/{ns}/{name}")
            click.echo(f'inferenceservice "{name}" deleted')
        except DaemonError as exc:
            missing = True
            click.secho(str(exc), fg="red", err=True)
    if missing:
        raise SystemExit(1)


@main.command()
def down() -> None:
    """Stop the local runtime and every process it started."""
    if _daemon().stop():
        click.echo("wharf stopped")
    else:
        click.echo("wharf was not running")


if __name__ == "__main__":
    main(sys.argv[1:])
