"""The LocalModelNode status the agent reports, in KServe's shape.

`status.modelStatus[<modelName>]` holds one of KServe's values. Wharf adds
`status.modelErrors[<modelName>]`: the one-line reason of a `ModelDownloadError` (KServe keeps
the reason only in its download Job's logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

PENDING: Final = "ModelDownloadPending"
DOWNLOADING: Final = "ModelDownloading"
DOWNLOADED: Final = "ModelDownloaded"
ERROR: Final = "ModelDownloadError"


def status_patch(
    current: Mapping[str, Any] | None,
    model_status: Mapping[str, str],
    model_errors: Mapping[str, str],
) -> dict[str, Any] | None:
    """The JSON merge patch that turns `current` status into the wanted one; None if equal.

    Entries of models no longer listed are removed (a `null` in a merge patch).
    """
    current = current or {}
    patch: dict[str, Any] = {}
    for field, wanted in (("modelStatus", model_status), ("modelErrors", model_errors)):
        have: Mapping[str, Any] = current.get(field) or {}
        if dict(have) == dict(wanted):
            continue
        change: dict[str, str | None] = {k: v for k, v in wanted.items() if have.get(k) != v}
        change.update({k: None for k in have if k not in wanted})
        patch[field] = change
    return {"status": patch} if patch else None
