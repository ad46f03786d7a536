"""The `ray start` command and environment of a group's head or joining node. Pure."""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass

from wharf_llm_worker.multinode.placement import node_rank_resource

DEFAULT_RAY_PORT = 6379
# Unix socket paths under Ray's temp dir must stay within 107 characters (Ray's own check); Ray
# adds /ray (the child it runs in, below) and about 67 more
# (/session_<date>_<pid>/sockets/plasma_store.1 for a second node on the machine).
MAX_TEMP_DIR_CHARS = 36
# Ray makes its temp root mode 0777 when a node starts (it expects several users to share
# /tmp/ray): it gets a child of --ray-temp-dir, which stays this user's alone (0700, tempdir.py)
RAY_TEMP_CHILD = "ray"
# Ray's node-local ports, as offsets from --ports-base, so that two nodes on one machine (and
# the tests) never collide; without a base Ray picks its defaults, which is what one node per
# pod wants.
_PORT_OFFSETS = {
    "--node-manager-port": 0,
    "--object-manager-port": 1,
    "--dashboard-agent-listen-port": 2,
    "--dashboard-agent-grpc-port": 3,
    "--metrics-export-port": 4,
    "--runtime-env-agent-port": 5,
    "--ray-client-server-port": 6,
}
_WORKER_PORTS = (10, 59)
PORTS_SPAN = _WORKER_PORTS[1] + 1
_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.\-]{0,251}[A-Za-z0-9])?$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:]+$")


class RayArgsError(ValueError):
    pass


@dataclass(frozen=True)
class RayNodeConfig:
    """One Ray node of the group. ``head_address`` is None on the head itself."""

    node_rank: int
    ray_port: int = DEFAULT_RAY_PORT
    head_address: str | None = None
    node_ip: str | None = None
    ports_base: int | None = None
    temp_dir: str | None = None
    num_cpus: int | None = None
    object_store_mb: int = 512

    def __post_init__(self) -> None:
        if not 0 <= self.node_rank < 1024:
            raise RayArgsError(f"--node-rank must be between 0 and 1023, got {self.node_rank}")
        if not 1 <= self.ray_port <= 65535:
            raise RayArgsError(f"--ray-port must be a TCP port, got {self.ray_port}")
        if self.ports_base is not None and not 1024 <= self.ports_base <= 65535 - PORTS_SPAN:
            raise RayArgsError(
                f"--ports-base must be between 1024 and {65535 - PORTS_SPAN}, got {self.ports_base}"
            )
        if self.temp_dir is not None and (
            len(self.temp_dir) > MAX_TEMP_DIR_CHARS or not self.temp_dir.startswith("/")
        ):
            raise RayArgsError(
                f"--ray-temp-dir must be an absolute path of at most {MAX_TEMP_DIR_CHARS} "
                f"characters (Ray's socket paths grow from it), got {self.temp_dir!r}"
            )
        if self.temp_dir is not None and (
            posixpath.normpath(self.temp_dir) != self.temp_dir.rstrip("/")
            or posixpath.dirname(self.temp_dir.rstrip("/")) in ("/", "")
        ):
            # the folder is made private (0700): never a system folder such as /tmp itself
            raise RayArgsError(
                f"--ray-temp-dir must be a folder of its own inside another (such as "
                f"/tmp/NAME), with no '.' or '..' parts, got {self.temp_dir!r}"
            )
        if self.num_cpus is not None and not 0 <= self.num_cpus <= 4096:
            raise RayArgsError(f"--num-cpus must be between 0 and 4096, got {self.num_cpus}")
        if not 78 <= self.object_store_mb <= 1024 * 1024:
            raise RayArgsError(
                f"--object-store-memory-mb must be at least 78 (Ray's minimum), "
                f"got {self.object_store_mb}"
            )
        for name, host in (("--node-ip", self.node_ip), ("--join", self.head_host)):
            if host is not None and not valid_host(host):
                raise RayArgsError(f"{name} is not a host name or address: {host!r}")

    @property
    def is_head(self) -> bool:
        return self.head_address is None

    @property
    def head_host(self) -> str | None:
        return None if self.head_address is None else split_address(self.head_address)[0]


def valid_host(host: str) -> bool:
    return bool(_HOST_RE.match(host) or (":" in host and _IPV6_RE.match(host)))


def split_address(address: str, default_port: int = DEFAULT_RAY_PORT) -> tuple[str, int]:
    """``host`` or ``host:port`` (``[v6]:port``) -> (host, port)."""
    if len(address) > 255:
        raise RayArgsError("--join address is longer than 255 characters")
    host, port = address, default_port
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:])
    elif address.count(":") == 1:
        host, raw = address.split(":")
        port = _port(raw)
    if not host or not valid_host(host):
        raise RayArgsError(f"--join address has no valid host: {address!r}")
    return host, port


def _port(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise RayArgsError(f"not a TCP port: {raw!r}")
    return int(raw)


def ray_start_args(config: RayNodeConfig) -> list[str]:
    """Arguments after ``ray start``. ``--block`` keeps Ray's processes children of ours, so
    stopping this command stops the node; nothing is left running in the background."""
    # No dashboard and no log monitor: fewer processes racing the raylet's fixed wait for its
    # agent at start, and rank logs go to files of their own. Only a head takes
    # --include-dashboard; `ray start` refuses it on a joining node.
    args = ["--block", "--disable-usage-stats", "--include-log-monitor=false"]
    if config.is_head:
        args += ["--head", f"--port={config.ray_port}", "--include-dashboard=false"]
    else:
        assert config.head_address is not None
        host, port = split_address(config.head_address, config.ray_port)
        args += [f"--address={_join(host, port)}"]
    if config.node_ip:
        args += [f"--node-ip-address={config.node_ip}"]
    if config.ports_base is not None:
        for flag, offset in _PORT_OFFSETS.items():
            if flag == "--ray-client-server-port" and not config.is_head:
                continue
            args += [f"{flag}={config.ports_base + offset}"]
        args += [
            f"--min-worker-port={config.ports_base + _WORKER_PORTS[0]}",
            f"--max-worker-port={config.ports_base + _WORKER_PORTS[1]}",
        ]
    if config.temp_dir:
        args += [f"--temp-dir={config.temp_dir.rstrip('/')}/{RAY_TEMP_CHILD}"]
    if config.num_cpus is not None:
        args += [f"--num-cpus={config.num_cpus}"]
    args += [
        f"--object-store-memory={config.object_store_mb * 1024 * 1024}",
        f"--resources={json.dumps({node_rank_resource(config.node_rank): 1})}",
    ]
    return args


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def head_address(host: str, ray_port: int) -> str:
    return _join(host, ray_port)


def ray_env(token_path: str) -> dict[str, str]:
    """Environment for every Ray process of the group and for the supervisor's driver."""
    return {
        # Every node and driver must present the group's token (Ray 2.60 turns token auth on
        # for a head by default, and a joining node without it is refused).
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": token_path,
        # Under `uv run`, Ray would otherwise rebuild the uv environment for every worker.
        "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        # On SIGTERM a Ray 2.60 node first asks the GCS to drain it, for up to 30 s; a joining
        # node stopped after the leader waits on a GCS that is gone, and when its stop is cut
        # short its dashboard and runtime-env agents are left running. Nothing here drains (the
        # leader stops the ranks itself), so the node tears down at once.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
