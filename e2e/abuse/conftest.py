"""The abuse suite's servers and its probe counter.

One real model server (`wharf-model-server`, the iris classifier trained here) and one real
`wharf` daemon whose ingress serves the same model with two replicas, both on 127.0.0.1 with a
1 MiB message limit, so that oversized probes stay cheap, and a 5 s head timeout, so that slow
heads are seen cut off. Every test counts the probes it
sends; with `WHARF_ABUSE_REPORT=path` the counts are written there as JSON at the end
(`python -m wharf_e2e.probes path` prints them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers live beside the tests; pytest's importlib mode does not put this folder on the path.
sys.path.insert(0, str(Path(__file__).parent))

from abuse_kit import HEAD_TIMEOUT_S, LIMIT, SERVICE

from wharf_e2e.probes import ProbeCounter
from wharf_e2e.servers import ModelServerProcess, Target, WharfDaemon, make_iris
from wharf_e2e.testing import wait_until

_COUNTER = ProbeCounter()


@pytest.fixture(scope="session")
def probes() -> Iterator[ProbeCounter]:
    yield _COUNTER
    report = os.environ.get("WHARF_ABUSE_REPORT")
    if report:
        _COUNTER.write(Path(report))


@pytest.fixture(scope="session")
def iris_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_iris(tmp_path_factory.mktemp("models") / "iris")


@pytest.fixture(scope="session")
def model_server(
    iris_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModelServerProcess]:
    log = tmp_path_factory.mktemp("model-server") / "server.log"
    env = {"WHARF_MAX_MESSAGE_BYTES": str(LIMIT), "WHARF_HTTP_HEAD_TIMEOUT": str(HEAD_TIMEOUT_S)}
    with ModelServerProcess(iris_dir, SERVICE, log, env=env) as server:
        yield server


@pytest.fixture(scope="session")
def daemon(iris_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WharfDaemon]:
    # the replicas inherit the daemon's environment, so both limits reach them too
    wharf = WharfDaemon(
        tmp_path_factory.mktemp("wharf"),
        WHARF_MAX_MESSAGE_BYTES=str(LIMIT),
        WHARF_HTTP_HEAD_TIMEOUT=str(HEAD_TIMEOUT_S),
    )
    try:
        wharf.up(SERVICE, iris_dir.as_uri(), minReplicas=2, maxReplicas=2)
        wait_until(lambda: len(wharf.ready_replicas(SERVICE)) == 2, "two ready replicas", 180)
        yield wharf
    finally:
        wharf.down()


@pytest.fixture(scope="session", params=["model-server", "ingress"])
def target(request: pytest.FixtureRequest) -> Target:
    """The model, reached directly on the model server or through the local ingress."""
    if request.param == "model-server":
        server: ModelServerProcess = request.getfixturevalue("model_server")
        return server.target
    wharf: WharfDaemon = request.getfixturevalue("daemon")
    return wharf.target(SERVICE)
