"""Multi-node on Ray for real: two Ray nodes on this machine (a head and a second raylet with
its own ports, joined with the group's token), vLLM's own multi-node ranks started by Ray actors.

Marker `vllm`: Ray and vLLM come from the engine environment (scripts/install-llm-engine);
without it this skips with that reason, and fails under CI. Here: a leader that waits for a node
that never joins fails with a clear error, not a hang, and leaves nothing running (no engine
starts). Two nodes serving for real (pipeline parallel 2, compared with a single worker, a
killed node restarting the group, nothing left after) run through `wharf up`, which starts
these same commands: e2e/local/test_llm_multinode_wharf_up.py.

vLLM's Ray executor layout (`--layout ray-executor`) cannot run here: vLLM refuses it on the CPU
platform (`current platform cpu does not support ray`), so only its command and placement are
tested (test_multinode_plan.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wharf_e2e.leftovers import assert_none_left
from wharf_e2e.testing import free_port
from wharf_e2e.vllm_servers import (
    ENGINE_ENV,
    SERVED_MODEL_NAME,
    require_engine,
)

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

GROUP_ENV = "WHARF_MULTINODE_GROUP"
# Only turns a hang into a failure with the logs.
GROUP_READY_S = 600.0
# The same engine flags as the session's single worker, except --enforce-eager, which breaks
# pipeline stages on vLLM's CPU backend: the group compiles with the eager backend instead
# (no inductor, so its start costs about what an eager worker's does).
GROUP_ENGINE_ARGS = (
    "--dtype", "bfloat16", "--max-model-len", "1024",
    "--compilation-config", '{"mode":2,"backend":"eager"}',
)  # fmt: skip


@pytest.fixture(scope="module")
def engine_ready() -> None:
    require_engine()


def _assert_no_leftovers(group: str, work: Path) -> None:
    assert_none_left(f"{GROUP_ENV}={group}", [str(work)])


class Node:
    """One `wharf-llm-worker multinode` process (leader or joining node) in its own session."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.out"
        log_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "wharf_llm_worker.cli", "multinode", *args],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout_s: float = 120.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


class Group:
    """A leader and a joining node on this machine, with distinct Ray ports and a shared token."""

    def __init__(self, model: Path, work: Path, nnodes: int, joiners: int, wait_s: float) -> None:
        self.work = work
        self.group = f"t{os.getpid()}{int(time.time()) % 100000}"
        self.port = free_port()
        self.log_dir = work / "logs"
        self.token = work / "token"
        self.token.write_text(os.urandom(24).hex())
        self.token.chmod(0o600)
        ray_port = free_port()
        env = {**os.environ, **ENGINE_ENV, GROUP_ENV: self.group}
        # Ray's socket paths must stay short: a folder right under /tmp, not pytest's tmp_path.
        temp = work / "ray"
        common = ["--ray-port", str(ray_port), "--ray-temp-dir", str(temp),
                  "--auth-token-file", str(self.token), "--log-dir", str(self.log_dir),
                  "--wait-timeout", str(wait_s), "--start-timeout", str(GROUP_READY_S)]  # fmt: skip
        bases = _port_bases(1 + joiners)
        self.leader = Node(
            "leader",
            ["--leader", "--nnodes", str(nnodes), "--model", str(model), "--port", str(self.port),
             "--served-model-name", SERVED_MODEL_NAME,
             "--host", "127.0.0.1", "--master-port", str(free_port()),
             "--ports-base", str(bases[0]), "--ready-timeout", str(GROUP_READY_S),
             *common, "--", *GROUP_ENGINE_ARGS],
            env, work,
        )  # fmt: skip
        self.joiners = [
            Node(
                f"node-{rank}",
                [
                    "--join",
                    f"127.0.0.1:{ray_port}",
                    "--node-rank",
                    str(rank),
                    "--ports-base",
                    str(bases[rank]),
                    *common,
                ],
                env,
                work,
            )
            for rank in range(1, 1 + joiners)
        ]

    def status(self) -> dict[str, object]:
        with contextlib.suppress(OSError, ValueError):
            return dict(json.loads((self.log_dir / "group-status.json").read_text()))
        return {}

    def stop(self) -> list[int]:
        codes = [self.leader.stop()]
        codes += [node.stop() for node in self.joiners]
        return codes


def _port_bases(count: int) -> list[int]:
    # Each Ray node takes 60 ports from its base (rayargs.PORTS_SPAN); pick free-looking ranges.
    base = 20000 + (os.getpid() % 200) * 100
    return [base + 100 * i for i in range(count)]


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="wr-", dir="/tmp") as path:
        yield Path(path)


@pytest.mark.timeout(600)
def test_a_missing_node_fails_the_leader_with_its_rank_not_a_hang(
    engine_ready: None, tiny_llama: Path, short_tmp: Path
) -> None:
    group = Group(tiny_llama, short_tmp, nnodes=2, joiners=0, wait_s=20)
    try:
        code = group.leader.proc.wait(timeout=580)
        out = group.leader.output()
        assert code == 1, out
        # Node 1 never came: the error says how many joined and which rank is missing.
        assert "1 of 2 nodes joined the Ray cluster within 20 s" in out, out
        assert "missing node rank(s): 1" in out and "present: 0@" in out, out
        status = group.status()
        assert status["state"] == "failed" and "missing node rank(s): 1" in str(status["message"])
    finally:
        group.stop()
    _assert_no_leftovers(group.group, group.work)
