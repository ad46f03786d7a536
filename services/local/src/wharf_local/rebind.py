"""Container args for a place where ports and mount paths differ from the container's.

A plan speaks of the container (HTTP 8080, gRPC 8081, `/mnt/models`); locally every replica is
a process with its own ports and the model sits in the cache folder, so the args are rebound.
Local-only, pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def _rebind_flag(args: list[str], flag: str, value: str) -> list[str]:
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg.startswith(flag + "="):
            out.append(f"{flag}={value}")
        elif arg == flag and i + 1 < len(args):
            out += [flag, value]
            skip = True
        else:
            out.append(arg)
    return out


def rebind_args(
    args: Sequence[str],
    *,
    http_port: int | None = None,
    grpc_port: int | None = None,
    model_dirs: Mapping[str, str] | None = None,
    predictor_host: str | None = None,
) -> tuple[str, ...]:
    """Container args for a place where ports and mount paths differ from the container's.

    `--http_port`, `--grpc_port` and `--predictor_host` get the new values (in either
    `--flag=v` or `--flag v` form) and every arg starting with a mount path (`/mnt/models`)
    gets the local folder instead; other args are kept as they are.
    """
    out = list(args)
    for flag, value in (
        ("--http_port", http_port),
        ("--grpc_port", grpc_port),
        ("--predictor_host", predictor_host),
    ):
        if value is not None:
            out = _rebind_flag(out, flag, str(value))
    for mount, local in sorted((model_dirs or {}).items(), key=lambda kv: -len(kv[0])):
        out = [_replace_mount(a, mount, local) for a in out]
    return tuple(out)


def _replace_mount(arg: str, mount: str, local: str) -> str:
    prefix, sep, value = arg.partition("=")
    target = value if sep else prefix
    if target == mount or target.startswith(mount.rstrip("/") + "/"):
        target = local + target[len(mount.rstrip("/")) :]
        return f"{prefix}={target}" if sep else target
    return arg
