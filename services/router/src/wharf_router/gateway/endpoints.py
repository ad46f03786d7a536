"""The engines the gateway routes to, and where their list comes from.

An `Endpoint` is one engine's OpenAI server: its base URL, its role (`prefill`, `decode` or
`both`) and a name (the pod's, or the URL's host:port). Two sources produce the list, behind
one interface (`EndpointSource`): a static list (flags or a file, here) and Kubernetes pods
selected by label (`kube_endpoints`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import yaml

Role = Literal["prefill", "decode", "both"]
ROLES: tuple[Role, ...] = ("prefill", "decode", "both")
# llm-d labels a pod that does both `prefill-decode`; accept it as an alias
_ROLE_ALIASES: dict[str, Role] = {"prefill-decode": "both", "": "both"}
MAX_ENDPOINTS = 4096
MAX_FILE_BYTES = 1024 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,252}$")


class EndpointError(ValueError):
    """An endpoint that cannot be used; the message names the flag, file or field."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str
    url: str  # http://host:port[/path], no trailing slash
    role: Role = "both"
    # parsed once from `url`: every request reads them
    address: tuple[str, int] = field(init=False, compare=False, repr=False)
    base_path: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.hostname is None or parts.port is None:
            raise EndpointError(f"{self.name}: {self.url!r} needs a host and a port")
        object.__setattr__(self, "address", (parts.hostname, parts.port))
        object.__setattr__(self, "base_path", parts.path.rstrip("/"))


def parse_role(value: str, where: str) -> Role:
    role = value.strip().lower()
    for known in ROLES:
        if role == known:
            return known
    if role in _ROLE_ALIASES:
        return _ROLE_ALIASES[role]
    raise EndpointError(f"{where}: role {value!r} is not one of prefill, decode, both")


def normalize_url(value: str, where: str) -> str:
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise EndpointError(f"{where}: {value!r} must be an http:// URL (TLS is not supported)")
    if not parts.hostname:
        raise EndpointError(f"{where}: {value!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise EndpointError(f"{where}: {value!r} has a malformed port") from exc
    if parts.query or parts.fragment or parts.username:
        raise EndpointError(f"{where}: {value!r} must not carry a query, fragment or user")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"http://{host}:{port or 80}{parts.path.rstrip('/')}"


def make_endpoint(
    url: str, role: str = "both", name: str | None = None, where: str = ""
) -> Endpoint:
    norm = normalize_url(url, where)
    parsed = parse_role(role, where)
    label = name if name is not None else norm.removeprefix("http://")
    if not _NAME.match(label):
        raise EndpointError(f"{where}: name {label!r} is not a valid endpoint name")
    return Endpoint(name=label, url=norm, role=parsed)


def parse_endpoint_flag(value: str) -> Endpoint:
    """`--endpoint URL[=ROLE]`, e.g. `http://10.0.0.5:8000=prefill`."""
    url, sep, role = value.rpartition("=")
    if not sep:
        url, role = value, "both"
    return make_endpoint(url, role, where=f"--endpoint {value}")


def parse_endpoints_document(doc: Any, where: str) -> list[Endpoint]:
    """A list of `{url, role?, name?}` (or `{endpoints: [...]}`), from YAML or JSON."""
    items = doc.get("endpoints") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise EndpointError(f"{where}: expected a list of endpoints (or an `endpoints:` list)")
    if len(items) > MAX_ENDPOINTS:
        raise EndpointError(f"{where}: more than {MAX_ENDPOINTS} endpoints")
    out: list[Endpoint] = []
    for i, item in enumerate(items):
        at = f"{where}: endpoints[{i}]"
        if isinstance(item, str):
            item = {"url": item}
        if not isinstance(item, dict) or not isinstance(item.get("url"), str):
            raise EndpointError(f"{at}.url is required (a string)")
        unknown = set(item) - {"url", "role", "name"}
        if unknown:
            raise EndpointError(f"{at}: unknown field(s) {', '.join(sorted(unknown))}")
        role = item.get("role", "both")
        name = item.get("name")
        if not isinstance(role, str) or (name is not None and not isinstance(name, str)):
            raise EndpointError(f"{at}: role and name must be strings")
        out.append(make_endpoint(item["url"], role, name, where=at))
    return check_unique(out, where)


def load_endpoints_file(path: Path) -> list[Endpoint]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise EndpointError(f"--endpoints-file {path}: {exc.strerror}") from exc
    if size > MAX_FILE_BYTES:
        raise EndpointError(f"--endpoints-file {path}: larger than {MAX_FILE_BYTES} bytes")
    text = path.read_text()
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise EndpointError(f"--endpoints-file {path}: not valid YAML/JSON: {exc}") from exc
    return parse_endpoints_document(doc, f"--endpoints-file {path}")


def check_unique(endpoints: list[Endpoint], where: str) -> list[Endpoint]:
    seen: set[str] = set()
    for ep in endpoints:
        if ep.name in seen:
            raise EndpointError(f"{where}: endpoint name {ep.name!r} appears twice")
        seen.add(ep.name)
    return endpoints


OnChange = Callable[[list[Endpoint]], None]


class EndpointSource(Protocol):
    """Produces the current endpoint list, calling `on_change` with the whole list each time it
    changes (the first call before `run` first yields control, where the source can)."""

    async def run(self, on_change: OnChange) -> None: ...


class StaticEndpoints:
    def __init__(self, endpoints: list[Endpoint]) -> None:
        self.endpoints = endpoints

    async def run(self, on_change: OnChange) -> None:
        on_change(list(self.endpoints))
