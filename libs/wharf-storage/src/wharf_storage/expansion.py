"""How far unpacking (archives, OCI layers) may expand a download on the local disk.

A small compressed archive can declare far more than it weighs (a gzip of zeros shrinks about
1000 times), so every tar/zip member's declared size is added up before anything of that
archive or layer is written, and unpacking is refused when it would

- write more file content, over the whole download, than `WHARF_STORAGE_MAX_EXPANDED`
  (unset by default: only the disk bounds a model), or
- leave less than `WHARF_STORAGE_MIN_FREE` (default 128Mi) free on the destination's
  filesystem.

Declared sizes are exact: tarfile writes exactly a member's size, zipfile cuts a member at its
declared size (and then fails its CRC), so what is written never exceeds what was checked.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wharf_storage.errors import StorageError, TransferFailed

MAX_EXPANDED = "WHARF_STORAGE_MAX_EXPANDED"
MIN_FREE = "WHARF_STORAGE_MIN_FREE"
DEFAULT_MIN_FREE = 128 * 1024 * 1024
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGTP]i?)?\s*$")
_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_UNITS.update({f"{u}i": 1024 ** (i + 1) for i, u in enumerate("KMGTP")})


def parse_size(name: str, value: str) -> int:
    """`1073741824`, `500Mi`, `2Ti`, `10G` (Kubernetes quantity suffixes) -> bytes."""
    match = _SIZE.match(value)
    if match is None:
        raise StorageError(
            f"{name}={value[:40]!r} is not a size (bytes, or a number with Ki, Mi, Gi, Ti, "
            "K, M, G or T)"
        )
    return int(match.group(1)) * _UNITS[match.group(2) or ""]


@dataclass(frozen=True)
class ExpansionLimits:
    max_expanded: int | None = None  # file content bytes one download may unpack; None: no cap
    min_free: int = DEFAULT_MIN_FREE  # bytes that must stay free on the destination's filesystem

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ExpansionLimits:
        raw_max = env.get(MAX_EXPANDED, "").strip()
        raw_free = env.get(MIN_FREE, "").strip()
        return cls(
            max_expanded=parse_size(MAX_EXPANDED, raw_max) if raw_max else None,
            min_free=parse_size(MIN_FREE, raw_free) if raw_free else DEFAULT_MIN_FREE,
        )


@dataclass(frozen=True)
class Planned:
    """What one archive or layer would write: file content bytes, and disk bytes (every file
    rounded up to whole blocks, one block for each folder or link)."""

    content: int = 0
    disk: int = 0

    def plus(self, size: int | None, block: int) -> Planned:
        """Add a member: a file of `size` bytes, or a folder or link (`size` None)."""
        if size is None:
            return Planned(self.content, self.disk + block)
        blocks = -(-size // block)
        return Planned(self.content + size, self.disk + blocks * block)


def refusal(
    limits: ExpansionLimits,
    *,
    unpacked_before: int,
    planned: Planned,
    free: int,
    name: str,
    where: Path,
) -> str | None:
    """Why unpacking `planned` must not go ahead, or None (pure).

    `unpacked_before`: content bytes this download has already unpacked; `free`: bytes free
    now on the filesystem of `where`.
    """
    total = unpacked_before + planned.content
    if limits.max_expanded is not None and total > limits.max_expanded:
        return (
            f"{name}: unpacking would write {total} bytes of files, more than "
            f"{MAX_EXPANDED} ({limits.max_expanded} bytes)"
        )
    if free - planned.disk < limits.min_free:
        return (
            f"{name}: unpacking needs {planned.disk} bytes on the filesystem of {where}, "
            f"which has {free} free; {MIN_FREE} keeps {limits.min_free} bytes free"
        )
    return None


class ExpansionBudget:
    """The limits and what one download has unpacked so far (one per download)."""

    def __init__(self, limits: ExpansionLimits) -> None:
        self.limits = limits
        self.unpacked = 0  # file content bytes
        self.unpacked_disk = 0  # their disk bytes

    @staticmethod
    def block_size(where: Path) -> int:
        return max(512, os.statvfs(where).f_frsize)

    def room(self, where: Path) -> int:
        """Free bytes now plus what this download unpacked before (an OCI layer's whiteouts may
        delete that): the most an archive scanned from now on can find free."""
        return free_bytes(where) + self.unpacked_disk

    def check(self, planned: Planned, *, name: str, where: Path, free: int | None = None) -> None:
        """TransferFailed (the local-disk failure class) when `planned` must not be written."""
        if free is None:
            free = free_bytes(where)
        reason = refusal(
            self.limits,
            unpacked_before=self.unpacked,
            planned=planned,
            free=free,
            name=name,
            where=where,
        )
        if reason is not None:
            raise TransferFailed(reason)

    def early_check(self, planned: Planned, *, name: str, where: Path, room: int) -> None:
        """Stop scanning an archive as soon as it is sure to be refused, before reading the rest
        (a member of a gzip bomb is refused at its header, not after inflating it).

        `room`: from `room()` when the scan started; so this is never stricter than `check`.
        """
        self.check(planned, name=name, where=where, free=room)

    def commit(self, planned: Planned) -> None:
        self.unpacked += planned.content
        self.unpacked_disk += planned.disk


def free_bytes(where: Path) -> int:
    # f_bavail: what an unprivileged writer may still use (root's reserved blocks excluded).
    st = os.statvfs(where)
    return st.f_bavail * st.f_frsize
