"""`wharf-model-server` hands the Hugging Face runtime to the LLM engine environment (entry.py)."""

from __future__ import annotations

import pytest

from wharf_model_server.entry import REEXEC_ENV, engine_argv

LAUNCHER = "/venv/bin/wharf-llm-worker"


@pytest.mark.parametrize(
    "argv",
    [
        ["--model_name=clf", "--model-format=huggingface"],
        ["--model_format", "vllm", "--model_dir", "/m"],
        ["--framework=HuggingFace"],
    ],
)
def test_the_huggingface_runtime_becomes_the_engine_pythons_model_server(
    argv: list[str],
) -> None:
    command = engine_argv(argv, has_engine_modules=False, launcher=LAUNCHER, environ={})
    assert command == [LAUNCHER, "engine-python", "-m", "wharf_model_server", *argv]


@pytest.mark.parametrize(
    ("argv", "has_modules"),
    [
        (["--model-format=sklearn", "--model_dir", "/m"], False),
        (["--model_dir", "/m"], False),
        (["--model-format=huggingface"], True),  # already in the engine environment
    ],
)
def test_other_runtimes_and_the_engine_environment_serve_in_place(
    argv: list[str], has_modules: bool
) -> None:
    assert engine_argv(argv, has_engine_modules=has_modules, launcher=LAUNCHER, environ={}) is None


def test_without_the_launcher_or_in_a_loop_the_error_says_what_to_install() -> None:
    argv = ["--model-format=huggingface"]
    with pytest.raises(SystemExit, match="install wharf-llm-worker and run scripts/install"):
        engine_argv(argv, has_engine_modules=False, launcher=None, environ={})
    with pytest.raises(SystemExit, match="does not import torch"):
        engine_argv(argv, has_engine_modules=False, launcher=LAUNCHER, environ={REEXEC_ENV: "1"})
