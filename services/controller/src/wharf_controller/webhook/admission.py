"""KServe's mutating and validating admission webhooks as pure functions on AdmissionReview v1.

Decisions come from wharf_api: `default` for the mutating webhook (returned as a JSONPatch of
what defaulting changed), `validate` on CREATE and `validate_update` on UPDATE (immutable fields:
the deployment mode of an InferenceService, a model cache's source URI). A denial's message is
the WharfValidationError's, which names the object and the field.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wharf_api import WharfValidationError, default, parse_object, validate, validate_update
from wharf_api import conversion as llm_conversion
from wharf_api.resources import Resource

JSON = dict[str, Any]
REVIEW_API_VERSION = "admission.k8s.io/v1"


class BadReview(ValueError):
    """The body is not an AdmissionReview v1 request; the message names the field."""


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    operation: str
    obj: Mapping[str, Any] | None
    old_obj: Mapping[str, Any] | None


def parse_review(review: Any) -> AdmissionRequest:
    if not isinstance(review, Mapping):
        raise BadReview("the body must be a JSON object")
    if review.get("apiVersion") != REVIEW_API_VERSION or review.get("kind") != "AdmissionReview":
        raise BadReview(f"apiVersion/kind: want {REVIEW_API_VERSION} AdmissionReview")
    request = review.get("request")
    if not isinstance(request, Mapping):
        raise BadReview("request: is required")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid: is required")
    obj = request.get("object")
    old = request.get("oldObject")
    return AdmissionRequest(
        uid=uid,
        operation=str(request.get("operation") or ""),
        obj=obj if isinstance(obj, Mapping) else None,
        old_obj=old if isinstance(old, Mapping) else None,
    )


def _review(response: JSON) -> JSON:
    return {"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "response": response}


def _allowed(uid: str) -> JSON:
    return _review({"uid": uid, "allowed": True})


def _denied(uid: str, message: str) -> JSON:
    # as controller-runtime's admission.Denied: 403 Forbidden with the reason as the message
    status = {"code": 403, "reason": "Forbidden", "message": message}
    return _review({"uid": uid, "allowed": False, "status": status})


def _parse(obj: Mapping[str, Any]) -> Resource:
    """The stored model of `obj`; a v1alpha1 LLMInferenceService is converted first."""
    if obj.get("kind") in llm_conversion.KINDS and obj.get("apiVersion") == llm_conversion.V1ALPHA1:
        obj = llm_conversion.convert(obj, llm_conversion.V1ALPHA2)
    return parse_object(obj)


def validate_review(review: Any) -> JSON:
    """The response of the validating webhook to one AdmissionReview."""
    request = parse_review(review)
    if request.operation not in ("CREATE", "UPDATE") or request.obj is None:
        return _allowed(request.uid)
    try:
        # checked as stored: after defaulting (the mutating webhook runs first in a cluster)
        new = default(_parse(request.obj))
        if request.operation == "UPDATE" and request.old_obj is not None:
            validate_update(default(_parse(request.old_obj)), new)
        else:
            validate(new)
    except (WharfValidationError, llm_conversion.ConversionError) as exc:
        return _denied(request.uid, str(exc))
    return _allowed(request.uid)


def mutate_review(review: Any) -> JSON:
    """The response of the mutating webhook: a JSONPatch of what defaulting changed."""
    request = parse_review(review)
    if request.operation not in ("CREATE", "UPDATE") or request.obj is None:
        return _allowed(request.uid)
    try:
        parsed = _parse(request.obj)
    except (WharfValidationError, llm_conversion.ConversionError) as exc:
        return _denied(request.uid, str(exc))
    # diff the model's view before and after defaulting, so fields the models do not know (and
    # the API server keeps) are never touched
    patch = json_patch(parsed.to_dict(), default(parsed).to_dict())
    response: JSON = {"uid": request.uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch).encode()).decode()
    return _review(response)


def _pointer(path: tuple[str, ...]) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in path)


def json_patch(before: Any, after: Any, path: tuple[str, ...] = ()) -> list[JSON]:
    """RFC 6902 operations turning `before` into `after`: objects key by key, lists whole."""
    if isinstance(before, dict) and isinstance(after, dict):
        ops: list[JSON] = []
        for key in before:
            if key not in after:
                ops.append({"op": "remove", "path": _pointer((*path, key))})
        for key, value in after.items():
            if key not in before:
                ops.append({"op": "add", "path": _pointer((*path, key)), "value": value})
            else:
                ops += json_patch(before[key], value, (*path, key))
        return ops
    if before == after and type(before) is type(after):
        return []
    return [{"op": "replace", "path": _pointer(path), "value": after}]
