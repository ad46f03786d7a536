"""The GitHub Actions workflows: actionlint (with ShellCheck on the `run:` scripts) passes on
every file in .github/workflows, and the two workflows run what the project runs: hosted CI
runs `bash .ci/run`, the GPU workflow runs the `kind`/`gpu` tests on self-hosted GPU runners.

actionlint is built from the Go module proxy and ShellCheck comes from a PyPI wheel, both by
scripts/install-test-tools into ~/.cache/wharf. A missing one skips with the reason, or fails
where tools are required (WHARF_STORAGE_REQUIRED=1 or CI=true).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from wharf_e2e.setup_gate import INSTALL_TEST_TOOLS, failure_note, wait_for_setup

ROOT = Path(__file__).resolve().parents[3]
WORKFLOWS = ROOT / ".github" / "workflows"
CACHE = Path(os.environ.get("WHARF_CACHE", Path.home() / ".cache" / "wharf"))


def _find_tool(name: str, cached: Path) -> Path:
    wait_for_setup()
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    reason = f"{name} is not installed (looked in {cached} and on PATH){failure_note(INSTALL_TEST_TOOLS)}"
    required = os.environ.get("WHARF_STORAGE_REQUIRED") == "1" or os.environ.get("CI") == "true"
    if required:
        pytest.fail(f"{reason}; CI needs it (run scripts/install-test-tools)")
    pytest.skip(f"{reason}; run scripts/install-test-tools")


def _actionlint(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    actionlint = _find_tool("actionlint", CACHE / "go" / "bin" / "actionlint")
    shellcheck = _find_tool("shellcheck", CACHE / "lint-tools" / "bin" / "shellcheck")
    return subprocess.run(
        [str(actionlint), "-no-color", "-shellcheck", str(shellcheck), *map(str, files)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return loaded


def _run_lines(workflow: dict[Any, Any]) -> list[str]:
    return [
        step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step
    ]


@pytest.mark.setup_tools  # actionlint and shellcheck, from scripts/install-test-tools
def test_actionlint_passes_on_every_workflow() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert {f.name for f in files} >= {"ci.yaml", "gpu-e2e.yaml"}
    done = _actionlint(*files)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.setup_tools
def test_actionlint_rejects_a_broken_workflow(tmp_path: Path) -> None:
    # The negative control: an unknown context, a runner label nobody has, unquoted $VAR.
    flows = tmp_path / ".github" / "workflows"
    flows.mkdir(parents=True)
    bad = flows / "bad.yaml"
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: [self-hosted, tpu]\n"
        "    steps:\n"
        "      - run: echo ${{ github.no_such_thing }} && rm -rf $DIR/build\n"
    )
    done = _actionlint(bad, cwd=tmp_path)
    assert done.returncode != 0
    assert "no_such_thing" in done.stdout, done.stdout
    assert 'label "tpu" is unknown' in done.stdout, done.stdout
    assert "SC2086" in done.stdout, done.stdout  # ShellCheck really ran


def test_hosted_ci_runs_the_projects_ci_entry_point() -> None:
    workflow = _workflow("ci.yaml")
    (job,) = workflow["jobs"].values()
    assert not str(job["runs-on"]).startswith("[") and "self-hosted" not in str(job["runs-on"])
    assert "bash .ci/run" in _run_lines(workflow)
    cached = [s["with"]["path"] for s in job["steps"] if "actions/cache" in s.get("uses", "")]
    for path in ("~/.cache/uv", "~/go/pkg/mod", "~/.cache/wharf"):
        assert any(path in c for c in cached), f"{path} is not cached"


def test_the_gpu_workflow_runs_the_kind_and_gpu_tests_on_gpu_runners() -> None:
    workflow = _workflow("gpu-e2e.yaml")
    (job,) = workflow["jobs"].values()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert job["env"]["WHARF_KIND_REQUIRED"] == "1"
    pytest_runs = [r for r in _run_lines(workflow) if " pytest " in f" {r} "]
    assert len(pytest_runs) == 1, pytest_runs
    words = shlex.split(pytest_runs[0])
    expression = words[words.index("-m") + 1]
    with (ROOT / "pyproject.toml").open("rb") as f:
        markers = tomllib.load(f)["tool"]["pytest"]["ini_options"]["markers"]
    declared = {m.split(":")[0] for m in markers}
    used = set(re.findall(r"[a-z_]+", expression)) - {"and", "or", "not"}
    assert used == {"kind", "gpu"} and used <= declared, (expression, declared)
