"""What the controller wants to exist for a resource: pure builders, resource + config + plan ->
child objects as plain dicts (the JSON the API server stores). No I/O, no event loop."""

from wharf_controller.desired.inference_service import (
    DesiredError,
    Inputs,
    expected_children,
)

__all__ = ["DesiredError", "Inputs", "expected_children"]
