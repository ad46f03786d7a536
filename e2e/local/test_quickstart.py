"""The README's first command on this machine: it serves iris and its printed curl works; then
the commands the README names next (`get`, `describe`, the rollout of a new version, `down`), as
written there."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from wharf_e2e.testing import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
WHARF = "./scripts/wharf "


def readme_next_commands() -> list[str]:
    """The `./scripts/wharf ...` commands of the README's paragraph after the quickstart's
    output ("Then ..."), in order."""
    readme = (REPO / "README.md").read_text()
    paragraph = readme.split("\nThen ", 1)[1].split("\n\n", 1)[0].replace("\n", " ")
    commands = [c for c in re.findall(r"`([^`]+)`", paragraph) if c.startswith(WHARF)]
    assert commands, paragraph
    return commands


def test_quickstart_prints_a_curl_that_returns_predictions(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WHARF_HOME": str(tmp_path / "home"),
        "WHARF_INGRESS_PORT": str(free_port()),
        "WHARF_INGRESS_GRPC_PORT": str(free_port()),
    }
    # The version the README rolls out next must come from the quickstart too, not from an
    # earlier run (a generated, ignored folder, made again the same: a fixed seed)
    shutil.rmtree(REPO / "examples" / "models" / "iris-v2", ignore_errors=True)
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

        commands = readme_next_commands()
        assert any("examples/rollout/" in c for c in commands) and commands[-1].endswith("down")
        for command in commands:
            argv = command.split()
            done = subprocess.run(
                [str(REPO / argv[0]), *argv[1:]],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=110,
            )
            assert done.returncode == 0, f"{command}:\n{done.stdout}{done.stderr}"
            if "examples/rollout/" in command:
                assert "sklearn-iris is ready" in done.stdout, done.stdout
    finally:
        subprocess.run([str(REPO / "scripts" / "wharf"), "down"], env=env, timeout=60, check=False)
