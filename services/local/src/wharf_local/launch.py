"""What a replica's process runs: argv and environment from the component's plan, its ports,
its model folders and (for a transformer or explainer) where its predictor is.

KServe's contract for custom containers is kept: `$PORT` is the port to listen on. A container
without a command runs Wharf's model server when its image is one of KServe's (`images`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath as Path

from wharf_api.names import component_service_name, local_url
from wharf_api.plan import ComponentPlan
from wharf_local.images import MODEL_SERVER, local_command
from wharf_local.processes import resolve_command
from wharf_local.rebind import rebind_args


class CommandError(Exception):
    """The container has nothing to run here; the message names the runtime that chose it."""


def predictor_url(ingress_host: str, ingress_port: int, namespace: str, name: str) -> str:
    """Where a transformer or explainer reaches its predictor: through the ingress, by the
    predictor's path, so the predictor keeps its traffic split, autoscaling and activator."""
    host = "127.0.0.1" if ingress_host in ("0.0.0.0", "") else ingress_host
    predictor = component_service_name(name, "predictor")
    return local_url(f"http://{host}:{ingress_port}", namespace, predictor)


def replica_process(
    plan: ComponentPlan,
    *,
    http_port: int,
    grpc_port: int | None,
    model_dirs: Mapping[str, str] | None,
    predictor: str | None,
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) of one replica; raises CommandError when there is no command to run."""
    args = rebind_args(
        plan.container.args,
        http_port=http_port,
        grpc_port=grpc_port,
        model_dirs=model_dirs,
        predictor_host=predictor if plan.component != "predictor" else None,
    )
    env = dict(plan.container.env)
    env |= {
        "PYTHONUNBUFFERED": "1",
        # KServe's contract for custom containers: the port to listen on
        "PORT": str(http_port),
        # Replicas answer on loopback only: the ingress is the one way in.
        "WHARF_BIND_HOST": "127.0.0.1",
    }
    command = plan.container.command or local_command(plan.container.image) or ()
    if command and Path(command[0]).name == MODEL_SERVER and grpc_port is None:
        # the runtime declares no gRPC port: the model server's default (8081) would be shared
        # by every replica on this machine
        args = (*args, "--enable_grpc=false")
    try:
        argv = resolve_command(command) + list(args)
    except (ValueError, FileNotFoundError) as exc:
        raise CommandError(f"{exc}{runtime_note(plan)}") from None
    return argv, env


def runtime_note(plan: ComponentPlan) -> str:
    if not plan.runtime or not plan.runtime_kind:
        return ""
    return (
        f" (container {plan.container.name!r} of {plan.runtime_kind} {plan.runtime}, selected "
        f"for model format {plan.model_format!r}; give it a command, or remove it with "
        f"`wharf delete {plan.runtime_kind.lower()} {plan.runtime}`)"
    )
