"""The local runtime's settings, from the environment (the daemon reads them when it starts)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from wharf_api.config import InferenceServiceConfig, from_file
from wharf_api.names import DEFAULT_DOMAIN


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080
    ingress_grpc_port: int = 8081
    domain: str = DEFAULT_DOMAIN
    # Knative's stable window is 60 s and its scale-to-zero grace 30 s; a laptop wants less
    autoscale_window_s: float = 10.0
    scale_to_zero_after_s: float = 60.0
    activation_timeout_s: float = 120.0
    # KServe's inferenceservice-config, from $WHARF_CONFIG (the ConfigMap manifest or a
    # mapping of its keys); its ingress domain and template name the hosts unless
    # $WHARF_DOMAIN is set
    config: InferenceServiceConfig = field(default_factory=InferenceServiceConfig)
    config_file: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        """The settings in the environment; raises `wharf_api.config.ConfigError` naming the
        file when $WHARF_CONFIG cannot be read."""
        config_file = os.environ.get("WHARF_CONFIG") or None
        config = from_file(Path(config_file)) if config_file else InferenceServiceConfig()
        return cls(
            config=config,
            config_file=config_file,
            ingress_host=os.environ.get("WHARF_INGRESS_HOST", cls.ingress_host),
            ingress_port=_int("WHARF_INGRESS_PORT", cls.ingress_port),
            ingress_grpc_port=_int("WHARF_INGRESS_GRPC_PORT", cls.ingress_grpc_port),
            domain=os.environ.get("WHARF_DOMAIN") or config.ingress.ingress_domain,
            autoscale_window_s=_float("WHARF_AUTOSCALE_WINDOW", cls.autoscale_window_s),
            scale_to_zero_after_s=_float("WHARF_SCALE_TO_ZERO_AFTER", cls.scale_to_zero_after_s),
            activation_timeout_s=_float("WHARF_ACTIVATION_TIMEOUT", cls.activation_timeout_s),
        )

    def as_env(self) -> dict[str, str]:
        return {
            "WHARF_INGRESS_HOST": self.ingress_host,
            "WHARF_INGRESS_PORT": str(self.ingress_port),
            "WHARF_INGRESS_GRPC_PORT": str(self.ingress_grpc_port),
            "WHARF_DOMAIN": self.domain,
            **({"WHARF_CONFIG": self.config_file} if self.config_file else {}),
        }
