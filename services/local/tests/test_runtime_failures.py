"""The local runtime when things go wrong: shared downloads, failed downloads retried, a
runtime without a command, a server on the wrong port. Real processes, no ingress."""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from wharf_e2e.testing import http_server_thread, until
from wharf_local.home import Home
from wharf_local.runtime import LocalRuntime, Service
from wharf_local.settings import Settings

STANDIN = Path(__file__).with_name("standin_server.py")


def standin_runtime(name: str = "standin", command: list[str] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": "none",
        "args": [str(STANDIN), "--model_name={{.Name}}", "--model_dir=/mnt/models",
                 "--http_port=8080", "--grpc_port=8081"],
    }  # fmt: skip
    container["command"] = [sys.executable] if command is None else command
    return {
        "apiVersion": "serving.kserve.io/v1alpha1",
        "kind": "ServingRuntime",
        "metadata": {"name": name},
        "spec": {
            "supportedModelFormats": [{"name": "standin", "autoSelect": True}],
            "containers": [container],
        },
    }


def isvc(name: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "standin"}, "storageUri": uri}}},
    }


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    rt = LocalRuntime(Home(tmp_path / "home"), Settings(activation_timeout_s=30))
    rt.start()
    yield rt
    await rt.close()


class SlowFiles(SimpleHTTPRequestHandler):
    """Serves a folder; counts GETs; can be told to fail with 404 until `fail` is cleared (a
    GET that came while it was set fails, `fail_delay_s` later)."""

    gets: list[str]
    fail: threading.Event
    delay_s = 0.5
    fail_delay_s = 0.0

    def do_GET(self) -> None:
        failing = self.fail.is_set()
        self.gets.append(self.path)  # after the decision: a test that saw it may change `fail`
        if failing:
            time.sleep(self.fail_delay_s)
            self.send_error(404)
            return
        time.sleep(self.delay_s)  # long enough for concurrent services to overlap
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


Files = tuple[str, list[str], threading.Event]


def serve_files(folder: Path, fail_delay_s: float = 0.0) -> Iterator[Files]:
    folder.mkdir()
    (folder / "version.txt").write_text("v1")
    gets: list[str] = []
    fail = threading.Event()
    handler = type("H", (SlowFiles,), {"gets": gets, "fail": fail, "fail_delay_s": fail_delay_s})
    with http_server_thread(functools.partial(handler, directory=str(folder))) as url:
        yield f"{url}/version.txt", gets, fail


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    yield from serve_files(tmp_path / "served")


@pytest.fixture
def slowly_failing_files(tmp_path: Path) -> Iterator[Files]:
    """`files` whose failures take 3 s: a download that fails is under way that long."""
    yield from serve_files(tmp_path / "served", fail_delay_s=3.0)


def state_of(svc: Service) -> str:
    """What a timed-out wait saw: every revision's download and replica state, and the events."""
    lines = [f"conditions: {[(c.type, c.status, c.reason) for c in svc.conditions]}"]
    for comp in svc.components.values():
        for rev in comp.revisions.values():
            lines.append(
                f"{rev.name}: failure={rev.failure} fetching={rev.fetching} "
                f"retry_at={rev.retry_at} attempts={rev.attempts} model_dirs={rev.model_dirs} "
                f"stuck={rev.stuck} last_crash={rev.last_crash}"
            )
            for r in rev.replicas:
                task = r.task
                ended = task is not None and task.done()
                failed = task.exception() if ended and task and not task.cancelled() else None
                proc = r.process.proc if r.process else None
                lines.append(
                    f"  replica {r.index} :{r.http_port} {r.state} crashes={r.crashes} "
                    f"task={'none' if task is None else 'ended' if ended else 'running'} "
                    f"task_error={failed!r} pid={proc.pid if proc else None} "
                    f"exit={proc.returncode if proc else None}"
                )
    lines += [f"event {e.type} {e.reason}: {e.message}" for e in svc.events]
    return "\n".join(lines)


async def until_for(svc: Service, check: Callable[[], object], what: str) -> None:
    """`until`, well inside the test's own timeout (three of them fit), and on a time-out the
    service's state."""
    try:
        await until(check, what, timeout_s=30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{state_of(svc)}") from None


def condition(svc: Service, type_: str = "Ready") -> tuple[str, str | None]:
    cond = next((c for c in svc.conditions if c.type == type_), None)
    return (cond.status, cond.reason) if cond else ("Unknown", None)


async def test_services_sharing_a_uri_wait_for_one_download(
    runtime: LocalRuntime, files: tuple[str, list[str], threading.Event]
) -> None:
    uri, gets, _ = files
    results = runtime.apply([standin_runtime(), *(isvc(f"m{i}", uri) for i in range(3))])
    assert [r.action for r in results] == ["created"] * 4
    services = [runtime.services[("default", f"m{i}")] for i in range(3)]
    for svc in services:
        await until(lambda svc=svc: condition(svc) == ("True", None), f"{svc.name} ready")
    assert gets == ["/version.txt"]  # one download for the three
    assert not any(e.reason == "ModelDownloadFailed" for s in services for e in s.events)


async def test_failed_download_retries_on_reapply_and_by_itself(
    runtime: LocalRuntime, files: tuple[str, list[str], threading.Event]
) -> None:
    uri, _, fail = files
    fail.set()
    results = runtime.apply([standin_runtime(), isvc("m", uri)])
    svc = runtime.services[("default", "m")]
    assert results[1].generation == 1
    await until_for(svc, lambda: condition(svc)[1] == "ModelDownloadFailed", "the failure")
    assert svc.observed_generation == 1
    event = next(e for e in svc.events if e.reason == "ModelDownloadFailed")
    assert "attempt 1" in event.message and "retrying in" in event.message
    fail.clear()
    # the same manifest again: not "unchanged" while it is failing, it retries at once
    again = runtime.apply([standin_runtime(), isvc("m", uri)])
    assert again[1].action == "retried"
    # what a client reads right after the apply is the retry, not the old failure
    assert condition(svc)[1] != "ModelDownloadFailed"
    await until_for(svc, lambda: condition(svc) == ("True", None), "ready after the retry")


async def test_failed_download_retries_with_backoff_without_reapply(
    runtime: LocalRuntime, files: tuple[str, list[str], threading.Event]
) -> None:
    uri, gets, fail = files
    fail.set()
    runtime.apply([standin_runtime(), isvc("m", uri)])
    svc = runtime.services[("default", "m")]
    await until_for(svc, lambda: condition(svc)[1] == "ModelDownloadFailed", "the failure")
    fail.clear()
    await until_for(svc, lambda: condition(svc) == ("True", None), "ready after the backoff retry")
    assert len(gets) >= 2


async def test_an_apply_during_a_backoff_retry_retries_again_at_once(
    runtime: LocalRuntime, slowly_failing_files: Files
) -> None:
    uri, gets, fail = slowly_failing_files
    fail.set()
    runtime.apply([standin_runtime(), isvc("m", uri)])
    svc = runtime.services[("default", "m")]
    rev = next(iter(svc.components.values())).latest
    assert rev is not None
    await until_for(svc, lambda: condition(svc)[1] == "ModelDownloadFailed", "the failure")
    # the backoff's retry is under way, and the source has already decided it fails
    await until_for(svc, lambda: rev.fetching and len(gets) >= 2, "the backoff retry")
    fail.clear()
    again = runtime.apply([standin_runtime(), isvc("m", uri)])
    assert again[1].action == "retried"
    assert condition(svc)[1] != "ModelDownloadFailed"
    await until_for(svc, lambda: condition(svc) == ("True", None), "ready after the retry")
    # the attempt that began before the apply failed, and the apply's retry followed it
    assert any(
        e.reason == "ModelDownloadFailed" and "retrying now" in e.message for e in svc.events
    )
    assert len(gets) >= 3


async def test_a_replica_that_cannot_be_started_backs_off_on_new_ports(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    # exists and is executable, but the kernel cannot run it (its interpreter is missing)
    server = tmp_path / "server"
    server.write_text("#!/nonexistent/interpreter\n")
    server.chmod(0o755)
    runtime.apply([standin_runtime(command=[str(server)]), isvc("m", str(STANDIN.parent))])
    svc = runtime.services[("default", "m")]

    def backoffs() -> list[str]:
        return [e.message for e in svc.events if e.reason == "BackOff"]

    await until_for(svc, lambda: len(backoffs()) >= 1, "the first backoff")
    replica = next(iter(svc.components.values())).latest.replicas[0]  # type: ignore[union-attr]
    first_port = replica.http_port
    await until_for(svc, lambda: len(backoffs()) >= 2, "a restart that fails again")
    assert all("could not be run: FileNotFoundError" in m for m in backoffs())
    # a process that never started ran for no time: the crashes count up, the backoff grows
    assert "(crash 2 in a row)" in backoffs()[1]
    assert replica.http_port != first_port
    assert condition(svc) == ("False", "CrashLoopBackOff")


async def test_a_runtime_without_a_command_is_named_in_the_error(runtime: LocalRuntime) -> None:
    runtime.apply([standin_runtime("team-standin", command=[]), isvc("m", str(STANDIN.parent))])
    svc = runtime.services[("default", "m")]
    await until(lambda: condition(svc)[1] == "CommandNotFound", "CommandNotFound")
    message = next(c.message for c in svc.conditions if c.type == "Ready") or ""
    assert "ServingRuntime team-standin" in message
    assert "wharf delete servingruntime team-standin" in message


PORT_8080_SERVER = """
import os, socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))   # "the port it always uses", not the one it was given
s.listen()
print("listening on", s.getsockname()[1], "PORT was", os.environ["PORT"], flush=True)
time.sleep(120)
"""


async def test_a_server_on_another_port_is_reported_with_the_fix(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    script = tmp_path / "my_model.py"
    script.write_text(PORT_8080_SERVER)
    custom = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "custom"},
        "spec": {
            "predictor": {
                "containers": [
                    {"name": "kserve-container", "command": [sys.executable, str(script)]}
                ]
            }
        },
    }
    runtime.apply([custom])
    svc = runtime.services[("default", "custom")]
    await until(lambda: condition(svc)[1] == "PortMismatch", "PortMismatch", timeout_s=60)
    message = next(c.message for c in svc.conditions if c.type == "Ready") or ""
    assert "listens on :" in message and "$PORT" in message


def tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


async def test_a_namespace_cannot_escape_the_home(runtime: LocalRuntime, tmp_path: Path) -> None:
    doc = isvc("m", str(STANDIN.parent))
    doc["metadata"]["namespace"] = "../../../elsewhere/escape"
    before = tree(tmp_path)
    results = runtime.apply([standin_runtime(), doc])
    result = next(r for r in results if r.kind == "InferenceService")
    assert result.action == "invalid"
    assert result.error is not None and "metadata.namespace" in result.error
    assert runtime.services == {}
    await asyncio.sleep(0.5)  # a few ticks: nothing is started for it
    written = tree(tmp_path) - before
    assert not [p for p in written if "elsewhere" in str(p) or "escape" in str(p)]


async def test_a_replica_marked_unreachable_is_probed_back_into_service(
    runtime: LocalRuntime, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "version.txt").write_text("v1")
    runtime.apply([standin_runtime(), isvc("m", f"file://{folder}")])
    svc = runtime.services[("default", "m")]
    await until(lambda: condition(svc) == ("True", None), "ready")
    comp = svc.components["predictor"]
    rev, replica = await runtime.acquire(svc, comp)
    runtime.release(rev, replica)
    runtime.mark_unreachable(rev, replica)
    assert replica.state == "starting"
    # its process is alive and answers: it comes back without a restart
    await until(lambda: replica.state == "ready", "the replica ready again")
    assert replica.crashes == 0
