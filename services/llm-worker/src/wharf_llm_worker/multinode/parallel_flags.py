"""vLLM's parallelism flags, read out of a group's engine arguments. Pure.

An LLMInferenceService's `parallelism` reaches the worker as vLLM's own flags after `--`
(`--tensor-parallel-size 8 --pipeline-parallel-size 2`, or `--data-parallel-size 16
--data-parallel-size-local 8`), as it reaches a single-node worker. In a multi-node group those
numbers decide the layout of the ranks, so the group takes them out of the engine arguments
and sets them on each rank itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# flag spellings (vLLM's long and short ones) -> the field they set
_FLAGS = {
    "--tensor-parallel-size": "tensor",
    "-tp": "tensor",
    "--pipeline-parallel-size": "pipeline",
    "-pp": "pipeline",
    "--data-parallel-size": "data",
    "-dp": "data",
    "--data-parallel-size-local": "data_local",
    "-dpl": "data_local",
    "--data-parallel-rpc-port": "data_rpc_port",
    "-dpp": "data_rpc_port",
}
_LONG = {field: flag for flag, field in _FLAGS.items() if flag.startswith("--")}
MAX_VALUE = 65535


class ParallelFlagError(ValueError):
    """A parallelism flag with a value that is not a number, or given twice differently."""


@dataclass(frozen=True)
class ParallelFlags:
    tensor: int | None = None
    pipeline: int | None = None
    data: int | None = None
    data_local: int | None = None
    data_rpc_port: int | None = None


def _number(flag: str, raw: str | None) -> int:
    if raw is None or not raw.isdigit() or int(raw) > MAX_VALUE:
        raise ParallelFlagError(f"{flag} needs a whole number up to {MAX_VALUE}, got {raw!r}")
    return int(raw)


def lift_parallel_flags(engine_args: Sequence[str]) -> tuple[ParallelFlags, tuple[str, ...]]:
    """The parallelism flags among `engine_args`, and the arguments without them."""
    values: dict[str, int] = {}
    rest: list[str] = []
    i = 0
    while i < len(engine_args):
        arg = engine_args[i]
        flag, eq, inline = arg.partition("=")
        field = _FLAGS.get(flag)
        if field is None:
            rest.append(arg)
            i += 1
            continue
        raw = inline if eq else (engine_args[i + 1] if i + 1 < len(engine_args) else None)
        value = _number(_LONG[field], raw)
        if values.get(field, value) != value:
            raise ParallelFlagError(f"{_LONG[field]} is given twice, {values[field]} and {value}")
        values[field] = value
        i += 1 if eq else 2
    return ParallelFlags(**values), tuple(rest)


def merge(flag: str, own: int | None, lifted: int | None) -> int | None:
    """A group option given both as the command's flag and in the engine arguments must agree."""
    if own is not None and lifted is not None and own != lifted:
        raise ParallelFlagError(f"{flag} is {own} but the engine arguments say {lifted}")
    return own if own is not None else lifted
