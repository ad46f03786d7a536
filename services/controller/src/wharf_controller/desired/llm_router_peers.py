"""The router replicas' peer exchange (pure): when the scheduler runs Wharf's router
(`wharf-router gateway`) and its flags name no peers of the user's own, its replicas find each
other by their pods' labels and exchange placements and load (docs/router.md, "Replicas";
ADR 8 and its addendum).

On for every such scheduler, one replica or more: the flags live in the pod template, so a
Deployment scaled later (`kubectl scale`, an autoscaler, a rollout's surge pod) finds its peers
without a new template, and going from one replica to two does not restart the first.

What it adds: the peer flags, the pod's name from the downward API, a container port named
`peer`, the shared token as a Secret volume (the Secret `{name}-epp-peer-token`, created by
the controller with a random token when absent: `expected_peer_token_secret` says what must
exist, the adapter draws the token).

No NetworkPolicy: a policy that selects the scheduler pods isolates them, so it would have to
list their other ports as open to all, and policies add up: in a namespace whose own policies
keep those pods reachable only from the ingress gateway, that rule would open the router's
port to the whole cluster. Who may reach the pods is the cluster admin's policy; the peer port
takes only messages that carry the shared token (compared in constant time, bounded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wharf_api.llm import LLMContainer, LLMPod
from wharf_api.llm.plan_types import MAIN_CONTAINER
from wharf_api.llm.template_context import child_name

JSON = dict[str, Any]
ROUTER_COMMAND = "wharf-router"
# the first port tried for the peer listener; the next free one when the pod declares it
PEER_PORT = 9090
PEER_PORT_NAME = "peer"
PEER_TOKEN_KEY = "token"
PEER_TOKEN_DIR = "/var/run/wharf/peer-token"
PEER_VOLUME = "wharf-peer-token"
PEER_NAME_ENV = "WHARF_PEER_NAME"


@dataclass(frozen=True)
class PeerExchange:
    """The exchange the controller turns on for one scheduler."""

    port: int  # the peer listener's port (`--peer-listen 0.0.0.0:<port>`)
    secret: str  # the token Secret's name


def peer_names(name: str) -> dict[str, str]:
    return {"secret": child_name(name, "-epp-peer-token")}


def _argv(c: LLMContainer) -> list[str]:
    return [*c.command, *c.args]


def runs_wharf_gateway(c: LLMContainer) -> bool:
    """Whether the container runs `wharf-router gateway` (by path or by name)."""
    argv = _argv(c)
    return len(argv) >= 2 and argv[0].rsplit("/", 1)[-1] == ROUTER_COMMAND and argv[1] == "gateway"


def has_peer_flags(argv: Sequence[str]) -> bool:
    """Whether the user's flags already configure the exchange (any `--peer...` flag)."""
    return any(a == "--peer" or a.startswith(("--peer-", "--peer=")) for a in argv)


def _flag(argv: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


def _declared_ports(pod: LLMPod) -> list[int]:
    out = []
    for c in (*pod.init_containers, *pod.containers):
        for p in c.ports:
            if isinstance(p.get("containerPort"), int):
                out.append(int(p["containerPort"]))
    return out


def peer_exchange(pod: LLMPod, name: str, service_port: int) -> PeerExchange | None:
    """The exchange for the scheduler pod, or None where the controller must leave it alone: a
    main container that is not `wharf-router gateway`, peer flags of the user's own, or a
    `--config` file without `--kube-namespace` (the flag would override the file's namespace)."""
    main = pod.main
    argv = _argv(main)
    if not runs_wharf_gateway(main) or has_peer_flags(argv):
        return None
    if _flag(argv, "--kube-namespace") is None and _flag(argv, "--config") is not None:
        return None
    taken = set(_declared_ports(pod)) | {service_port}
    public = _flag(argv, "--port")
    if public is not None and public.isdigit():
        taken.add(int(public))
    port = PEER_PORT
    while port in taken:
        port += 1
    return PeerExchange(port, peer_names(name)["secret"])


def _port_name(pod: LLMPod) -> str:
    """`peer`, or `wharf-peer` when a container already names a port `peer` (names are unique
    in a pod)."""
    names = {p.get("name") for c in (*pod.init_containers, *pod.containers) for p in c.ports}
    return PEER_PORT_NAME if PEER_PORT_NAME not in names else f"wharf-{PEER_PORT_NAME}"


def selector_flag(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def with_peer_exchange(
    pod: LLMPod, exchange: PeerExchange, namespace: str, own_labels: Mapping[str, str]
) -> LLMPod:
    """The pod with the exchange's flags, env, port and token volume in its main container."""
    main = pod.main
    flags = [
        "--peer-listen",
        f"0.0.0.0:{exchange.port}",
        "--peer-kube-selector",
        selector_flag(own_labels),
        "--peer-token-file",
        f"{PEER_TOKEN_DIR}/{PEER_TOKEN_KEY}",
        # Kubernetes expands $(VAR) from the env defined before: the pod's own name
        "--peer-name",
        f"$({PEER_NAME_ENV})",
    ]
    if _flag(_argv(main), "--kube-namespace") is None:
        flags += ["--kube-namespace", namespace]
    # the flags go after the last list the user wrote (command + args is one argv)
    if main.args:
        command, args = main.command, (*main.args, *flags)
    else:
        command, args = (*main.command, *flags), main.args
    name_ref = {"fieldRef": {"fieldPath": "metadata.name"}}
    new_main = dataclasses.replace(
        main,
        command=tuple(command),
        args=tuple(args),
        env_refs=(*(e for e in main.env_refs if e[0] != PEER_NAME_ENV), (PEER_NAME_ENV, name_ref)),
        ports=(
            *main.ports,
            {"containerPort": exchange.port, "name": _port_name(pod), "protocol": "TCP"},
        ),
        volume_mounts=(
            *main.volume_mounts,
            {"name": PEER_VOLUME, "mountPath": PEER_TOKEN_DIR, "readOnly": True},
        ),
    )
    containers = tuple(new_main if c.name == MAIN_CONTAINER else c for c in pod.containers)
    volume = {
        "name": PEER_VOLUME,
        "secret": {
            "secretName": exchange.secret,
            "items": [{"key": PEER_TOKEN_KEY, "path": PEER_TOKEN_KEY}],
        },
    }
    return dataclasses.replace(pod, containers=containers, volumes=(*pod.volumes, volume))
