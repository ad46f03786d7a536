"""Engine arguments the plan adds to a workload's `main` container, from the merged spec.

- `parallelism` becomes vLLM's `--tensor-parallel-size`, `--pipeline-parallel-size`,
  `--data-parallel-size[-local]`, `--data-parallel-rpc-port` and `--enable-expert-parallel`,
  for containers that run Wharf's worker (a KServe preset's script adds them itself);
- `model.lora` becomes the worker's `--lora NAME=PATH` flags and vLLM's limits, or KServe's own
  `--enable-lora --lora-modules '{json}'` for another command (KServe's addLoRAVLLMArgs);
- `tracing` becomes vLLM's OTLP flags and the `OTEL_*` environment (KServe's
  injectServerTracing).

A flag the user already gives is never added again. Pure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from wharf_api.llm.plan_types import MAIN_CONTAINER, LLMContainer, LLMPod, LoraPlan
from wharf_api.llm.tracing_env import SERVER_SERVICE_NAME, otel_env, otel_env_refs
from wharf_api.llm.worker_cli import LORA_FLAG, is_worker_command, with_worker_flags
from wharf_api.resources.llm_inference_service import ParallelismSpec, TracingSpec

__all__ = ["with_engine_args", "with_tracing"]


def _parallelism_args(p: ParallelismSpec | None) -> list[str]:
    if p is None:
        return []
    out: list[str] = []
    for flag, value in (
        ("--tensor-parallel-size", p.tensor),
        ("--pipeline-parallel-size", p.pipeline),
        ("--data-parallel-size", p.data),
        ("--data-parallel-size-local", p.data_local),
        ("--data-parallel-rpc-port", p.data_rpc_port),
    ):
        if value is not None:
            out += [flag, str(value)]
    if p.expert:
        out.append("--enable-expert-parallel")
    return out


def _without_given(extra: list[str], given: Sequence[str]) -> list[str]:
    """`extra` flags (with their values) that `given` does not already set."""
    out: list[str] = []
    i = 0
    while i < len(extra):
        flag = extra[i]
        takes_value = i + 1 < len(extra) and not extra[i + 1].startswith("--")
        present = any(g == flag or g.startswith(flag + "=") for g in given)
        if not present:
            out += extra[i : i + (2 if takes_value else 1)]
        i += 2 if takes_value else 1
    return out


def _lora_limits(lora: LoraPlan) -> list[str]:
    out = []
    if lora.max_rank is not None:
        out.append(f"--max-lora-rank={lora.max_rank}")
    if lora.max_adapters is not None:
        out.append(f"--max-loras={lora.max_adapters}")
    if lora.max_cpu_adapters is not None:
        out.append(f"--max-cpu-loras={lora.max_cpu_adapters}")
    return out


def _kserve_lora_args(lora: LoraPlan, namespace: str) -> list[str]:
    """KServe's addLoRAVLLMArgs: its presets pass args through `eval`, so it quotes each
    JSON module, and registers each adapter under its publisher name too."""
    out = ["--enable-lora", *_lora_limits(lora), "--lora-modules"]
    for adapter in lora.adapters:
        for module_name in (adapter.name, f"publishers/{namespace}/models/{adapter.name}"):
            module = {"name": module_name, "path": adapter.mount_path}
            out.append(f"'{json.dumps(module, separators=(',', ':'))}'")
    return out


def _user_lora(c: LLMContainer) -> bool:
    additional = dict(c.env).get("VLLM_ADDITIONAL_ARGS", "")
    given = [*c.command, *c.args]
    worker_lora = any(a == LORA_FLAG or a.startswith(LORA_FLAG + "=") for a in given)
    return "--lora-modules" in additional or "--lora-modules" in " ".join(given) or worker_lora


def with_engine_args(
    pod: LLMPod, parallelism: ParallelismSpec | None, lora: LoraPlan | None, namespace: str
) -> LLMPod:
    containers: list[LLMContainer] = []
    for c in pod.containers:
        if c.name != MAIN_CONTAINER:
            containers.append(c)
            continue
        worker = is_worker_command(c.command)
        given = [*c.command, *c.args]
        extra = _without_given(_parallelism_args(parallelism), given) if worker else []
        command = c.command
        if lora is not None and lora.adapters and not _user_lora(c):
            if worker:
                # the worker owns --lora-modules: adapters are its --lora flags
                flags = [f for a in lora.adapters for f in (LORA_FLAG, f"{a.name}={a.mount_path}")]
                command = tuple(with_worker_flags(c.command, flags))
                extra += _without_given(_lora_limits(lora), given)
            else:
                extra += _kserve_lora_args(lora, namespace)
        containers.append(
            LLMContainer(**{**c.__dict__, "command": command, "args": (*extra, *c.args)})
        )
    return _replace_containers(pod, tuple(containers))


def with_tracing(
    pod: LLMPod, tracing: TracingSpec | None, namespace: str, name: str, role_suffix: str
) -> LLMPod:
    """KServe's injectServerTracing: vLLM's OTLP flags and the OTEL_* env on `main`."""
    if tracing is None or not tracing.exporter_endpoint:
        return pod
    endpoint = tracing.exporter_endpoint
    env = otel_env(tracing, namespace, name, SERVER_SERVICE_NAME + role_suffix)
    refs = otel_env_refs()
    containers = []
    for c in pod.containers:
        if c.name != MAIN_CONTAINER:
            containers.append(c)
            continue
        args = list(c.args)
        for flag, value in (
            ("--otlp-traces-endpoint", endpoint),
            ("--collect-detailed-traces", "all"),
        ):
            if not any(a == flag or a.startswith(flag + "=") for a in args):
                args += [flag, value]
        literal = {k: v for k, v in c.env if k not in refs}
        literal.update(env)
        from_refs = {k: v for k, v in c.env_refs if k not in env}
        from_refs.update(refs)
        containers.append(
            LLMContainer(
                **{
                    **c.__dict__,
                    "args": tuple(args),
                    "env": tuple(literal.items()),
                    "env_refs": tuple(from_refs.items()),
                }
            )
        )
    return _replace_containers(pod, tuple(containers))


def _replace_containers(pod: LLMPod, containers: tuple[LLMContainer, ...]) -> LLMPod:
    return LLMPod(**{**pod.__dict__, "containers": containers})
