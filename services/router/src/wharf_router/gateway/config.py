"""The gateway's settings: defaults, a config file (YAML/JSON), then flags over both."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_args

import yaml

from wharf_router.gateway.pd_warmup import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT_S
from wharf_router.gateway.pool import Probing
from wharf_router.gateway.prefix import (
    DEFAULT_BLOCK_TOKENS,
    DEFAULT_BYTES_PER_TOKEN,
    DEFAULT_MAX_BLOCKS,
    DEFAULT_POD_CAPACITY_BLOCKS,
)
from wharf_router.gateway.scheduling import POLICIES, Policy, Tuning, Weights

MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    policy: Policy = "default"
    weights: Weights = field(default_factory=Weights)
    tuning: Tuning = field(default_factory=Tuning)
    probing: Probing = field(default_factory=Probing)
    session_header: bytes = b"x-session-id"
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    bytes_per_token: int = DEFAULT_BYTES_PER_TOKEN
    max_blocks: int = DEFAULT_MAX_BLOCKS
    prefix_default_capacity: int = DEFAULT_POD_CAPACITY_BLOCKS
    max_sessions: int = 100_000
    request_timeout: float = 600.0
    prefill_timeout: float = 60.0
    max_attempts: int = 3
    max_body_bytes: int = 16 * 1024 * 1024
    # one background hand-off per (prefill, decode) pair before requests use it (pd_warmup.py)
    pd_warmup: bool = True
    pd_warmup_timeout: float = DEFAULT_TIMEOUT_S
    pd_warmup_concurrency: int = DEFAULT_CONCURRENCY


# (section, field) -> bounds; every number a user can set is checked against these
_BOUNDS: dict[str, tuple[float, float]] = {
    "block_tokens": (1, 65536),
    "bytes_per_token": (1, 64),
    "max_blocks": (1, 65536),
    "prefix_default_capacity": (1, 262144),
    "max_sessions": (0, 10_000_000),
    "request_timeout": (0.001, 86400),
    "prefill_timeout": (0.001, 86400),
    "max_attempts": (1, 16),
    "max_body_bytes": (1024, 1024**3),
    "pd_warmup_timeout": (0.001, 86400),
    "pd_warmup_concurrency": (1, 64),
    "scrape_interval": (0.01, 3600),
    "lone_scrape_interval": (0.01, 3600),
    "probe_interval": (0.01, 3600),
    "models_interval": (0.1, 86400),
    "timeout": (0.01, 600),
    "eject_after": (1, 100),
    "silent_eject_after": (0, 86400),
    "load_slack": (0, 1e6),
    "skew_abs": (0, 1e6),
    "skew_rel": (1, 1e6),
}


def _number(where: str, name: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: {name} must be a number")
    if kind is int and value != int(value):
        raise ConfigError(f"{where}: {name} must be a whole number")
    low, high = _BOUNDS.get(name, (0, 1000))
    if not low <= value <= high:
        raise ConfigError(f"{where}: {name} must be between {low:g} and {high:g}")
    return kind(value)


def _section(obj: Any, doc: Any, where: str) -> Any:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping")
    known = {f.name: f for f in fields(obj)}
    changes: dict[str, Any] = {}
    for raw_key, value in doc.items():
        name = str(raw_key).replace("-", "_")
        if name not in known:
            raise ConfigError(f"{where}: unknown setting {raw_key!r} (known: {', '.join(known)})")
        kind = type(getattr(obj, name))
        changes[name] = _number(where, name, value, kind)
    return replace(obj, **changes)


def apply_settings(config: GatewayConfig, doc: dict[str, Any], where: str) -> GatewayConfig:
    """The settings of a config file (or of flags, as a mapping) over `config`."""
    changes: dict[str, Any] = {}
    for raw_key, value in doc.items():
        name = str(raw_key).replace("-", "_")
        at = f"{where}: {raw_key}"
        if name == "policy":
            if value not in get_args(Policy):
                raise ConfigError(f"{at} must be one of {', '.join(POLICIES)}")
            changes[name] = value
        elif name == "weights":
            changes[name] = _section(config.weights, value, at)
        elif name == "tuning":
            changes[name] = _section(config.tuning, value, at)
        elif name == "probing":
            changes[name] = _section(config.probing, value, at)
        elif name == "session_header":
            if not isinstance(value, str) or not value or len(value) > 128 or not value.isascii():
                raise ConfigError(f"{at} must be a header name")
            changes[name] = value.lower().encode()
        elif name == "pd_warmup":
            if not isinstance(value, bool):
                raise ConfigError(f"{at} must be true or false")
            changes[name] = value
        elif name in {f.name for f in fields(GatewayConfig)}:
            changes[name] = _number(where, name, value, type(getattr(config, name)))
        else:
            raise ConfigError(f"{where}: unknown setting {raw_key!r}")
    return replace(config, **changes)


def load_config_file(path: Path) -> dict[str, Any]:
    """The file's mapping (gateway settings plus `endpoints`, `kube`, `api_keys_file`)."""
    where = f"--config {path}"
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{where}: larger than {MAX_CONFIG_BYTES} bytes")
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror}") from exc
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: not valid YAML/JSON: {exc}") from exc
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping of settings")
    return doc
