"""Several `wharf up` at once of InferenceServices that share one http storageUri: all become
Ready and the model is downloaded once (downloads of one URI are single-flight)."""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from wharf_e2e.probes import ProbeCounter
from wharf_e2e.servers import WharfDaemon

# the first test of a session also waits for the servers to start (sklearn imports on busy cores)
pytestmark = [pytest.mark.abuse, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

NAMES = ["shared-a", "shared-b", "shared-c"]


class _Counting(SimpleHTTPRequestHandler):
    gets: list[str]
    hold: threading.Event

    def do_GET(self) -> None:
        self.gets.append(self.path)
        # held until every `wharf up` has been started, so the downloads overlap
        self.hold.wait(60)
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def model_site(iris_dir: Path) -> Iterator[tuple[str, list[str], threading.Event]]:
    gets: list[str] = []
    hold = threading.Event()
    handler = type("Handler", (_Counting,), {"gets": gets, "hold": hold})
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(iris_dir))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/model.joblib", gets, hold
    finally:
        hold.set()
        server.shutdown()
        server.server_close()
        thread.join(30)


def _ready(item: dict[str, Any]) -> bool:
    conditions = item.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def test_concurrent_up_of_one_uri_downloads_once(
    daemon: WharfDaemon,
    model_site: tuple[str, list[str], threading.Event],
    probes: ProbeCounter,
) -> None:
    uri, gets, hold = model_site
    ups = [
        subprocess.Popen(
            daemon.command("up", "-f", str(daemon.manifest(name, uri)), "--timeout", "170"),
            env=daemon.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in NAMES
    ]
    hold.set()
    try:
        for name, up in zip(NAMES, ups, strict=True):
            with probes.probe("shared storageUri: concurrent up Ready", "ingress"):
                out, _ = up.communicate(timeout=180)
                assert up.returncode == 0, out
                assert _ready(daemon.get(name)), daemon.get(name)
        with probes.probe("shared storageUri: one download", "ingress"):
            assert gets == ["/model.joblib"], gets
        for name in NAMES:
            with probes.probe("shared storageUri: serves", "ingress"):
                assert daemon.target(name).healthy()
    finally:
        for up in ups:
            if up.poll() is None:
                up.kill()
                up.wait()
        for name in NAMES:
            subprocess.run(
                daemon.command("delete", "-f", str(daemon.root / f"{name}.json")),
                env=daemon.env,
                capture_output=True,
                timeout=120,
            )
