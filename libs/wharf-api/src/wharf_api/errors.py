"""The error every Wharf API check raises: it names the object and the field."""

from __future__ import annotations


class WharfValidationError(ValueError):
    """A manifest is not accepted. `field_path` is like `spec.predictor.minReplicas`."""

    def __init__(self, kind: str, name: str, field_path: str, message: str) -> None:
        self.kind = kind
        self.name = name
        self.field_path = field_path
        self.message = message
        super().__init__(f"{kind} {name or '<unnamed>'}: {field_path}: {message}")


class NoSupportingRuntimeError(LookupError):
    """No ServingRuntime or ClusterServingRuntime fits; `reasons` says why, runtime by runtime."""

    def __init__(self, message: str, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        detail = "; ".join(f"{name}: {why}" for name, why in sorted(reasons.items()))
        super().__init__(f"{message}" + (f" ({detail})" if detail else ""))
