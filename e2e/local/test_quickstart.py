"""The README's first command on this machine: it serves iris and its printed curl works."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from wharf_e2e.testing import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_prints_a_curl_that_returns_predictions(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WHARF_HOME": str(tmp_path / "home"),
        "WHARF_INGRESS_PORT": str(free_port()),
        "WHARF_INGRESS_GRPC_PORT": str(free_port()),
    }
    try:
        out = subprocess.run(
            [str(REPO / "scripts" / "quickstart")],
            env=env,
            capture_output=True,
            text=True,
            timeout=110,
            check=True,
        ).stdout
        assert "sklearn-iris is ready" in out
        tried = out.split("Try it:", 1)[1]
        curl = next(line.strip() for line in tried.splitlines() if line.strip().startswith("curl "))
        answer = subprocess.run(
            ["bash", "-c", curl + " -s --fail"], capture_output=True, text=True, timeout=60
        )
        assert answer.returncode == 0, answer.stderr
        assert re.fullmatch(r'\{"predictions":\[\d,\d\]\}', answer.stdout.strip()), answer.stdout
    finally:
        subprocess.run([str(REPO / "scripts" / "wharf"), "down"], env=env, timeout=60, check=False)
