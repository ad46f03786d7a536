"""Finding the engine environment's interpreter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wharf_llm_worker.engine_env import (
    EngineEnvironmentMissing,
    default_engine_venv,
    engine_python,
)


def _fake_python(folder: Path) -> Path:
    python = folder / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    return python


def test_explicit_interpreter_wins(tmp_path: Path) -> None:
    python = _fake_python(tmp_path / "a")
    other = _fake_python(tmp_path / "b")
    env = {"WHARF_LLM_ENGINE_PYTHON": str(python), "WHARF_LLM_ENGINE_VENV": str(other.parents[1])}
    assert engine_python(env) == python


def test_venv_folder_is_used_when_no_interpreter_is_named(tmp_path: Path) -> None:
    python = _fake_python(tmp_path / "venv")
    assert engine_python({"WHARF_LLM_ENGINE_VENV": str(tmp_path / "venv")}) == python


def test_missing_interpreter_names_the_path_and_the_script(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "python"
    with pytest.raises(EngineEnvironmentMissing) as info:
        engine_python({"WHARF_LLM_ENGINE_PYTHON": str(missing)})
    message = str(info.value)
    assert str(missing) in message
    assert "scripts/install-llm-engine" in message


def test_default_location_is_inside_the_service() -> None:
    venv = default_engine_venv()
    assert venv.parts[-3:] == ("llm-worker", "engine-env", ".venv")
    if not (venv / "bin" / "python").exists():
        with pytest.raises(EngineEnvironmentMissing, match="the default location"):
            engine_python({})
    else:
        assert os.access(engine_python({}), os.X_OK)
