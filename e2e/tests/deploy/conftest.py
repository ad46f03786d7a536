"""Fixtures for the tests of `deploy/`: the project's pinned kubectl and kustomize
(e2e/cluster/kube-tools.sh, exported as WHARF_KUBE_TOOLS by ./scripts/test) and each overlay
built once per session with that kustomize."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_e2e.setup_gate import KUBE_TOOLS, failure_note, wait_for_setup

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
MAX_RENDER_BYTES = 64 * 1024 * 1024


def _tools_dir() -> Path:
    wait_for_setup()
    value = os.environ.get("WHARF_KUBE_TOOLS")
    problem = None
    if not value:
        problem = "WHARF_KUBE_TOOLS is not set"
    else:
        missing = [t for t in ("kubectl", "kustomize") if not os.access(Path(value) / t, os.X_OK)]
        if missing:
            problem = f"{value} lacks {', '.join(missing)}"
    if problem is not None:
        reason = (
            f"no pinned kubectl/kustomize ({problem}); run ./scripts/test, or export "
            "WHARF_KUBE_TOOLS=$(e2e/cluster/kube-tools.sh | tail -1)" + failure_note(KUBE_TOOLS)
        )
        # CI must run these: a missing tool fails, as a missing control plane does.
        if os.environ.get("WHARF_K8S_REQUIRED") == "1" or os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert value is not None
    return Path(value)


@pytest.fixture(scope="session")
def kube_tools() -> Path:
    return _tools_dir()


@pytest.fixture(scope="session")
def kustomize_build(kube_tools: Path) -> Callable[[str], list[dict[str, Any]]]:
    """`kustomize build deploy/<path>` with the pinned kustomize, parsed; cached per path."""
    cache: dict[str, list[dict[str, Any]]] = {}

    def build(path: str) -> list[dict[str, Any]]:
        if path not in cache:
            result = subprocess.run(
                [str(kube_tools / "kustomize"), "build", str(DEPLOY / path)],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, f"kustomize build deploy/{path}:\n{result.stderr}"
            assert len(result.stdout) < MAX_RENDER_BYTES, f"deploy/{path} renders too much"
            # libyaml's loader: the CRDs make several MB that the pure-Python one parses slowly.
            cache[path] = [d for d in yaml.load_all(result.stdout, Loader=yaml.CSafeLoader) if d]
        return cache[path]

    return build
