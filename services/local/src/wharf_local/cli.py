"""The `wharf` command line."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import yaml
from rich.console import Console

from wharf_local import __version__
from wharf_local.client import Daemon, DaemonError
from wharf_local.home import Home
from wharf_local.manifests import repeated_objects, resolve_local_paths
from wharf_local.render import (
    condition,
    curl_lines,
    describe_lines,
    get_table,
    graph_curl_lines,
    graph_describe_lines,
    graph_table,
    object_lines,
    object_table,
)
from wharf_local.render_llm import llm_curl_lines, llm_describe_lines, llm_log_paths, llm_table

# wharf_api.status.TERMINAL_REASONS, spelled out so the CLI starts without loading the API
# models (a test keeps the two equal)
TERMINAL_REASONS = frozenset(
    {"ModelDownloadFailed", "CommandNotFound", "CrashLoopBackOff", "PortMismatch"}
)
STDIN = Path("-")

_files_option = click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True, allow_dash=True, path_type=Path),
    help="A manifest file, a folder of them, or - for stdin (repeatable).",
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

    Prints `OK kind/name (file)` per accepted object and one `INVALID` line per reason (with
    the field path and the file) for each rejected one; objects of other API groups are
    rejected as unknown kinds.
    """
    from wharf_local.validate import check_file, check_text  # the API models load only when needed

    valid = invalid = 0
    for path in _files(paths):
        results = check_text(_stdin(), "<stdin>") if path == STDIN else check_file(path)
        for result in results:
            if result.ok:
                valid += 1
            else:
                invalid += 1
            for line in result.lines:
                click.secho(line, fg=None if result.ok else "red")
    click.echo(f"{valid} valid, {invalid} invalid")
    if invalid:
        raise SystemExit(1)


def _stdin() -> str:
    """Standard input, read once per command (`-f -` may be named more than once)."""
    meta = click.get_current_context().meta
    if "wharf.stdin" not in meta:
        meta["wharf.stdin"] = sys.stdin.read()
    text: str = meta["wharf.stdin"]
    return text


def _files(paths: tuple[Path, ...]) -> list[Path]:
    from wharf_local.validate import manifest_files

    files: list[Path] = []
    for path in paths:
        files.extend([STDIN] if path == STDIN else manifest_files([path]))
    if not files:
        raise click.UsageError(
            f"no manifests (*.yaml, *.yml, *.json) under {', '.join(map(str, paths))}"
        )
    return files


def _documents(paths: tuple[Path, ...]) -> list[dict[str, Any]]:
    return [doc for _, doc in _named_documents(paths)]


def _named_documents(paths: tuple[Path, ...]) -> list[tuple[str, dict[str, Any]]]:
    """Each document with the file it came from (`<stdin>` for `-f -`)."""
    from wharf_api import WharfValidationError, load_documents

    docs: list[tuple[str, dict[str, Any]]] = []
    for path in _files(paths):
        source = "<stdin>" if path == STDIN else str(path)
        try:
            if path == STDIN:
                loaded, base = load_documents(_stdin() + "\n"), Path.cwd()
            else:
                loaded, base = load_documents(path), path.resolve().parent
        except (OSError, yaml.YAMLError, ValueError, WharfValidationError) as exc:
            raise click.ClickException(f"{source}: {exc}") from exc
        docs.extend((source, resolve_local_paths(doc, base)) for doc in loaded)
    return docs


def _daemon() -> Daemon:
    return Daemon(Home.from_env())


_stop_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Seconds to wait for the processes to stop; 0 waits until they have, as kubectl does. "
    "An LLM worker drains its requests first (30 s by default).",
)


def _running_daemon() -> Daemon:
    daemon = _daemon()
    if not daemon.alive():
        raise click.ClickException(daemon.not_running())
    return daemon


def _fail(exc: Exception) -> None:
    raise click.ClickException(str(exc))


# ---- kinds and names, as kubectl takes them ---------------------------------------------------


def _kind(name: str) -> Any:
    from wharf_local.kinds import known_kinds, resolve_kind

    info = resolve_kind(name)
    if info is None:
        raise click.UsageError(f"unknown kind {name!r}; kinds: {known_kinds()}")
    return info


def _target(args: tuple[str, ...]) -> tuple[Any, list[str]]:
    """(kind, names) from `[KIND] [NAME...]`, `KIND/NAME` or `NAME` (an InferenceService)."""
    from wharf_local.kinds import resolve_kind

    if not args:
        return _kind("InferenceService"), []
    first, rest = args[0], list(args[1:])
    if "/" in first:
        kind, name = first.split("/", 1)
        return _kind(kind), [name, *rest]
    if rest:
        return _kind(first), rest
    info = resolve_kind(first)
    return (info, []) if info is not None else (_kind("InferenceService"), [first])


@dataclass(frozen=True)
class _CoreKind:
    """A Secret or ServiceAccount, which `up` keeps for storage credentials."""

    kind: str
    api_versions: tuple[str, ...] = ("v1",)
    scope: str = "Namespaced"

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _core_kind(doc: dict[str, Any]) -> _CoreKind | None:
    if doc.get("apiVersion") == "v1" and doc.get("kind") in ("Secret", "ServiceAccount"):
        return _CoreKind(str(doc["kind"]))
    return None


def _object_path(info: Any, name: str) -> str:
    return f"/objects/{info.kind}/{name}"


def _ns_params(info: Any, namespace: str) -> str:
    return "" if info.scope == "Cluster" else f"?namespace={namespace}"


def _not_found(info: Any, name: str, namespace: str) -> str:
    where = "" if info.scope == "Cluster" else f" in namespace {namespace}"
    return f'{info.singular} "{name}" not found{where}'


# ---- up --------------------------------------------------------------------------------------


@main.command()
@_files_option
@click.option("--wait/--no-wait", default=True, show_default=True, help="Wait until Ready.")
@click.option("--timeout", default=300.0, show_default=True, help="Seconds to wait for Ready.")
def up(paths: tuple[Path, ...], wait: bool, timeout: float) -> None:
    """Apply manifests to the local runtime (started on first use) and print each URL.

    Re-applying a changed InferenceService rolls out a new revision without dropping requests.
    The result is the state of what this apply asked for: `up` waits until the status reflects
    the applied generation before it judges Ready or failure.
    """
    named = _named_documents(paths)
    for warning in repeated_objects(named):
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    docs = [doc for _, doc in named]
    daemon = _daemon()
    started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        daemon.ensure()
        results = daemon.call("POST", "/apply", {"documents": docs})["results"]
    except DaemonError as exc:
        _fail(exc)
        return
    failed = False
    waiting: dict[tuple[str, str, str], int] = {}
    for r in results:
        label = f"{r['kind'].lower()}/{r['name']}"
        if r["error"]:
            failed = True
            click.secho(f"{label} {r['action']}: {r['error']}", fg="red", err=True)
        elif r.get("note"):
            click.echo(f"{label} {r['action']} ({r['note']})")
        else:
            click.echo(f"{label} {r['action']}")
            if r["kind"] in WAITED_KINDS:
                key = (r["kind"], r["namespace"], r["name"])
                waiting[key] = r.get("generation") or _generation(daemon, *key)
    if wait:
        failed |= not _wait_ready(daemon, waiting, timeout, since=started)
    else:
        for kind, namespace, name in waiting:
            item = _service(daemon, namespace, name, kind)
            click.echo(f"{name}: {item['status']['url']}")
    if failed:
        raise SystemExit(1)


# the kinds `up` waits for: they run processes and have a Ready condition
WAITED_KINDS = ("InferenceService", "InferenceGraph", "LLMInferenceService")


def _service(
    daemon: Daemon, namespace: str, name: str, kind: str = "InferenceService"
) -> dict[str, Any]:
    item: dict[str, Any] = daemon.call("GET", f"/objects/{kind}/{name}?namespace={namespace}")
    return item


def _generation(daemon: Daemon, kind: str, namespace: str, name: str) -> int:
    generation: int = _service(daemon, namespace, name, kind)["metadata"]["generation"]
    return generation


def _verdict(item: dict[str, Any], generation: int) -> tuple[bool | None, str]:
    """(True ready, False failed, None pending) for the applied generation, and a reason."""
    ready = condition(item, "Ready") or {}
    fresh = (item["status"].get("observedGeneration") or 0) >= generation
    if fresh and ready.get("status") == "True":
        return True, ""
    if fresh and ready.get("reason") in TERMINAL_REASONS:
        return False, f"{ready['reason']}: {ready.get('message')}"
    return None, f"{ready.get('reason')}: {ready.get('message')}"


# events worth a line on the terminal while `up` waits: downloads and what goes wrong
PROGRESS_REASONS = frozenset(
    {"Downloading", "DownloadRetry", "ModelReady", "ModelDownloadFailed", "BackOff", "PortMismatch"}
)


def _new_events(item: dict[str, Any], since: str, seen: set[tuple[str, ...]]) -> list[str]:
    """Progress lines, not shown yet, for events at or after `since` (ISO time) about the
    revisions this apply made (an earlier revision still retrying in the background is not
    what the user waits for). Pure."""
    latest = {
        c.get("latestCreatedRevision")
        for c in item.get("status", {}).get("components", {}).values()
    }
    lines = []
    for event in item.get("local", {}).get("events", []):
        key = (event["time"], event["reason"], event["message"], event["object"])
        if event["time"] < since or key in seen or event["reason"] not in PROGRESS_REASONS:
            continue
        # an LLMInferenceService has no revisions: all its events are this apply's
        if "components" in item.get("status", {}) and event["object"] not in latest:
            continue
        seen.add(key)
        lines.append(f"  {event['object']}: {event['reason']}: {event['message']}")
    return lines


def _wait_ready(
    daemon: Daemon, keys: dict[tuple[str, str, str], int], timeout: float, since: str = ""
) -> bool:
    deadline = time.monotonic() + timeout
    ingress = daemon.call("GET", "/healthz")["ingress"]
    pending = dict(keys)
    ok = True
    seen: set[tuple[str, ...]] = set()
    while pending:
        for (kind, namespace, name), generation in list(pending.items()):
            item = _service(daemon, namespace, name, kind)
            for line in _new_events(item, since, seen):
                click.echo(line, err=True)
            verdict, why = _verdict(item, generation)
            if verdict is None:
                continue
            del pending[(kind, namespace, name)]
            if verdict:
                click.echo(f"{name} is ready: {item['status']['url']}")
                if kind == "InferenceGraph":
                    lines = graph_curl_lines(item, ingress)
                elif kind == "LLMInferenceService":
                    lines = llm_curl_lines(item, ingress)
                else:
                    lines = curl_lines(item, ingress, _model_inputs(ingress, item))
                for line in lines:
                    click.echo(f"  {line}")
            else:
                click.secho(f"{name} failed: {why}", fg="red", err=True)
                ok = False
        if pending and time.monotonic() > deadline:
            for (kind, namespace, name), generation in pending.items():
                _, why = _verdict(_service(daemon, namespace, name, kind), generation)
                click.secho(f"{name} not ready after {timeout:.0f}s: {why}", fg="red", err=True)
            return False
        if pending:
            time.sleep(0.1)
    return ok


def _model_inputs(ingress: str, item: dict[str, Any]) -> list[dict[str, Any]]:
    """The model's V2 input metadata through the ingress (empty when the server has none)."""
    import httpx

    meta = item["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    try:
        resp = httpx.get(f"{ingress}/serving/{namespace}/{name}/v2/models/{name}", timeout=5)
        inputs = resp.json().get("inputs") if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError):
        return []
    return inputs if isinstance(inputs, list) else []


# ---- get / describe / delete / logs ----------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1)
@_namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="List across every namespace.")
@click.option(
    "-o", "--output", type=click.Choice(["table", "wide", "yaml", "json", "name"]), default="table"
)
def get(args: tuple[str, ...], namespace: str, all_namespaces: bool, output: str) -> None:
    """List objects as kubectl does: `get`, `get isvc NAME`, `get ig`, `get servingruntimes`.

    KIND is a kind, plural, singular or short name (isvc, ig, llmisvc, sr, csr); a lone NAME
    is an InferenceService. Without arguments, every kind `up` runs is listed (InferenceServices,
    then InferenceGraphs). `-o yaml|json` shows the defaulted spec and the status.
    """
    from wharf_local.kinds import resolve_kind

    daemon = _running_daemon()
    if not args:
        kinds = [resolve_kind(k) for k in SERVED_KINDS]
        listed = [(info, _list(daemon, info, namespace, all_namespaces)) for info in kinds]
        _show(listed, namespace, all_namespaces, output)
        return
    info, names = _target(args)
    items = _list(daemon, info, namespace, all_namespaces)
    if names:
        by_name = {i["metadata"]["name"]: i for i in items}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise click.ClickException(_not_found(info, missing[0], namespace))
        items = [by_name[n] for n in names]
    if len(names) == 1 and output in ("json", "yaml"):
        _dump(items[0], output)
        return
    _show([(info, items)], namespace, all_namespaces, output)


# the kinds `wharf get` lists without arguments: those the runtime runs as processes
SERVED_KINDS = ("InferenceService", "InferenceGraph", "LLMInferenceService")


def _list(daemon: Daemon, info: Any, namespace: str, all_namespaces: bool) -> list[dict[str, Any]]:
    every = all_namespaces or info.scope == "Cluster"
    query = f"?kind={info.kind}" + ("" if every else f"&namespace={namespace}")
    try:
        items: list[dict[str, Any]] = daemon.call("GET", f"/objects{query}")["items"]
    except DaemonError as exc:
        raise click.ClickException(str(exc)) from exc
    return items


def _dump(shown: Any, output: str) -> None:
    if output == "json":
        click.echo(json.dumps(shown, indent=2))
    else:
        click.echo(yaml.safe_dump(shown, sort_keys=False), nl=False)


def _show(
    listed: list[tuple[Any, list[dict[str, Any]]]],
    namespace: str,
    all_namespaces: bool,
    output: str,
) -> None:
    """Items of one or more kinds: a table per kind that has any (a blank line between)."""
    every = all_namespaces or all(info.scope == "Cluster" for info, _ in listed)
    if output in ("json", "yaml"):
        items = [item for _, kind_items in listed for item in kind_items]
        _dump({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}, output)
        return
    if output == "name":
        for info, items in listed:
            for item in items:
                click.echo(f"{info.singular}/{item['metadata']['name']}")
        return
    shown = [(info, items) for info, items in listed if items]
    if not shown:
        where = "" if every else f" in {namespace} namespace"
        click.echo(f"No resources found{where}.")
        return
    console = Console(width=250)
    for i, (info, items) in enumerate(shown):
        if i:
            click.echo("")
        wide, namespaces = output == "wide", all_namespaces and info.scope != "Cluster"
        if info.kind == "InferenceService":
            table = get_table(items, wide=wide, namespaces=namespaces)
        elif info.kind == "InferenceGraph":
            table = graph_table(items, namespaces=namespaces)
        elif info.kind == "LLMInferenceService":
            table = llm_table(items, namespaces=namespaces)
        else:
            table = object_table(info.kind, items, wide=wide, namespaces=namespaces)
        console.print(table)


def _one(daemon: Daemon, info: Any, name: str, namespace: str) -> dict[str, Any]:
    try:
        item: dict[str, Any] = daemon.call(
            "GET", _object_path(info, name) + _ns_params(info, namespace)
        )
    except DaemonError as exc:
        if "not found" in str(exc):
            raise click.ClickException(_not_found(info, name, namespace)) from exc
        raise click.ClickException(str(exc)) from exc
    return item


@main.command()
@click.argument("args", nargs=-1, required=True)
@_namespace_option
def describe(args: tuple[str, ...], namespace: str) -> None:
    """Conditions, revisions, replicas and events (`describe NAME`, `describe isvc NAME`,
    `describe ig NAME` for a graph's router); any other kind (`describe sr NAME`, `describe csr NAME`) shows its defaulted spec."""
    info, names = _target(args)
    if not names:
        raise click.UsageError("name the object: describe [KIND] NAME")
    daemon = _running_daemon()
    for i, name in enumerate(names):
        item = _one(daemon, info, name, namespace)
        if i:
            click.echo("")
        if info.kind == "InferenceService":
            lines = describe_lines(item)
        elif info.kind == "InferenceGraph":
            lines = graph_describe_lines(item)
        elif info.kind == "LLMInferenceService":
            lines = llm_describe_lines(item)
        else:
            lines = object_lines(item)
        click.echo("\n".join(lines))


@main.command()
@click.argument("args", nargs=-1)
@click.option(
    "-f",
    "--filename",
    "paths",
    multiple=True,
    type=click.Path(exists=True, allow_dash=True, path_type=Path),
    help="Delete the objects named in these manifests (a file, a folder, or - for stdin).",
)
@_namespace_option
@_stop_timeout_option
def delete(args: tuple[str, ...], paths: tuple[Path, ...], namespace: str, timeout: float) -> None:
    """Delete objects: `delete -f FILE|DIR`, `delete NAME`, `delete KIND NAME` (any kind `up`
    accepts: isvc, sr, csr, ...). It returns once the object's processes have stopped."""
    if bool(args) == bool(paths):
        raise click.UsageError("give either -f FILE or [KIND] NAME")
    daemon = _running_daemon()
    targets: list[tuple[Any, str, str]] = []
    if paths:
        from wharf_local.kinds import resolve_kind

        for doc in _documents(paths):
            meta = doc.get("metadata") or {}
            found = resolve_kind(str(doc.get("kind") or "")) or _core_kind(doc)
            if found is None or (
                found.api_versions and doc.get("apiVersion") not in found.api_versions
            ):
                click.echo(f"skipped {doc.get('kind')}/{meta.get('name')}: not a kind wharf runs")
                continue
            targets.append((found, str(meta.get("name")), meta.get("namespace") or namespace))
    else:
        info, names = _target(args)
        if not names:
            raise click.UsageError("name the object: delete [KIND] NAME")
        targets = [(info, name, namespace) for name in names]
    missing = False
    for info, name, ns in targets:
        try:
            daemon.call(
                "DELETE", _object_path(info, name) + _ns_params(info, ns), wait_s=timeout or None
            )
            click.echo(f'{info.singular} "{name}" deleted')
        except DaemonError as exc:
            missing = True
            reason = str(exc)
            click.secho(
                _not_found(info, name, ns) if "not found" in reason else reason,
                fg="red",
                err=True,
            )
    if missing:
        raise SystemExit(1)


@main.command()
@click.argument("args", nargs=-1, required=True)
@_namespace_option
@click.option(
    "--component",
    type=click.Choice(["predictor", "transformer", "explainer", "main", "prefill", "router"]),
    default="predictor",
    show_default=True,
    help="An InferenceService's component; for an LLMInferenceService, main, prefill or router "
    "(default: every process).",
)
@click.option("--tail", default=200, show_default=True, help="Lines per process log.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing what the processes write.")
def logs(args: tuple[str, ...], namespace: str, component: str, tail: int, follow: bool) -> None:
    """Print the logs of a component's processes (`logs NAME`, `logs isvc NAME`, `-f` follows),
    of a graph's router (`logs ig NAME`), or of an LLM's workers and router (`logs llmisvc
    NAME`)."""
    info, names = _target(args)
    kinds = ("InferenceService", "InferenceGraph", "LLMInferenceService")
    if info.kind not in kinds or len(names) != 1:
        raise click.UsageError(
            "logs takes one InferenceService, InferenceGraph or LLMInferenceService: "
            "logs [isvc|ig|llmisvc] NAME"
        )
    name = names[0]
    graph = info.kind == "InferenceGraph"
    llm = info.kind == "LLMInferenceService"
    if graph:
        component = "router"
    home = Home.from_env()
    folder = home.log_dir(namespace, name, component)
    if llm and component == "predictor":
        component, folder = "every process", home.log_dir(namespace, name, "*")
    daemon = _daemon()

    def current() -> list[Path]:
        paths: list[Path] = []
        if daemon.alive():
            item = _one(daemon, info, name, namespace)
            if llm:
                wanted = f"/{component}/"
                every = [Path(p) for p in llm_log_paths(item)]
                paths += [p for p in every if component == "every process" or wanted in str(p)]
            if graph:
                log = item["local"]["router"].get("log")
                paths += [Path(log)] if log else []
            for rev in item["local"].get("revisions", {}).get(component, []):
                paths += [Path(r["log"]) for r in rev["replicas"] if r.get("log")]
        return paths or sorted(folder.parent.glob(f"{folder.name}/*.log"))

    paths = current()
    if not paths:
        raise click.ClickException(f"no logs for {component} of {namespace}/{name} under {folder}")
    offsets: dict[Path, int] = {}
    for path in paths:
        click.secho(f"==> {path.name} <==", bold=True)
        data = path.read_bytes()
        offsets[path] = len(data)
        lines = data.decode(errors="replace").splitlines()[-tail:]
        click.echo("\n".join(lines))
    if follow:
        _follow(offsets, current)


def _follow(offsets: dict[Path, int], current: Any) -> None:
    """Print what is appended to each log (and new replicas' logs) until interrupted."""
    last = ""
    checked = time.monotonic()
    try:
        while True:
            if time.monotonic() - checked > 2:
                checked = time.monotonic()
                for path in current():
                    offsets.setdefault(path, 0)
            for path, offset in list(offsets.items()):
                try:
                    with path.open("rb") as f:
                        f.seek(offset)
                        chunk = f.read()
                except OSError:
                    continue
                if not chunk:
                    continue
                offsets[path] = offset + len(chunk)
                if len(offsets) > 1 and last != path.name:
                    click.secho(f"==> {path.name} <==", bold=True)
                    last = path.name
                click.echo(chunk.decode(errors="replace"), nl=False)
                sys.stdout.flush()
            time.sleep(0.2)
    except KeyboardInterrupt:
        return


CONTROLLER = "wharf-controller"


@main.command()
@_files_option
@click.option(
    "--runtimes",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="A file or folder of ServingRuntimes/ClusterServingRuntimes the cluster holds "
    "(default: the built-in ones, as deploy/ installs them and `wharf up` uses them).",
)
@click.option(
    "--mode",
    type=click.Choice(["Standard", "Knative"]),
    help="Render as this deployment mode, whatever the manifest or config says.",
)
def render(paths: tuple[Path, ...], runtimes: tuple[Path, ...], mode: str | None) -> None:
    """Print what the controller would create on Kubernetes for the manifests, as YAML.

    Runs `wharf-controller render` (the controller's own renderer, offline: no cluster).
    """
    import subprocess

    from wharf_local.processes import resolve_command
    from wharf_local.runtimes import builtin_runtimes_folder

    try:
        argv = resolve_command([CONTROLLER, "render"])
    except FileNotFoundError as exc:
        raise click.ClickException(
            f"wharf render needs the {CONTROLLER} command ({exc}): install the wharf-controller "
            "package beside wharf (uv sync --package wharf-controller, or pip install "
            "wharf-controller)"
        ) from None
    stdin = None
    for path in _files(paths):
        if path == STDIN:
            stdin = _stdin()
            path = Path("/dev/stdin")
        argv += ["-f", str(path)]
    for runtime in runtimes or (builtin_runtimes_folder(),):
        argv += ["--runtimes", str(runtime)]
    if mode:
        argv += ["--mode", mode]
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    click.echo(done.stdout, nl=False)
    click.echo(done.stderr, nl=False, err=True)
    if done.returncode:
        raise SystemExit(done.returncode)


@main.command()
@_stop_timeout_option
def down(timeout: float) -> None:
    """Stop the local runtime and every process it started; it returns once they are gone."""
    if _daemon().stop(timeout_s=timeout or None):
        click.echo("wharf stopped")
    else:
        click.echo("wharf was not running")


if __name__ == "__main__":
    main(sys.argv[1:])
