"""The Hugging Face runtime under `wharf up` (pure): which command stands in for its image, and
that the built-in runtime's command is the model server, which hands itself to the LLM engine
environment (the real run is e2e/local/test_huggingface_wharf_up.py)."""

from __future__ import annotations

from wharf_local.images import MODEL_SERVER, local_command
from wharf_local.runtimes import builtin_runtimes


def test_kserves_huggingfaceserver_image_runs_the_model_servers_huggingface_runtime() -> None:
    assert local_command("kserve/huggingfaceserver:v0.15.0") == (
        MODEL_SERVER,
        "--model-format=huggingface",
    )
    assert local_command("ghcr.io/wharf-serving/huggingface-server:latest") == (MODEL_SERVER,)


def test_the_builtin_huggingface_runtimes_run_the_model_server() -> None:
    runtimes = {r.metadata.name: r for r in builtin_runtimes()}
    for name, model_format in (
        ("kserve-huggingfaceserver", "huggingface"),
        ("kserve-vllmserver", "vllm"),
    ):
        (container,) = runtimes[name].spec.containers
        assert container.command == [MODEL_SERVER]
        assert f"--model-format={model_format}" in (container.args or [])
