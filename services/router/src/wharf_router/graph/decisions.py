"""The router's rules, pure: which Splitter step, which Switch step, whether a condition holds,
what a step is sent, and how an Ensemble's answers merge. Behaviour follows KServe's router.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import gjson
import orjson

from wharf_api.resources.inference_graph import InferenceStep

NOT_PARSED = object()


def parse_json(body: bytes) -> Any:
    """The body as JSON, or NOT_PARSED when it is not valid JSON (gjson's `Valid`)."""
    if not body:
        return NOT_PARSED
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return NOT_PARSED


def condition_holds(document: Any, condition: str) -> bool:
    """GJSON `Exists()`: the path (with its queries and comparisons) selects a value.

    An empty condition or a path that selects nothing is false; so is a path gjson-py cannot
    parse, as Go's gjson finds nothing for a path it does not understand.
    """
    if not condition or document is NOT_PARSED:
        return False
    try:
        gjson.get(document, condition)
    except (gjson.GJSONError, ValueError, TypeError, KeyError, IndexError):
        return False
    return True


def pick_split(steps: Sequence[InferenceStep], point: int) -> InferenceStep | None:
    """KServe's Splitter: a point in [0, 100) falls in one step's cumulative weight band;
    None when the weights stop short of it."""
    end = 0
    for step in steps:
        end += step.weight or 0
        if point < end:
            return step
    return None


def pick_switch(document: Any, steps: Sequence[InferenceStep]) -> InferenceStep | None:
    """KServe's Switch: the first step whose condition holds on the request; None when the
    request is not JSON or no condition holds."""
    if document is NOT_PARSED:
        return None
    return next((s for s in steps if condition_holds(document, s.condition or "")), None)


def step_input(step: InferenceStep, index: int, request: bytes, previous: bytes | None) -> bytes:
    """What a Sequence step is sent: the graph's request, or with `data: $response` (from the
    second step on) the previous step's answer; `mapPredictionsToInstances` then renames a
    non-empty `predictions` list to `instances`, as KServe does."""
    body = previous if step.data == "$response" and index > 0 and previous is not None else request
    if step.map_predictions_to_instances:
        body = predictions_to_instances(body)
    return body


def predictions_to_instances(body: bytes) -> bytes:
    """`{"predictions": [...], ...}` -> `{"instances": [...]}`; anything else unchanged.

    KServe decodes the body into a struct of only those two fields, so other fields are
    dropped on the way; an empty or missing `predictions` leaves the body as it was.
    """
    document = parse_json(body)
    if not isinstance(document, dict):
        return body
    predictions = document.get("predictions")
    if not isinstance(predictions, list) or not predictions:
        return body
    return orjson.dumps({"instances": predictions})


def successful(status: int) -> bool:
    return 200 <= status <= 299


def ensemble_key(step: InferenceStep, index: int) -> str:
    """An Ensemble answer's key: the step's name, or its index when it has none."""
    return step.name or str(index)


def merge_ensemble(parts: Iterable[tuple[str, Any]]) -> bytes:
    """One JSON object keyed by step name (or index) holding each step's answer."""
    return orjson.dumps(dict(parts))


def canonical_header(name: str) -> str:
    """Go's CanonicalMIMEHeaderKey (`x-request-id` -> `X-Request-Id`): KServe's header patterns
    are matched against names in this form."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def compile_patterns(value: str) -> list[re.Pattern[str]]:
    """`PROPAGATE_HEADERS`: comma-separated regular expressions; a bad one is an error naming it."""
    patterns = []
    for raw in value.split(","):
        try:
            patterns.append(re.compile(raw))
        except re.error as exc:
            raise ValueError(f"PROPAGATE_HEADERS: pattern {raw!r}: {exc}") from None
    return patterns


def headers_to_forward(
    headers: Iterable[tuple[str, str]], patterns: Sequence[re.Pattern[str]]
) -> list[tuple[str, str]]:
    """The request headers a step gets: those whose canonical name matches a pattern (search,
    as Go's MatchString), each once, plus `Content-Type: application/json` when none came."""
    forwarded = [
        (canonical_header(k), v)
        for k, v in headers
        if any(p.search(canonical_header(k)) for p in patterns)
    ]
    if not any(k == "Content-Type" for k, _ in forwarded):
        forwarded.append(("Content-Type", "application/json"))
    return forwarded


def error_body(cause: str, message: str = "Failed to process request") -> bytes:
    """KServe's InferenceGraphRoutingError."""
    return orjson.dumps({"error": message, "cause": cause})


def response_content_type(body: bytes) -> str | None:
    """`application/json` for a JSON body, as KServe's router sets it; else None (sniffed)."""
    return "application/json" if parse_json(body) is not NOT_PARSED else None
