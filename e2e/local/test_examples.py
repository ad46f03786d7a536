"""The offline examples run as a user runs them: `wharf up -f examples/local/` as a folder, then
the rollout and canary steps, against a copy of examples/ with models trained locally."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wharf_e2e.testing import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
WHARF = Path(sys.executable).with_name("wharf")


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    root = tmp_path_factory.mktemp("examples")
    copy = root / "examples"
    shutil.copytree(REPO / "examples", copy, ignore=shutil.ignore_patterns("iris*", "*.joblib"))
    subprocess.run(
        [sys.executable, str(copy / "models" / "make_iris.py")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    env = {
        **os.environ,
        "WHARF_HOME": str(root / "home"),
        "WHARF_INGRESS_PORT": str(free_port()),
        "WHARF_INGRESS_GRPC_PORT": str(free_port()),
    }
    try:
        yield copy, env
    finally:
        subprocess.run([str(WHARF), "down"], env=env, capture_output=True, timeout=120)


def up(env: dict[str, str], target: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(WHARF), "up", "-f", str(target)], env=env, capture_output=True, text=True, timeout=280
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.timeout(600)
def test_the_local_folder_and_the_rollout_steps_serve(
    examples: tuple[Path, dict[str, str]],
) -> None:
    folder, env = examples
    out = up(env, folder / "local").stdout
    for name in ("sklearn-iris", "xgboost-iris", "sklearn-iris-scale-to-zero", "iris-transformed"):
        assert f"{name} is ready:" in out, out
    rolled = up(env, folder / "rollout" / "sklearn-iris-v2.yaml").stdout
    assert "inferenceservice/sklearn-iris configured" in rolled
    assert "sklearn-iris is ready:" in rolled
    canary = up(env, folder / "rollout" / "sklearn-iris-canary.yaml").stdout
    assert "sklearn-iris is ready:" in canary
