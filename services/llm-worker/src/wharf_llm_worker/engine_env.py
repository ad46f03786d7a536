"""Where the LLM engine environment's interpreter is.

vLLM, torch, NIXL and Ray live in their own environment (services/llm-worker/engine-env, its own
lock; docs/adr/0004-llm-engine-environment.md), installed by `scripts/install-llm-engine`.
Anything that starts an engine asks this module for the interpreter to start it with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENGINE_PYTHON_ENV = "WHARF_LLM_ENGINE_PYTHON"
ENGINE_VENV_ENV = "WHARF_LLM_ENGINE_VENV"
INSTALL_SCRIPT = "scripts/install-llm-engine"

# services/llm-worker/src/wharf_llm_worker/engine_env.py -> services/llm-worker
_SERVICE_DIR = Path(__file__).resolve().parents[2]


class EngineEnvironmentMissing(RuntimeError):
    """The engine environment is not installed where it was looked for."""


def default_engine_venv() -> Path:
    """The folder `scripts/install-llm-engine` installs into when not told otherwise."""
    return _SERVICE_DIR / "engine-env" / ".venv"


def engine_python(environ: Mapping[str, str] | None = None) -> Path:
    """The engine environment's python: `WHARF_LLM_ENGINE_PYTHON`, else the venv named by
    `WHARF_LLM_ENGINE_VENV`, else the default location. Raises EngineEnvironmentMissing, naming
    the path tried and the script to run, when it is not there."""
    env = os.environ if environ is None else environ
    explicit = env.get(ENGINE_PYTHON_ENV, "").strip()
    if explicit:
        python = Path(explicit)
        origin = f"{ENGINE_PYTHON_ENV}={explicit}"
    else:
        venv_dir = env.get(ENGINE_VENV_ENV, "").strip()
        venv = Path(venv_dir) if venv_dir else default_engine_venv()
        python = venv / "bin" / "python"
        origin = f"{ENGINE_VENV_ENV}={venv_dir}" if venv_dir else "the default location"
    if not (python.is_file() and os.access(python, os.X_OK)):
        raise EngineEnvironmentMissing(
            f"the LLM engine environment (vLLM) is not installed: no python at {python} "
            f"(from {origin}); run {INSTALL_SCRIPT}, or set {ENGINE_PYTHON_ENV} to the "
            "interpreter it printed"
        )
    return python
