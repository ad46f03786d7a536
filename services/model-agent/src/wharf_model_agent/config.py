"""The agent's settings, from flags or environment variables (flags win)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wharf_model_agent.quantity import parse_bytes


@dataclass(frozen=True)
class AgentConfig:
    node_name: str
    cache_root: Path = Path("/mnt/models")
    metrics_port: int = 9100  # 0: no HTTP server
    max_parallel_downloads: int = 2
    resync_interval_s: float = 60.0
    storage_limit: int | None = None  # overrides the node groups' limits
    kubeconfig: str | None = None
    log_level: str = "INFO"


def parse_config(
    argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None
) -> AgentConfig:
    env = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="wharf-model-agent",
        description="Keep this node's model cache in line with its LocalModelNode.",
    )
    parser.add_argument(
        "--node-name",
        default=env.get("NODE_NAME"),
        help="this node's name, also its LocalModelNode's name (env NODE_NAME, from the downward API)",
    )
    parser.add_argument(
        "--cache-root",
        default=env.get("WHARF_MODEL_CACHE_ROOT", "/mnt/models"),
        help="the cache folder; models land in <root>/models/<name> (env WHARF_MODEL_CACHE_ROOT)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("WHARF_METRICS_PORT", "9100")),
        help="port for /metrics, /healthz and /readyz; 0 turns it off (env WHARF_METRICS_PORT)",
    )
    parser.add_argument(
        "--max-parallel-downloads",
        type=int,
        default=int(env.get("WHARF_MAX_PARALLEL_DOWNLOADS", "2")),
        help="models downloaded at once (env WHARF_MAX_PARALLEL_DOWNLOADS)",
    )
    parser.add_argument(
        "--resync-interval",
        type=float,
        default=float(env.get("WHARF_RESYNC_INTERVAL", "60")),
        help="seconds between checks of the cache folder without a spec change",
    )
    parser.add_argument(
        "--storage-limit",
        default=env.get("WHARF_STORAGE_LIMIT"),
        help="a quantity (e.g. 500Gi) that overrides the node groups' spec.storageLimit",
    )
    parser.add_argument("--kubeconfig", default=env.get("KUBECONFIG"))
    parser.add_argument("--log-level", default=env.get("WHARF_LOG_LEVEL", "INFO"))
    args = parser.parse_args(argv)
    if not args.node_name:
        parser.error("--node-name (or NODE_NAME) is required")
    if args.max_parallel_downloads < 1:
        parser.error("--max-parallel-downloads must be at least 1")
    limit = None
    if args.storage_limit:
        try:
            limit = parse_bytes(args.storage_limit)
        except ValueError as exc:
            parser.error(f"--storage-limit: {exc}")
    return AgentConfig(
        node_name=args.node_name,
        cache_root=Path(args.cache_root),
        metrics_port=args.metrics_port,
        max_parallel_downloads=args.max_parallel_downloads,
        resync_interval_s=args.resync_interval,
        storage_limit=limit,
        kubeconfig=args.kubeconfig,
        log_level=args.log_level.upper(),
    )
