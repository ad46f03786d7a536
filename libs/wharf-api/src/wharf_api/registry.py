"""Which model class serves each (apiVersion, kind), with the names and scope of each kind."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic

from wharf_api import conversion
from wharf_api.errors import WharfValidationError
from wharf_api.resources import ALL_RESOURCES, Resource


@dataclass(frozen=True)
class ResourceInfo:
    """Everything CRD generation and the CLI need to know about one kind."""

    model: type[Resource]
    group: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    scope: str
    served_versions: tuple[str, ...]
    storage_version: str

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" for v in self.served_versions)


def _info(model: type[Resource]) -> ResourceInfo:
    kind = model.model_fields["kind"].default
    assert isinstance(kind, str)
    return ResourceInfo(
        model=model,
        group=model.group,
        kind=kind,
        plural=model.plural,
        singular=model.singular,
        short_names=model.short_names,
        scope=model.scope,
        served_versions=model.served_versions,
        storage_version=model.storage_version,
    )


RESOURCES: tuple[ResourceInfo, ...] = tuple(_info(m) for m in ALL_RESOURCES)
_BY_API_KIND: dict[tuple[str, str], ResourceInfo] = {
    (api_version, info.kind): info for info in RESOURCES for api_version in info.api_versions
}


def iter_resources() -> Iterator[ResourceInfo]:
    """Every resource kind, in a stable order."""
    return iter(RESOURCES)


def lookup(api_version: str, kind: str) -> ResourceInfo | None:
    return _BY_API_KIND.get((api_version, kind))


def find(name: str) -> ResourceInfo | None:
    """A kind by its kind, plural, singular or short name (case-insensitive): `isvc`, ..."""
    wanted = name.lower()
    for info in RESOURCES:
        names = {info.kind.lower(), info.plural, info.singular, *info.short_names}
        if wanted in names:
            return info
    return None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def parse_object(obj: Mapping[str, Any]) -> Resource:
    """Parse one manifest into its model; raise WharfValidationError naming the field."""
    if not isinstance(obj, Mapping):
        raise WharfValidationError("", "", "", "a manifest must be a mapping")
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    metadata = obj.get("metadata")
    name = str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
    if not isinstance(api_version, str):
        raise WharfValidationError(str(kind or ""), name, "apiVersion", "is required")
    if not isinstance(kind, str):
        raise WharfValidationError("", name, "kind", "is required")
    info = lookup(api_version, kind)
    if info is None:
        raise WharfValidationError(kind, name, "apiVersion", f"unknown kind {api_version} {kind}")
    if kind in conversion.KINDS and api_version != conversion.V1ALPHA2:
        # the models are the stored version's: read a v1alpha1 object as the API server stores
        # it (criticality into KServe's annotations, the pool spec in GIE's v1 shape)
        try:
            obj = conversion.convert(obj, conversion.V1ALPHA2)
        except conversion.ConversionError as exc:
            field, _, message = str(exc).partition(": ")
            raise WharfValidationError(kind, name, field, message or str(exc)) from exc
    try:
        return info.model.model_validate(dict(obj))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        raise WharfValidationError(kind, name, _path(first["loc"]), first["msg"]) from exc
