"""The error an LLM plan raises: it names the object (service or config) and the field."""

from __future__ import annotations

from wharf_api.plan import PlanError


class LLMPlanError(PlanError):
    """An LLMInferenceService cannot be planned. `where` names the object whose field is at
    fault (`LLMInferenceService ns/name` or `LLMInferenceServiceConfig name`), `field_path` the
    field (`spec.baseRefs[0].name`)."""

    def __init__(self, where: str, field_path: str, message: str) -> None:
        self.where = where
        self.field_path = field_path
        self.message = message
        super().__init__(f"{where}: {field_path}: {message}")
