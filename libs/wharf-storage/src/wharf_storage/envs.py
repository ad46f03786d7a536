"""Reading settings from the environment mapping a download was given (pure helpers)."""

from __future__ import annotations

from collections.abc import Mapping

_FALSE = {"0", "false", "no", "off"}
_TRUE = {"1", "true", "yes", "on"}


def env_flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name)
    if value is None or not value.strip():
        return default
    value = value.strip().lower()
    if value in _FALSE:
        return False
    if value in _TRUE:
        return True
    return default


def env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    try:
        return int(value) if value else default
    except ValueError:
        return default


def s3_endpoint(env: Mapping[str, str]) -> str | None:
    """`AWS_ENDPOINT_URL`, else KServe's legacy `S3_ENDPOINT` + `S3_USE_HTTPS` pair."""
    url = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if url:
        return url
    endpoint = env.get("S3_ENDPOINT")
    if not endpoint:
        return None
    if "://" in endpoint:
        return endpoint
    scheme = "https" if env_flag(env, "S3_USE_HTTPS", True) else "http"
    return f"{scheme}://{endpoint}"
