"""The error body of the OpenAI API, as OpenAI and vLLM return it.

OpenAI and current vLLM: `{"error": {"message", "type", "param", "code"}}`. vLLM before the
nested form (and some engines still): the same fields at the top level with
`"object": "error"`. `parse_error` reads both; `error_body` writes the nested form.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from wharf_protocol.openai._base import OpenAIModel

# vLLM names the error type after the status (`BadRequestError`, `NotFoundError`, ...).
_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    408: "TimeoutError",
    413: "RequestEntityTooLarge",
    429: "RateLimitError",
    500: "InternalServerError",
    501: "NotImplementedError",
    503: "ServiceUnavailableError",
}


class ErrorInfo(OpenAIModel):
    message: str
    type: str | None = None
    param: str | None = None
    code: int | str | None = None


class ErrorResponse(OpenAIModel):
    error: ErrorInfo


def error_type(status: int) -> str:
    if status in _TYPES:
        return _TYPES[status]
    try:
        return HTTPStatus(status).phrase.replace(" ", "") + "Error"
    except ValueError:
        return "Error"


def error_body(message: str, status: int = 400, param: str | None = None) -> dict[str, Any]:
    """The JSON body of an error response with HTTP `status`, as vLLM writes it."""
    info = ErrorInfo(message=message, type=error_type(status), param=param, code=status)
    return {"error": info.model_dump(mode="json")}


def parse_error(body: Any) -> ErrorInfo | None:
    """The error in a response body (nested or flat form), or None when it holds none."""
    if not isinstance(body, dict):
        return None
    nested = body.get("error")
    if isinstance(nested, dict) and isinstance(nested.get("message"), str):
        return ErrorInfo.model_validate(nested)
    if isinstance(nested, str):  # Wharf's and KServe's own `{"error": msg}`
        return ErrorInfo(message=nested)
    if body.get("object") == "error" and isinstance(body.get("message"), str):
        flat = {k: v for k, v in body.items() if k != "object"}
        return ErrorInfo.model_validate(flat)
    return None
