"""Keep credentials out of logs and error messages."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

# Variables whose values are secrets (compared case-insensitively against these fragments).
_SECRET_NAME = re.compile(
    r"(SECRET|TOKEN|PASSWORD|ACCESS_KEY|ACCOUNT_KEY|CONNECTION_STRING|CREDENTIAL|SAS|-headers$)",
    re.IGNORECASE,
)
_URL_QUERY = re.compile(r"(https?://[^\s?#'\"]+)\?(?!<redacted>)[^\s'\"]*")
_KEYVALUE = re.compile(
    r"((?:AccountKey|SharedAccessSignature|sig|AWSAccessKeyId|Signature|X-Amz-Signature|"
    r"X-Amz-Credential|token)=)[^\s;&'\"]+",
    re.IGNORECASE,
)


def secret_values(env: Mapping[str, str]) -> list[str]:
    """Values of variables that hold secrets, longest first (so overlaps are fully hidden)."""
    values = {v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= 4}
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """`text` with URL query strings, `key=value` credentials and the given values hidden."""
    for value in secrets:
        text = text.replace(value, "<redacted>")
    text = _URL_QUERY.sub(r"\1?<redacted>", text)
    return _KEYVALUE.sub(r"\1<redacted>", text)


class RedactingFilter(logging.Filter):
    """A logging filter that scrubs every record (attach it to a handler)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__()
        self._secrets = secret_values(env)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message, self._secrets)
        if clean != message or record.exc_info:
            record.msg = clean
            record.args = None
            if record.exc_info:
                # Tracebacks can quote URLs and headers: keep the type, drop the text.
                exc = record.exc_info[1]
                record.msg = f"{clean} ({type(exc).__name__})"
                record.exc_info = None
                record.exc_text = None
        return True


class ScrubFilter(logging.Filter):
    """Hides URL query strings and `key=value` credentials in a logger's own records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


# Client libraries that log request URLs (with SAS or signed-URL queries) at INFO or DEBUG.
_URL_LOGGERS = (
    "httpx",
    "urllib3.connectionpool",
    "azure.core.pipeline.policies.http_logging_policy",
)


def guard_library_loggers() -> None:
    """Attach ScrubFilter to the client libraries' URL-logging loggers (once)."""
    for name in _URL_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ScrubFilter) for f in logger.filters):
            logger.addFilter(ScrubFilter())
