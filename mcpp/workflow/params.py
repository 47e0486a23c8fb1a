"""Workflow parameters: plain defaults and typed declarations, and the values of one run.

A workflow file's ``[params]`` table maps each parameter name to either

* a plain default (``rows = 1000``): the override must have the default's type: a bool, int,
  float (an int is accepted and becomes a float), string, array or table; or
* a declaration, a table with a ``type`` key::

      [params.rows]
      type = "integer"          # string, integer, number, boolean, array or object
      default = 1000            # optional
      required = false          # default: true without a default, false with one
      description = "rows to extract"
      choices = [10, 1000]      # optional: the value must be one of these
      pattern = "[a-z]+"        # strings only: the WHOLE value must match (RE2 syntax)

  ``true`` is a boolean only: it is neither an integer nor a number. A number is stored as a
  float. A required parameter has no default and must be given; an optional one without a
  default is ``None``. A table without ``type`` whose keys are all declaration keys is an error
  (it is almost certainly a declaration that forgot its type); write an object default as
  ``type = "object"``, ``default = {...}``.

  A ``pattern`` is matched by RE2 (google-re2), in time linear in the value whatever the
  pattern, so no pattern can make a check hang (``(a+)+$`` is harmless); RE2 has no
  backreferences or lookaround, and its ``\\d``, ``\\w``, ``\\s`` are ASCII only. A pattern has
  at most :data:`~mcpp.workflow.limits.MAX_PATTERN_CHARS` characters.

Values given on a command line are :class:`ParamText`: text that the declared type, or the
type of the plain default, parses: a string keeps the text as is (``--param tag=1.10`` stays
``"1.10"``, ``--param out=2024`` stays ``"2024"``, ``true`` and ``null`` stay text); other values
are parsed as a JSON or TOML value when they are one, then checked against the type. Every
value, given or parsed, must stay within :mod:`mcpp.workflow.limits` (nesting, size, 64-bit
integers, valid Unicode). Errors are :class:`~mcpp.errors.WorkflowError` with
``field="params.NAME"`` for a typed parameter and ``field="params"`` for a plain default or an
unknown name (as before typed parameters).
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import msgspec
import msgspec.json
import msgspec.msgpack
import re2

from mcpp.errors import WorkflowError
from mcpp.workflow.bounded import check_toml_shape
from mcpp.workflow.limits import (
    MAX_DEPTH,
    MAX_PARAM_BYTES,
    MAX_PATTERN_CHARS,
    find_violation,
    format_path,
)

__all__ = [
    "PARAM_TYPES",
    "ParamSpec",
    "ParamText",
    "ParamType",
    "check_value",
    "declare_params",
    "parse_param_texts",
    "parse_value",
    "plain_type",
    "resolve_params",
]

ParamType = Literal["string", "integer", "number", "boolean", "array", "object"]
PARAM_TYPES: tuple[str, ...] = ("string", "integer", "number", "boolean", "array", "object")
_DECLARATION_KEYS = frozenset({"type", "default", "required", "description", "choices", "pattern"})
_ARTICLE = {"integer": "an integer", "array": "an array", "object": "an object"}


class ParamText(str):
    """A parameter value as typed on a command line, parsed by the parameter's declaration."""

    __slots__ = ()


class ParamSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One parameter: ``type`` is ``None`` for a plain default (``rows = 1000``).

    ``default`` is :data:`msgspec.UNSET` when there is none; ``required`` is resolved (never
    ``None`` once returned by :func:`declare_params`).
    """

    type: ParamType | None = None
    default: Any = msgspec.UNSET
    required: bool | None = None
    description: str = ""
    choices: list[Any] | None = None
    pattern: str | None = None

    @property
    def has_default(self) -> bool:
        """True if the parameter has a default (``None`` included)."""
        return self.default is not msgspec.UNSET

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (``type`` ``null`` for a plain default; no unset keys)."""
        out: dict[str, Any] = {"type": self.type, "required": bool(self.required)}
        if self.has_default:
            out["default"] = self.default
        for key in ("description", "choices", "pattern"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


def parse_value(text: str) -> Any:
    """Parse ``text`` as a JSON or TOML value when it is one (``3``, ``1.5``, ``true``,
    ``[1, 2]``, ``"x"``); otherwise return the text itself (a plain ``str``).

    Raises :class:`~mcpp.errors.WorkflowError` (no field: callers add it) for text longer than
    :data:`~mcpp.workflow.limits.MAX_PARAM_BYTES` characters or that is not valid Unicode (bytes
    that are not
    UTF-8 on a command line), and for a value beyond :mod:`mcpp.workflow.limits` (nested deeper than
    :data:`~mcpp.workflow.limits.MAX_DEPTH`, an integer outside signed 64 bits).
    """
    text = str(text)
    check_value(text)
    if len(text) > MAX_PARAM_BYTES:
        raise WorkflowError(f"value longer than the limit of {MAX_PARAM_BYTES} characters")
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError:
        document = f"value = {text}"
        try:
            check_toml_shape(document.encode())
            value = tomllib.loads(document)["value"]
        except tomllib.TOMLDecodeError:
            return text
        except WorkflowError as exc:  # from check_toml_shape
            raise WorkflowError(f"value: {exc.reason.removeprefix('invalid TOML: ')}") from None
        except ValueError:  # int() of 4300+ digits
            raise WorkflowError("integer out of range (signed 64-bit)") from None
        except RecursionError:
            raise WorkflowError(f"value nested deeper than {MAX_DEPTH} levels") from None
        if not isinstance(value, str | int | float | bool | list | dict):
            return text
    except RecursionError:
        raise WorkflowError(f"value nested deeper than {MAX_DEPTH} levels") from None
    check_value(value)
    return value


def check_value(value: Any) -> None:
    """Raise :class:`~mcpp.errors.WorkflowError` (no field) if ``value`` breaks a limit of
    :mod:`mcpp.workflow.limits`, naming where inside it."""
    problem = find_violation(value)
    if problem is not None:
        path, reason = problem
        shown = format_path(path[:8]) + ("..." if len(path) > 8 else "")
        raise WorkflowError(f"{reason} (at {shown})" if path else reason)


def parse_param_texts(items: Iterable[str]) -> dict[str, ParamText]:
    """Parse ``--param KEY=VALUE`` items into ``{KEY: ParamText(VALUE)}`` (a later KEY wins).

    Raises :class:`~mcpp.errors.WorkflowError` when an item has no ``=`` or an empty KEY.
    """
    texts: dict[str, ParamText] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise WorkflowError(f"--param {item[:80]!r}: expected KEY=VALUE", field="params")
        texts[key] = ParamText(text)
    return texts


def declare_params(raw: Mapping[str, Any]) -> dict[str, ParamSpec]:
    """Turn a file's ``[params]`` table into declarations, checking each one.

    Raises :class:`~mcpp.errors.WorkflowError` for a name that is not an identifier
    (``field="params"``), and (``field="params.NAME"``) for an unknown type or key, a
    ``pattern`` on a non-string or that does not compile, empty or mistyped ``choices``, a
    default that breaks the declaration, or ``required = true`` with a default.
    """
    declared: dict[str, ParamSpec] = {}
    for name, value in raw.items():
        if not name.isidentifier():
            raise WorkflowError(
                f"parameter name {name!r} is not an identifier (usable as ${{name}})",
                field="params",
            )
        if isinstance(value, dict) and "type" in value:
            declared[name] = _declaration(name, value)
        elif isinstance(value, dict) and value and value.keys() <= _DECLARATION_KEYS:
            raise WorkflowError(
                f"parameter {name!r} looks like a declaration but has no 'type' (one of "
                f'{", ".join(PARAM_TYPES)}); for an object default write type = "object" '
                "and default = {...}",
                field=f"params.{name}",
            )
        else:
            declared[name] = ParamSpec(default=value, required=False)
    return declared


def resolve_params(raw: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return the value of every parameter of ``raw`` (a ``[params]`` table) for one run.

    ``overrides`` (values or :class:`ParamText`) replace defaults; each must be declared and
    valid for its declaration. Raises :class:`~mcpp.errors.WorkflowError` for any invalid
    declaration (see :func:`declare_params`), an unknown or invalid override, a value that is
    not encodable, or a required parameter that is not given.
    """
    declared = declare_params(raw)
    for name in overrides:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise WorkflowError(f"unknown parameter {name!r} (declared: {known})", field="params")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in overrides:
            values[name] = _coerce(name, spec, overrides[name])
        elif spec.has_default:
            values[name] = spec.default
        elif spec.required:
            raise WorkflowError(
                f"required parameter {name!r} is not given (--param {name}=VALUE)",
                field=f"params.{name}",
            )
        else:
            values[name] = None
    return values


def _declaration(name: str, table: dict[str, Any]) -> ParamSpec:
    field = f"params.{name}"
    try:
        spec = msgspec.convert(table, ParamSpec)
    except msgspec.ValidationError as exc:
        message = str(exc)
        raise WorkflowError(
            f"invalid declaration of parameter {name!r}: {message[:1].lower()}{message[1:]}",
            field=field,
        ) from None
    if spec.pattern is not None:
        if spec.type != "string":
            raise WorkflowError(
                f"parameter {name!r}: 'pattern' applies to strings only", field=field
            )
        if len(spec.pattern) > MAX_PATTERN_CHARS:
            raise WorkflowError(
                f"parameter {name!r}: pattern longer than {MAX_PATTERN_CHARS} characters",
                field=field,
            )
        try:
            _compile(spec.pattern)
        except re2.error as exc:
            reason = exc.args[0].decode(errors="replace") if exc.args else "invalid"
            raise WorkflowError(
                f"parameter {name!r}: invalid pattern {spec.pattern!r}: {reason} (RE2 syntax: "
                "no backreferences or lookaround)",
                field=field,
            ) from None
    if spec.choices is not None:
        if not spec.choices:
            raise WorkflowError(f"parameter {name!r}: 'choices' is empty", field=field)
        typed = [_check(name, msgspec.structs.replace(spec, choices=None), c) for c in spec.choices]
        spec = msgspec.structs.replace(spec, choices=typed)
    if spec.required and spec.has_default:
        raise WorkflowError(
            f"parameter {name!r} is required, so it cannot have a default", field=field
        )
    if spec.has_default:
        try:
            spec = msgspec.structs.replace(spec, default=_check(name, spec, spec.default))
        except WorkflowError as exc:
            raise WorkflowError(f"invalid default: {exc.reason}", field=field) from None
    required = spec.required if spec.required is not None else not spec.has_default
    return msgspec.structs.replace(spec, required=required)


def _coerce(name: str, spec: ParamSpec, value: Any) -> Any:
    field = "params" if spec.type is None else f"params.{name}"
    try:
        if isinstance(value, ParamText):
            keeps_text = spec.type == "string" or (
                spec.type is None and isinstance(spec.default, str)
            )
            value = str(value) if keeps_text else parse_value(value)
        check_value(value)
    except WorkflowError as exc:
        raise WorkflowError(f"parameter {name!r}: {exc.reason}", field=field) from None
    value = _legacy(name, spec.default, value) if spec.type is None else _check(name, spec, value)
    try:
        msgspec.msgpack.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise WorkflowError(
            f"parameter {name!r}: value is not encodable: {exc}", field=field
        ) from None
    return value


def _short(value: Any) -> str:
    """``repr(value)``, cut to 80 characters (a value may be 64 KiB of text)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> Any:
    """The RE2 program of ``pattern`` (errors not logged to stderr); raises ``re2.error``."""
    options = re2.Options()
    options.log_errors = False
    return re2.compile(pattern, options=options)


def _check(name: str, spec: ParamSpec, value: Any) -> Any:
    """Return ``value`` checked against a typed declaration (a number becomes a float)."""
    kind = spec.type
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = {
        "string": isinstance(value, str),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": is_number and math.isfinite(value),
        "boolean": isinstance(value, bool),
        "array": isinstance(value, list | tuple),
        "object": isinstance(value, dict) and all(isinstance(k, str) for k in value),
    }[kind or "string"]
    field = f"params.{name}"
    if not ok:
        what = _ARTICLE.get(kind or "", f"a {kind}")
        if kind == "number":
            what = "a finite number"
        raise WorkflowError(f"parameter {name!r} must be {what}, got {_short(value)}", field=field)
    if kind == "number":
        value = float(value)
    elif kind == "array":
        value = list(value)
    if spec.choices is not None and value not in spec.choices:
        raise WorkflowError(
            f"parameter {name!r} must be one of {', '.join(map(repr, spec.choices))}, "
            f"got {_short(value)}",
            field=field,
        )
    if spec.pattern is not None and _compile(spec.pattern).fullmatch(value) is None:
        raise WorkflowError(
            f"parameter {name!r} must match the pattern {spec.pattern!r} as a whole, "
            f"got {_short(value)}",
            field=field,
        )
    return value


def plain_type(default: Any) -> str:
    """The type a plain default gives its parameter, in declaration terms (``integer``,
    ``number``, ``boolean``, ``string``, ``array``, ``object``), or ``any`` for ``None``."""
    for kind, types in (
        ("boolean", bool),
        ("integer", int),
        ("number", float),
        ("string", str),
        ("array", list | tuple),
        ("object", dict),
    ):
        if isinstance(default, types):
            return kind
    return "any"


def _legacy(name: str, default: Any, value: Any) -> Any:
    """A plain default's rule: the default's type (bool, int, float, str, array, table) fixes
    the override's; an int is accepted for a float. ``None`` (only from the Python API) takes
    any value."""
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "a bool"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an int"
    elif isinstance(default, float):
        ok, kind = isinstance(value, int | float) and not isinstance(value, bool), "a number"
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a string"
    elif isinstance(default, list | tuple):
        ok, kind = isinstance(value, list | tuple), "an array"
        value = list(value) if ok else value
    elif isinstance(default, dict):
        ok, kind = isinstance(value, dict), "a table"
    else:
        ok, kind = True, ""
    if not ok:
        raise WorkflowError(
            f"parameter {name!r} must be {kind} (its default is {_short(default)}), "
            f"got {_short(value)}",
            field="params",
        )
    return value
