"""Every `bash` block of docs/local.md runs as written, in order, in a fresh shell.

A block preceded by `<!-- docs-test: skip (reason) -->` is not run (it needs the network or runs
until interrupted) and must give its reason. The others run for real from the repository root
against a temporary WHARF_HOME and free ingress ports.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from wharf_e2e.testing import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "local.md"
BLOCK = re.compile(
    r"(?:<!-- docs-test: skip \((?P<skip>[^)]*)\) -->\n)?```bash\n(?P<code>.*?)```", re.S
)


def blocks() -> list[tuple[str, str | None]]:
    return [(m["code"], m["skip"]) for m in BLOCK.finditer(DOC.read_text())]


def test_the_page_has_blocks_and_every_skip_gives_a_reason() -> None:
    found = blocks()
    assert sum(skip is None for _, skip in found) >= 2
    assert all(skip is None or skip.strip() for _, skip in found)
    # the docs use commands that work in a fresh shell, not a bare `wharf` nobody installed
    for code, _ in found:
        for line in code.splitlines():
            assert not re.match(r"\s*wharf\s", line), line


@pytest.mark.timeout(900)
def test_every_command_block_runs(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "WHARF_HOME": str(tmp_path / "home"),
        "WHARF_INGRESS_PORT": str(free_port()),
        "WHARF_INGRESS_GRPC_PORT": str(free_port()),
    }
    try:
        for i, (code, skip) in enumerate(blocks()):
            if skip is not None:
                continue
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", code],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert result.returncode == 0, f"block {i}:\n{code}\n{result.stdout}\n{result.stderr}"
    finally:
        subprocess.run([str(REPO / "scripts" / "wharf"), "down"], env=env, timeout=60, check=False)
