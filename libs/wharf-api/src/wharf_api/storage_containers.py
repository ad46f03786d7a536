"""Pick the ClusterStorageContainer that downloads a storage URI, as KServe does.

A container is a candidate when it is not disabled and its `workloadType` is the one asked for
(`initContainer` for serving pods, `localModelDownloadJob` for the node cache; an unset type is
KServe's default, `initContainer`). It supports a URI when one of its `supportedUriFormats`
matches: `prefix` by string prefix, otherwise `regex` searched anywhere in the URI (Go's
`regexp.MatchString` is unanchored). KServe takes the first supporting container in list order,
which the API server returns sorted by name; so does this function, deterministically.

The storage initializer of a serving pod is the chosen container as written, its image and
resources else those of the config's `storageInitializer` (`storage_initializer`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from wharf_api.config import StorageInitializerConfig
from wharf_api.resources.cluster_storage_container import (
    ClusterStorageContainer,
    StorageContainerSpec,
)

INIT_CONTAINER = "initContainer"
LOCAL_MODEL_DOWNLOAD_JOB = "localModelDownloadJob"


class StorageContainerError(ValueError):
    """A ClusterStorageContainer cannot be evaluated (an invalid regex); names it."""


def supports_uri(spec: StorageContainerSpec, uri: str, *, name: str = "") -> bool:
    for fmt in spec.supported_uri_formats or []:
        if fmt.prefix:
            if uri.startswith(fmt.prefix):
                return True
        elif fmt.regex:
            try:
                if re.search(fmt.regex, uri):
                    return True
            except re.error as exc:
                raise StorageContainerError(
                    f"ClusterStorageContainer {name or '<unnamed>'}: "
                    f"spec.supportedUriFormats.regex {fmt.regex!r}: {exc}"
                ) from None
    return False


def select_storage_container(
    uri: str,
    containers: Iterable[ClusterStorageContainer],
    *,
    workload_type: str = INIT_CONTAINER,
) -> ClusterStorageContainer | None:
    """The container that downloads `uri`, or None (then the built-in default applies)."""
    for sc in sorted(containers, key=lambda c: c.name):
        if sc.disabled:
            continue
        if (sc.spec.workload_type or INIT_CONTAINER) != workload_type:
            continue
        if supports_uri(sc.spec, uri, name=sc.name):
            return sc
    return None


@dataclass(frozen=True)
class StorageInitializer:
    """The container that downloads a URI, before its downloads and credentials are added."""

    image: str
    resources: dict[str, Any]
    # the ClusterStorageContainer's container as written (camelCase), empty for the default
    base: dict[str, Any] = field(default_factory=dict)


def storage_initializer(
    uri: str,
    containers: Iterable[ClusterStorageContainer],
    config: StorageInitializerConfig,
) -> StorageInitializer:
    """The storage initializer for `uri`: the supporting ClusterStorageContainer's container,
    with the config's image and resources where it gives none."""
    chosen = select_storage_container(uri, containers)
    base: dict[str, Any] = {}
    if chosen is not None and chosen.spec.container is not None:
        base = chosen.spec.container.model_dump(by_alias=True, exclude_none=True, mode="json")
    resources = base.get("resources") or {
        "requests": {"cpu": config.cpu_request, "memory": config.memory_request},
        "limits": {"cpu": config.cpu_limit, "memory": config.memory_limit},
    }
    return StorageInitializer(
        image=base.get("image") or config.image,
        resources=resources,
        base=base,
    )
