"""The real `wharf` CLI against its own daemon, for the end-to-end tests of LLMs under `wharf up`.

Each `LocalWharf` has its own WHARF_HOME and ingress ports, and passes the engine settings of the
tests' vLLM workers (`vllm_servers.ENGINE_ENV`) to the daemon it starts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from wharf_e2e.testing import free_port
from wharf_e2e.vllm_servers import ENGINE_ENV

WHARF = Path(sys.executable).with_name("wharf")


class LocalWharf:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.env = {
            **os.environ,
            **ENGINE_ENV,
            "WHARF_HOME": str(root / "home"),
            "WHARF_INGRESS_PORT": str(self.port),
            "WHARF_INGRESS_GRPC_PORT": str(free_port()),
        }
        self.ingress = f"http://127.0.0.1:{self.port}"

    def run_unchecked(self, *args: str, timeout: float = 110) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(WHARF), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def run(self, *args: str, timeout: float = 110) -> subprocess.CompletedProcess[str]:
        result = self.run_unchecked(*args, timeout=timeout)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def item(self, kind: str, name: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run("get", kind, name, "-o", "json").stdout)
        return out


def unit_pids(item: dict[str, Any]) -> list[int]:
    """The pids of an LLMInferenceService's worker and router processes (`get -o json`)."""
    local = item["local"]
    units = [u for w in local["workloads"].values() for u in w["workers"]]
    units += [local["router"]] if local["router"] else []
    return [u["pid"] for u in units if u.get("pid")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
