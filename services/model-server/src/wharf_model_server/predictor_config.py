"""Where a transformer or explainer sends its requests after preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PredictorProtocol(StrEnum):
    REST_V1 = "v1"
    REST_V2 = "v2"
    GRPC_V2 = "grpc-v2"


@dataclass
class PredictorConfig:
    predictor_host: str | None = None
    predictor_protocol: str = PredictorProtocol.REST_V1.value
    predictor_use_ssl: bool = False
    predictor_request_timeout_seconds: float = 600.0
    predictor_request_retries: int = 0
    predictor_health_check: bool = False

    @property
    def predictor_base_url(self) -> str:
        host = self.predictor_host or ""
        if host.startswith(("http://", "https://")):
            return host.rstrip("/")
        scheme = "https" if self.predictor_use_ssl else "http"
        return f"{scheme}://{host}"
