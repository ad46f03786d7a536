"""CRD generation: the pydantic resource models are the source of truth for `deploy/base/crds/`.

`python -m wharf_api.crdgen OUT_DIR` writes one CRD per kind; `--check` fails when the files on
disk differ from what the models produce (CI runs it).
"""

from wharf_api.crdgen.crd import CrdSource, CrdVersion, PrinterColumn, build_crd
from wharf_api.crdgen.k8s_schemas import KUBERNETES_MINOR, load_k8s_definitions
from wharf_api.crdgen.structural import structural_schema

__all__ = [
    "KUBERNETES_MINOR",
    "CrdSource",
    "CrdVersion",
    "PrinterColumn",
    "build_crd",
    "load_k8s_definitions",
    "structural_schema",
]
