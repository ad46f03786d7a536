"""The subset of Go's text/template that KServe's LLMInferenceServiceConfig presets use.

KServe renders a merged config by marshalling it to JSON and executing the whole JSON text as
one Go template (`missingkey=error`) against the LLMInferenceService plus a `GlobalConfig`, then
parsing the result back. This module renders one string value at a time and keeps the effects
of that JSON round trip, so a preset renders here as it renders in KServe:

- inside an action, `"`, `\\`, tabs and newlines are JSON escapes in KServe's text, which Go's
  template lexer rejects: they are errors here too (use backquoted strings, as the presets do);
- trim markers (`{{-`, `-}}`) remove spaces only: newlines and tabs are escapes in JSON text;
- what an action prints is decoded as JSON string content (so `\\\"` prints `\"`).

Supported: `{{ .Field.Path }}`, `{{ . }}`, literals (backquoted strings, integers, `true`,
`false`, `nil`), calls of `and`, `or`, `not`, `eq`, `ne`, `index`, `len` and the functions
the caller passes (KServe's `ChildName`, `shutdownTimeout`, `kvTransferConfig`), parenthesised
calls, `if` / `else if` / `else` / `end` and comments. Anything else raises TemplateError.
Values follow Go's rules: a nil pointer prints `<nil>` and is false; a set pointer is true
even when it points at 0; a field read through a nil pointer is an error. Pure.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["NIL", "GoMap", "GoPtr", "GoStruct", "TemplateError", "render", "truth"]

MAX_TEMPLATE_CHARS = 1_000_000
MAX_NESTING = 64


class TemplateError(ValueError):
    """A template cannot be parsed or executed; the message says where and why."""


class _Nil:
    """Go's nil (a nil pointer, interface, map or slice)."""

    _instance: _Nil | None = None

    def __new__(cls) -> _Nil:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<nil>"


NIL = _Nil()


@dataclass(frozen=True)
class GoPtr:
    """A non-nil pointer to a scalar: true even when it points at a zero value."""

    value: Any


class GoStruct:
    """A Go struct: fields looked up by their exported Go name.

    `lookup(name)` returns the field's value or raises KeyError when the type has no such field.
    """

    def __init__(self, type_name: str, lookup: Callable[[str], Any], source: Any = None) -> None:
        self.type_name = type_name
        self._lookup = lookup
        self.source = source  # the Python object viewed, for functions that need it

    def field(self, name: str) -> Any:
        return self._lookup(name)

    def __repr__(self) -> str:
        return f"<{self.type_name}>"


class GoMap(dict[str, Any]):
    """A Go map: `.key` reads an entry, and a missing entry is an error (`missingkey=error`)."""


def truth(value: Any) -> bool:
    """Go's template truth: false, 0, "", nil and empty maps and slices are false."""
    if value is NIL or value is None:
        return False
    if isinstance(value, GoPtr | GoStruct):
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | str | list | tuple | dict):
        return bool(value)
    return True


def _scalar(value: Any) -> Any:
    return value.value if isinstance(value, GoPtr) else value


def _printed(value: Any) -> str:
    value = _scalar(value)
    if value is NIL or value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise TemplateError(f"prints a {type(value).__name__}; only scalars can be printed")


# ---- lexing -------------------------------------------------------------------------------

_ACTION = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.S)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<raw>`[^`]*`)
      | (?P<num>-?\d+)
      | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<lparen>\()
      | (?P<rparen>\))
    )""",
    re.X,
)
_FORBIDDEN_IN_ACTION = {
    '"': "a double-quoted string (KServe renders the JSON text, where it is escaped; "
    "use backquotes)",
    "\\": "a backslash (an escape in KServe's JSON text)",
    "\n": "a line break (an escape in KServe's JSON text)",
    "\t": "a tab (an escape in KServe's JSON text)",
    "|": "a pipeline (`|`), which Wharf does not render",
    "$": "a variable (`$`), which Wharf does not render",
}


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokens(body: str) -> list[_Tok]:
    for char, why in _FORBIDDEN_IN_ACTION.items():
        if char in body:
            raise TemplateError(f"the action {{{{{body}}}}} contains {why}")
    out: list[_Tok] = []
    pos = 0
    body = body.rstrip(" ")
    while pos < len(body):
        match = _TOKEN.match(body, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"unexpected {body[pos:].strip()!r} in {{{{{body}}}}}")
        kind = match.lastgroup or ""
        out.append(_Tok(kind, match.group(kind)))
        pos = match.end()
    return out


# ---- parsing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Print:
    expr: Any
    source: str


@dataclass(frozen=True)
class _If:
    branches: tuple[tuple[Any, tuple[Any, ...]], ...]  # (condition, body)
    otherwise: tuple[Any, ...]


@dataclass(frozen=True)
class _Call:
    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class _Field:
    path: tuple[str, ...]


@dataclass(frozen=True)
class _Lit:
    value: Any


def _parse_expr(toks: list[_Tok], i: int, source: str) -> tuple[Any, int]:
    """A command: an operand, or a function name followed by operands."""
    if i >= len(toks):
        raise TemplateError(f"missing value in {{{{{source}}}}}")
    tok = toks[i]
    if tok.kind == "ident" and tok.text not in ("true", "false", "nil"):
        args: list[Any] = []
        j = i + 1
        while j < len(toks) and toks[j].kind != "rparen":
            arg, j = _parse_operand(toks, j, source)
            args.append(arg)
        return _Call(tok.text, tuple(args)), j
    operand, j = _parse_operand(toks, i, source)
    if j < len(toks) and toks[j].kind != "rparen":
        raise TemplateError(f"{tok.text!r} is not a function, in {{{{{source}}}}}")
    return operand, j


def _parse_operand(toks: list[_Tok], i: int, source: str) -> tuple[Any, int]:
    tok = toks[i]
    if tok.kind == "raw":
        return _Lit(tok.text[1:-1]), i + 1
    if tok.kind == "num":
        return _Lit(int(tok.text)), i + 1
    if tok.kind == "field":
        path = tuple(p for p in tok.text.split(".") if p)
        return _Field(path), i + 1
    if tok.kind == "ident":
        literals = {"true": True, "false": False, "nil": NIL}
        if tok.text in literals:
            return _Lit(literals[tok.text]), i + 1
        return _Call(tok.text, ()), i + 1
    if tok.kind == "lparen":
        expr, j = _parse_expr(toks, i + 1, source)
        if j >= len(toks) or toks[j].kind != "rparen":
            raise TemplateError(f"unclosed parenthesis in {{{{{source}}}}}")
        return expr, j + 1
    raise TemplateError(f"unexpected {tok.text!r} in {{{{{source}}}}}")


def _pipeline(body: str) -> Any:
    toks = _tokens(body)
    if not toks:
        raise TemplateError("empty action {{}}")
    expr, j = _parse_expr(toks, 0, body)
    if j != len(toks):
        raise TemplateError(f"unexpected {toks[j].text!r} in {{{{{body}}}}}")
    return expr


def _lex(template: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", body) items, with trim markers applied (spaces only)."""
    items: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(template):
        text = template[pos : match.start()]
        body = match.group(2)
        # `{{-3}}` is the number -3: a trim marker needs a space after it, as in Go
        left = match.group(1) == "-" and body[:1] in (" ", "")
        right = match.group(3) == "-" and body[-1:] in (" ", "")
        if match.group(1) == "-" and not left:
            body = "-" + body
        if match.group(3) == "-" and not right:
            body = body + "-"
        if left:
            text = text.rstrip(" ")
        items.append(("text", text))
        items.append(("action", body.strip(" ") if body.strip(" ") else body))
        pos = match.end()
        if right:
            rest = template[pos:]
            pos += len(rest) - len(rest.lstrip(" "))
    tail = template[pos:]
    if "{{" in tail:
        raise TemplateError("unclosed action: '{{' without '}}'")
    items.append(("text", tail))
    return items


def _parse(template: str) -> tuple[Any, ...]:
    items = _lex(template)
    nodes, _, closer = _parse_list(items, 0, 0)
    if closer is not None:
        raise TemplateError(f"unexpected {{{{{closer}}}}}")
    return nodes


def _parse_list(
    items: list[tuple[str, str]], i: int, depth: int
) -> tuple[tuple[Any, ...], int, str | None]:
    if depth > MAX_NESTING:
        raise TemplateError(f"more than {MAX_NESTING} nested actions")
    nodes: list[Any] = []
    while i < len(items):
        kind, body = items[i]
        i += 1
        if kind == "text":
            if body:
                nodes.append(_Text(body))
            continue
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise TemplateError(f"unclosed comment in {{{{{body}}}}}")
            continue
        word = body.split(" ", 1)[0]
        if word in ("end", "else"):
            return tuple(nodes), i, body
        if word == "if":
            node, i = _parse_if(items, i, body[2:], depth)
            nodes.append(node)
            continue
        if word in ("range", "with", "define", "template", "block", "break", "continue"):
            raise TemplateError(f"{{{{{word}}}}} is not rendered by Wharf, in {{{{{body}}}}}")
        nodes.append(_Print(_pipeline(body), body))
    return tuple(nodes), i, None


def _parse_if(items: list[tuple[str, str]], i: int, cond: str, depth: int) -> tuple[_If, int]:
    branches: list[tuple[Any, tuple[Any, ...]]] = []
    otherwise: tuple[Any, ...] = ()
    condition = _pipeline(cond)
    while True:
        body, i, closer = _parse_list(items, i, depth + 1)
        if closer is None:
            raise TemplateError("{{if}} without {{end}}")
        if condition is not None:
            branches.append((condition, body))
        else:
            otherwise = body
        if closer == "end":
            return _If(tuple(branches), otherwise), i
        rest = closer[len("else") :].strip(" ")
        if condition is None:
            raise TemplateError("{{else}} after {{else}}")
        if rest.startswith("if ") or rest == "if":
            condition = _pipeline(rest[2:])
        elif rest:
            raise TemplateError(f"unexpected {{{{{closer}}}}}")
        else:
            condition = None


# ---- execution ----------------------------------------------------------------------------

Funcs = Mapping[str, Callable[..., Any]]


def _field(value: Any, path: Sequence[str], done: Sequence[str]) -> Any:
    for name in path:
        where = "." + ".".join([*done, name]) if done else "." + name
        value = value.value if isinstance(value, GoPtr) else value
        if value is NIL or value is None:
            raise TemplateError(f"nil pointer evaluating {where}")
        if isinstance(value, GoMap):
            if name not in value:
                raise TemplateError(f"map has no entry for key {name!r} at {where}")
            value = value[name]
        elif isinstance(value, GoStruct):
            if not name[:1].isupper():
                raise TemplateError(f"{name} is an unexported field of {value.type_name}")
            try:
                value = value.field(name)
            except KeyError:
                raise TemplateError(
                    f"can't evaluate field {name} in type {value.type_name}"
                ) from None
        else:
            raise TemplateError(f"can't evaluate field {name} in a {type(value).__name__}")
        done = [*done, name]
    return value


def _and_or(name: str, args: Sequence[Callable[[], Any]]) -> Any:
    # Go evaluates `and` and `or` lazily: `and .A .A.B` never reads .A.B when .A is nil
    if not args:
        raise TemplateError(f"{name}: no arguments")
    value: Any = None
    for arg in args:
        value = arg()
        if truth(value) == (name == "or"):
            return value
    return value


def _not(values: list[Any]) -> Any:
    if len(values) != 1:
        raise TemplateError("not: wants one argument")
    return not truth(values[0])


def _eq(values: list[Any], negate: bool = False) -> Any:
    if len(values) < 2:
        raise TemplateError("eq/ne: wants at least two arguments")
    first = _scalar(values[0])
    same = any(first == _scalar(v) for v in values[1:])
    return same != negate


def _len(values: list[Any]) -> Any:
    if len(values) != 1 or not isinstance(_scalar(values[0]), str | list | tuple | dict):
        raise TemplateError("len: wants one string, slice or map")
    return len(_scalar(values[0]))


def _index(values: list[Any]) -> Any:
    if not values:
        raise TemplateError("index: no arguments")
    value = values[0]
    for key in values[1:]:
        key = _scalar(key)
        if isinstance(value, dict):
            value = value.get(key, "")  # index, unlike .key, gives the zero value
        elif isinstance(value, list | tuple) and isinstance(key, int):
            if not 0 <= key < len(value):
                raise TemplateError(f"index: {key} out of range")
            value = value[key]
        else:
            raise TemplateError("index: can only index maps and slices")
    return value


_BUILTINS: dict[str, Callable[[list[Any]], Any]] = {
    "not": _not,
    "eq": _eq,
    "ne": lambda values: _eq(values, negate=True),
    "len": _len,
    "index": _index,
}


def _builtin(name: str, args: Sequence[Callable[[], Any]]) -> Any:
    if name in ("and", "or"):
        return _and_or(name, args)
    if name in _BUILTINS:
        return _BUILTINS[name]([a() for a in args])
    raise KeyError(name)


def _eval(expr: Any, dot: Any, funcs: Funcs, depth: int = 0) -> Any:
    if depth > MAX_NESTING:
        raise TemplateError(f"more than {MAX_NESTING} nested calls")
    if isinstance(expr, _Lit):
        return expr.value
    if isinstance(expr, _Field):
        return _field(dot, expr.path, ()) if expr.path else dot
    assert isinstance(expr, _Call)
    thunks = [functools.partial(_eval, a, dot, funcs, depth + 1) for a in expr.args]
    try:
        return _builtin(expr.name, thunks)
    except KeyError:
        pass
    func = funcs.get(expr.name)
    if func is None:
        raise TemplateError(f'function "{expr.name}" not defined')
    try:
        return func(*[t() for t in thunks])
    except TemplateError:
        raise
    except (TypeError, ValueError) as exc:
        raise TemplateError(f"{expr.name}: {exc}") from None


def _run(nodes: Sequence[Any], dot: Any, funcs: Funcs, out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Print):
            printed = _printed(_eval(node.expr, dot, funcs))
            out.append(_json_decoded(printed, node.source))
        else:
            assert isinstance(node, _If)
            for condition, body in node.branches:
                if truth(_eval(condition, dot, funcs)):
                    _run(body, dot, funcs, out)
                    break
            else:
                _run(node.otherwise, dot, funcs, out)


def _json_decoded(printed: str, source: str) -> str:
    # KServe splices the printed text into JSON and parses it back
    try:
        decoded = json.loads(f'"{printed}"')
    except json.JSONDecodeError:
        raise TemplateError(
            f"{{{{{source}}}}} prints {printed!r}, which breaks the JSON that KServe renders "
            "(a double quote, backslash or control character)"
        ) from None
    assert isinstance(decoded, str)
    return decoded


def render(template: str, data: Any, funcs: Funcs | None = None) -> str:
    """`template` executed against `data` (a GoStruct); TemplateError on anything unsupported."""
    if "{{" not in template:
        return template
    if len(template) > MAX_TEMPLATE_CHARS:
        raise TemplateError(f"template longer than {MAX_TEMPLATE_CHARS} characters")
    nodes = _parse(template)
    out: list[str] = []
    _run(nodes, data, funcs or {}, out)
    return "".join(out)
