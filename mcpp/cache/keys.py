"""Content-hash cache keys: a step's function identity, its arguments and its upstream keys."""

from __future__ import annotations

import hashlib
import inspect
import types
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

__all__ = [
    "KEY_VERSION",
    "cache_key",
    "function_hash",
    "function_identity",
    "hash_result",
    "step_key",
]

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


def function_hash(fn: Callable[..., Any]) -> str:
    """Return a hash (64 hex digits) of ``fn``'s identity: module, qualified name and source.

    See :func:`function_identity`. A function of a user script hashes the same whether the
    script runs as ``__main__`` or was loaded as ``__mp_main__`` in a step process.
    """
    module, qualname, code = function_identity(fn)
    if module == "__mp_main__":
        module = "__main__"
    return _digest(_encoder.encode([KEY_VERSION, module, qualname, code]), b"mcpp.step.fn")


def step_key(identity: str, args: Mapping[str, Any], upstream: Mapping[str, str]) -> str:
    """Return the cache key (64 hex digits, BLAKE2b) of a call.

    ``identity`` is the function's :func:`function_hash`; ``args`` its keyword arguments
    (msgspec msgpack with sorted keys, so dict order does not matter anywhere in them);
    ``upstream`` maps each upstream step id to a string that stands for its result (its cache
    key, or :func:`hash_result` of it). A change to any of them gives another key. This is the
    form the coordinator uses: it gets ``identity`` from the supervisor and never imports the
    function.

    Raises ``TypeError`` if ``args`` holds a value msgspec cannot encode.
    """
    try:
        encoded = _encoder.encode(
            {
                "version": KEY_VERSION,
                "identity": identity,
                "args": dict(args),
                "upstream": dict(upstream),
            }
        )
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"cannot make a cache key: {exc}") from exc
    return _digest(encoded, b"mcpp.step.key")


def cache_key(
    fn: Callable[..., Any], args: Mapping[str, Any], upstream_keys: Mapping[str, str]
) -> str:
    """Return the cache key of calling ``fn`` with ``args``: :func:`step_key` of
    :func:`function_hash` of ``fn``. ``upstream_keys`` maps upstream step id -> that step's
    cache key, or :func:`hash_result` of its result if it was not cached.

    Raises ``TypeError`` if ``args`` holds a value msgspec cannot encode.
    """
    try:
        return step_key(function_hash(fn), args, upstream_keys)
    except TypeError as exc:
        name = f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', '?')}"
        raise TypeError(f"{exc} (calling {name})") from exc


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
