"""Content-hash cache keys: a step's function identity, its arguments and its upstream keys."""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

__all__ = ["KEY_VERSION", "cache_key", "function_identity", "hash_result"]

KEY_VERSION = 1
"""Part of every key: bump it when the key layout changes, so old entries simply miss."""

_encoder = msgspec.msgpack.Encoder(order="sorted")


def _digest(data: bytes, person: bytes) -> str:
    return hashlib.blake2b(data, digest_size=32, person=person).hexdigest()


def function_identity(fn: Callable[..., Any]) -> tuple[str, str, str | bytes]:
    """Return ``(module, qualified name, code)`` identifying ``fn`` for a cache key.

    ``code`` is the source text from :func:`inspect.getsource` (which follows ``__wrapped__``).
    Without source (a function made by ``exec``, a REPL), it is bytes describing the code
    object: its bytecode, constants (nested functions included), names, argument layout and the
    function's defaults. These are built field by field rather than with :mod:`marshal`, whose
    output depends on reference counts and would differ between processes. For a callable
    with neither (a builtin) it is empty bytes, so only module and name count.
    """
    module = getattr(fn, "__module__", None) or ""
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    code: str | bytes
    try:
        code = inspect.getsource(fn)
    except (OSError, TypeError):
        target = inspect.unwrap(fn)
        code_object = getattr(target, "__code__", None)
        if isinstance(code_object, types.CodeType):
            defaults = (target.__defaults__, target.__kwdefaults__)
            code = _encoder.encode([_describe_code(code_object), _describe_constant(defaults)])
        else:
            code = b""
    return module, qualname, code


def _describe_code(code: types.CodeType) -> list[Any]:
    return [
        code.co_code,
        [_describe_constant(constant) for constant in code.co_consts],
        list(code.co_names),
        list(code.co_varnames),
        list(code.co_freevars),
        list(code.co_cellvars),
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
    ]


def _describe_constant(value: Any) -> Any:
    if isinstance(value, types.CodeType):
        return ["code", _describe_code(value)]
    if isinstance(value, tuple | list):
        return ["sequence", [_describe_constant(item) for item in value]]
    if isinstance(value, frozenset | set):
        # Set order follows string hashes, which differ between processes: sort.
        return ["set", sorted((_describe_constant(item) for item in value), key=repr)]
    if isinstance(value, dict):
        return ["dict", sorted(([repr(k), _describe_constant(v)] for k, v in value.items()))]
    return [type(value).__qualname__, repr(value)]


def cache_key(
    fn: Callable[..., Any], args: Mapping[str, Any], upstream_keys: Mapping[str, str]
) -> str:
    """Return the cache key (64 hex digits, BLAKE2b) of calling ``fn`` with ``args``.

    The key hashes :func:`function_identity` of ``fn``, the keyword arguments ``args`` and
    ``upstream_keys`` (upstream step id -> that step's cache key, or :func:`hash_result` of its
    result if it was not cached), so a change to any of them gives another key. Arguments are
    encoded with msgspec msgpack with sorted keys, so dict order does not matter anywhere in
    them (a tuple and a list with equal items encode alike).

    Raises ``TypeError`` if ``args`` holds a value msgspec cannot encode.
    """
    module, qualname, code = function_identity(fn)
    try:
        encoded = _encoder.encode(
            {
                "version": KEY_VERSION,
                "module": module,
                "qualname": qualname,
                "code": code,
                "args": dict(args),
                "upstream": dict(upstream_keys),
            }
        )
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"cannot make a cache key for {module}:{qualname}: {exc}") from exc
    return _digest(encoded, b"mcpp.cache.key")


def hash_result(result: Any) -> str:
    """Return a content hash (64 hex digits) of a step result, for an upstream not cached.

    The result is encoded like arguments (msgspec msgpack, sorted keys); pass the decoded
    result, or always the same encoded bytes, since the two hash differently. Raises
    ``TypeError`` if msgspec cannot encode it.
    """
    try:
        encoded = _encoder.encode(result)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"cannot hash result: {exc}") from exc
    return _digest(encoded, b"mcpp.cache.val")
