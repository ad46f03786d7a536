"""The CRD conversion webhook as a pure function on ConversionReview v1 (wharf_api.conversion)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wharf_api.conversion import ConversionError, convert

JSON = dict[str, Any]
REVIEW_API_VERSION = "apiextensions.k8s.io/v1"
# The API server sends at most one list's worth; bound what one review may ask for.
MAX_OBJECTS = 10_000


class BadConversionReview(ValueError):
    """The body is not a ConversionReview v1 request; the message names the field."""


def convert_review(review: Any) -> JSON:
    """Convert every object of the review to `desiredAPIVersion`; one failure fails the review."""
    if not isinstance(review, Mapping):
        raise BadConversionReview("the body must be a JSON object")
    if review.get("apiVersion") != REVIEW_API_VERSION or review.get("kind") != "ConversionReview":
        raise BadConversionReview(f"apiVersion/kind: want {REVIEW_API_VERSION} ConversionReview")
    request = review.get("request")
    if not isinstance(request, Mapping):
        raise BadConversionReview("request: is required")
    uid = request.get("uid")
    desired = request.get("desiredAPIVersion")
    objects = request.get("objects")
    if not isinstance(uid, str) or not uid:
        raise BadConversionReview("request.uid: is required")
    if not isinstance(desired, str):
        raise BadConversionReview("request.desiredAPIVersion: is required")
    if not isinstance(objects, list) or len(objects) > MAX_OBJECTS:
        raise BadConversionReview(f"request.objects: must be a list of at most {MAX_OBJECTS}")
    response: JSON = {"uid": uid}
    try:
        converted = []
        for index, obj in enumerate(objects):
            if not isinstance(obj, Mapping):
                raise ConversionError(f"request.objects[{index}]: must be an object")
            converted.append(convert(obj, desired))
    except ConversionError as exc:
        response["result"] = {"status": "Failure", "message": str(exc)}
    else:
        response["convertedObjects"] = converted
        response["result"] = {"status": "Success"}
    return {"apiVersion": REVIEW_API_VERSION, "kind": "ConversionReview", "response": response}
