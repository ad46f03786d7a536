"""`wharf-llm-worker multinode` as a command: flag errors exit 2 with the flag named, and the
command moves itself into the engine environment (where Ray is) before checking the rest.

Marker `vllm` for the tests that need the engine environment (scripts/install-llm-engine): they
skip with that reason without it, and fail under CI. No Ray node is started here.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from wharf_e2e.vllm_servers import require_engine


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wharf_llm_worker.cli", "multinode", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_a_flag_error_exits_2_naming_the_flag() -> None:
    done = _run("--leader", "--model", "/m")
    assert done.returncode == 2
    assert "--nnodes is required on the leader" in done.stderr


def test_without_a_role_the_lws_variables_are_named() -> None:
    done = _run(env={"LWS_WORKER_INDEX": "", "LWS_LEADER_ADDRESS": ""})
    assert done.returncode == 2
    assert "LWS_WORKER_INDEX" in done.stderr and "--join" in done.stderr


@pytest.mark.vllm
def test_a_joining_node_without_the_token_is_refused_in_the_engine_environment() -> None:
    require_engine()
    env = {"RAY_AUTH_TOKEN_PATH": "", "RAY_AUTH_TOKEN": ""}
    done = _run("--join", "127.0.0.1:1", "--node-rank", "1", env=env)
    # The workspace has no Ray: the command re-executed itself with the engine's python, which
    # got as far as the token check (after the flags, before starting any Ray process).
    assert done.returncode == 2, done.stderr
    assert "a joining node needs the leader's Ray token: --auth-token-file" in done.stderr
