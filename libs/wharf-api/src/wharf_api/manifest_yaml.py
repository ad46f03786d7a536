"""YAML read as kubectl reads it.

kubectl's YAML (YAML 1.2's core schema) takes `1e9` and `1E-3` for numbers; PyYAML (YAML 1.1)
takes them for strings and needs a dot and a signed exponent (`1.0e+9`). The difference matters
for quantities: `memory: 1e9` reaches the API server as the number 1000000000, which it prints
as `1G`, while the string "1e9" prints as `1e9`. Everything else is PyYAML's safe loader.
"""

from __future__ import annotations

import re

import yaml

_YAML12_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$")


class KubeYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2's exponent floats."""


KubeYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _YAML12_EXPONENT_FLOAT, list("-+0123456789.")
)
