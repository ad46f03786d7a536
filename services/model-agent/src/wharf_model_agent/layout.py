"""Where the cache keeps what: one folder per model, completion markers beside them.

```
<root>/models/<modelName>/                the model's files (KServe's layout: models/<name>)
<root>/models/.<modelName>.wharf-partial  an unfinished download (wharf_storage's staging)
<root>/markers/<modelName>.SUCCESS.<sha>  the folder holds a complete copy of the URI whose
                                          SHA-256 is <sha>
```

Markers live outside `models/` so that a serving pod mounting `models/<name>` sees only the
model, and so that a folder renamed into place by an older agent version, or left by a crash
between rename and marker, is never taken for complete.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

MODELS = "models"
MARKERS = "markers"
PARTIAL_SUFFIX = ".wharf-partial"
_MARKER_INFIX = ".SUCCESS."
# DNS-1123 subdomain, what Kubernetes object names (and so LocalModelCache names) are.
_MODEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def uri_key(uri: str) -> str:
    """The marker key of a source URI: a hex SHA-256 (the URI itself never lands on disk)."""
    return hashlib.sha256(uri.encode()).hexdigest()


def is_valid_model_name(name: str) -> bool:
    """A name that is safe as one path segment: a DNS-1123 subdomain, not `.` or `..`."""
    return bool(_MODEL_NAME.match(name)) and ".." not in name


def owner_of(entry: str) -> str:
    """The model an entry of `models/` belongs to (its own name, or the partial's model)."""
    if entry.startswith(".") and entry.endswith(PARTIAL_SUFFIX):
        return entry[1 : -len(PARTIAL_SUFFIX)]
    return entry


def marker_name(model: str, key: str) -> str:
    return f"{model}{_MARKER_INFIX}{key}"


def parse_marker(name: str) -> tuple[str, str] | None:
    """(model, key) of a marker file name, None for anything else."""
    model, sep, key = name.rpartition(_MARKER_INFIX)
    if not sep or not model or not key:
        return None
    return model, key


@dataclass(frozen=True)
class CacheLayout:
    root: Path

    @property
    def models_dir(self) -> Path:
        return self.root / MODELS

    @property
    def markers_dir(self) -> Path:
        return self.root / MARKERS

    def model_dir(self, model: str) -> Path:
        return self.models_dir / model

    def entry(self, name: str) -> Path:
        return self.models_dir / name

    def marker(self, model: str, key: str) -> Path:
        return self.markers_dir / marker_name(model, key)

    def marker_file(self, name: str) -> Path:
        return self.markers_dir / name
