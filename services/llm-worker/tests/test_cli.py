"""The worker's command line: parsing, errors, the dry run, and the multinode dispatch."""

from __future__ import annotations

import json
import sys
import types

import pytest

from wharf_llm_worker import cli


def test_dry_run_prints_the_launch(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    code = cli.main(
        [
            "--role", "decode", "--model", "/m", "--served-model-name", "m", "--port", "8200",
            "--kv-side-channel-port", "5602", "--lora", "a=/adapters/a", "--dry-run",
            "--", "--dtype", "bfloat16",
        ]
    )  # fmt: skip
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["env"]["VLLM_NIXL_SIDE_CHANNEL_PORT"] == "5602"
    assert document["args"][-2:] == ["--dtype", "bfloat16"]
    assert "a=/adapters/a" in document["args"]
    assert document["kill_timeout_s"] > 30


def test_invalid_options_exit_2_with_the_option_named(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(
        ["--role", "both", "--model", "/m", "--served-model-name", "bad name", "--port", "1"]
    )
    assert code == 2
    assert "--served-model-name" in capsys.readouterr().err


def test_missing_engine_environment_names_the_install_script(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHARF_LLM_ENGINE_PYTHON", "/nonexistent/python")
    code = cli.main(["--role", "both", "--model", "/m", "--served-model-name", "m", "--port", "1"])
    assert code == 3
    assert "scripts/install-llm-engine" in capsys.readouterr().err


def test_multinode_is_dispatched_with_the_remaining_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[list[str]] = []
    package = types.ModuleType("wharf_llm_worker.multinode")
    module = types.ModuleType("wharf_llm_worker.multinode.cli")

    def fake_main(args: list[str]) -> int:
        seen.append(args)
        return 7

    module.main = fake_main  # type: ignore[attr-defined]
    # Stands in for the multi-node package, which lives on its own branch of work.
    monkeypatch.setitem(sys.modules, "wharf_llm_worker.multinode", package)
    monkeypatch.setitem(sys.modules, "wharf_llm_worker.multinode.cli", module)
    assert cli.main(["multinode", "--leader", "x"]) == 7
    assert seen == [["--leader", "x"]]
