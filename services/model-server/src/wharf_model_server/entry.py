"""The `wharf-model-server` console script: the model server, in the environment its runtime needs.

The Hugging Face runtime (`--model_format huggingface` or `vllm`) needs torch, transformers and
vLLM, which live only in the LLM engine environment (docs/adr/0004, 0006). Started from an
environment without them (the workspace's, as `wharf up` runs the built-in
`kserve-huggingfaceserver` runtime's `wharf-model-server` command), the script becomes
`wharf-llm-worker engine-python -m wharf_model_server ARGS`: the LLM worker's CLI owns where
that environment is, and services do not import each other. In the engine environment, and for
every other runtime, it is `python -m wharf_model_server` as before.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ENGINE_LAUNCHER = "wharf-llm-worker"
ENGINE_PYTHON_COMMAND = "engine-python"
# set on the way into the engine environment: a second hand-off would loop
REEXEC_ENV = "WHARF_MODEL_SERVER_IN_ENGINE_ENV"
ENGINE_MODULES = ("torch", "transformers")


def _model_format(argv: Sequence[str]) -> str | None:
    """The value of `--model_format`, `--model-format` or `--framework`, as the server reads it."""
    names = ("--model_format", "--model-format", "--framework")
    found = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        flag, eq, value = arg.partition("=")
        if flag in names:
            found = value if eq else (argv[i + 1] if i + 1 < len(argv) else None)
    return found


def engine_argv(
    argv: Sequence[str],
    *,
    has_engine_modules: bool,
    launcher: str | None,
    environ: Mapping[str, str],
) -> list[str] | None:
    """The command to become instead of serving here, or None to serve in this process.
    Raises SystemExit with the reason when the runtime cannot run from here."""
    from wharf_model_server.runtimes.huggingface.options import wants_huggingface

    if has_engine_modules or not wants_huggingface(_model_format(argv)):
        return None
    if environ.get(REEXEC_ENV):
        raise SystemExit(
            "wharf-model-server: the LLM engine environment does not import torch and "
            "transformers; reinstall it with scripts/install-llm-engine"
        )
    if launcher is None:
        raise SystemExit(
            "wharf-model-server: the huggingface runtime needs the LLM engine environment "
            f"(torch, transformers, vLLM) and `{ENGINE_LAUNCHER}`, which finds it, is not "
            "installed beside this server; install wharf-llm-worker and run "
            "scripts/install-llm-engine"
        )
    return [launcher, ENGINE_PYTHON_COMMAND, "-m", "wharf_model_server", *argv]


def _launcher() -> str | None:
    # beside this interpreter first: the console scripts of one environment live together
    beside = Path(sys.executable).with_name(ENGINE_LAUNCHER)
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(ENGINE_LAUNCHER)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    has = all(importlib.util.find_spec(m) is not None for m in ENGINE_MODULES)
    command = engine_argv(args, has_engine_modules=has, launcher=_launcher(), environ=os.environ)
    if command is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], command, {**os.environ, REEXEC_ENV: "1"})
    from wharf_model_server.__main__ import main as serve

    serve(argv)
