"""Kind names as kubectl takes them: kind, plural, singular or short name, any case. Pure."""

from __future__ import annotations

from wharf_api.registry import ResourceInfo, find, iter_resources

# KServe's CRDs give these two no short names; kubectl users reach for them anyway
EXTRA_SHORT_NAMES = {"sr": "ServingRuntime", "csr": "ClusterServingRuntime"}


def resolve_kind(name: str) -> ResourceInfo | None:
    """The kind named `name` (`isvc`, `InferenceServices`, `sr`, `csr`, ...), or None."""
    wanted = name.lower()
    if wanted in {short + "s" for short in EXTRA_SHORT_NAMES}:
        wanted = wanted[:-1]
    if wanted in EXTRA_SHORT_NAMES:
        return next(i for i in iter_resources() if i.kind == EXTRA_SHORT_NAMES[wanted])
    return find(wanted)


def known_kinds() -> str:
    """The kind names, for error messages."""
    return ", ".join(sorted(i.plural for i in iter_resources()))
