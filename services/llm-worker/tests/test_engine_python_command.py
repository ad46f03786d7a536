"""`wharf-llm-worker engine-python`: how other services start code in the engine environment."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from wharf_llm_worker import cli


def test_without_the_environment_it_exits_3_naming_the_script(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHARF_LLM_ENGINE_PYTHON", str(tmp_path / "missing"))
    assert cli.main(["engine-python", "-c", "pass"]) == 3
    assert "scripts/install-llm-engine" in capsys.readouterr().err


def test_it_prints_the_interpreter_and_becomes_it_with_arguments(tmp_path: Path) -> None:
    # a stand-in interpreter: the real engine environment is not needed to check the hand-off
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "engine python got: $*"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "WHARF_LLM_ENGINE_PYTHON": str(fake)}
    run = [sys.executable, "-m", "wharf_llm_worker.cli", "engine-python"]
    printed = subprocess.run(run, env=env, capture_output=True, text=True, check=True, timeout=60)
    assert printed.stdout.strip() == str(fake)
    handed = subprocess.run(
        [*run, "-m", "wharf_model_server", "--model-format=huggingface"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert (
        handed.stdout.strip()
        == "engine python got: -m wharf_model_server --model-format=huggingface"
    )
