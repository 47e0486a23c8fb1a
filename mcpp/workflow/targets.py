"""Step targets: the ``"module:function"`` strings that name the code a step runs.

:func:`resolve` turns a target into the callable, in any process; :func:`describe` turns a
function into its target (the Python API uses it). A target is ``"package.module:attr"`` with an
optional dotted attribute path after the colon (``"pkg.mod:Class.method"``).

``"__main__:fn"`` names a function of the user's script. In the script's own process that is the
running ``__main__`` module; in any other process the script file is loaded as the module
``"__mp_main__"`` (like :mod:`multiprocessing` does), so its ``if __name__ == "__main__":``
block does not run there.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from mcpp.errors import WorkflowError

__all__ = ["MAIN", "MP_MAIN", "add_import_paths", "describe", "resolve"]

MAIN = "__main__"
MP_MAIN = "__mp_main__"


def resolve(
    run: str, *, import_paths: Sequence[str] = (), main_path: str | None = None
) -> Callable[..., Any]:
    """Return the callable that the target ``run`` names, importing its module if needed.

    ``import_paths`` are prepended to :data:`sys.path` (each at most once) before importing.
    ``main_path`` is the user's script, needed for ``"__main__:fn"`` targets; its folder is
    prepended to :data:`sys.path` too, as when Python runs a script.

    Raises :class:`~mcpp.errors.WorkflowError` (with ``field="run"``) when ``run`` is not
    ``"module:attr"``, the module does not exist, importing the module raised, the attribute
    is missing, or it is not callable. Other exceptions are not raised on purpose; an exception
    while importing, any ``BaseException`` included (``SystemExit``, ``KeyboardInterrupt``
    raised by the module's code), is reported by its type and message, never propagated.
    """
    module_name, sep, attr_path = run.partition(":")
    dotted_ok = sep and _is_dotted_name(module_name) and _is_dotted_name(attr_path)
    if not dotted_ok:
        raise WorkflowError(
            f"invalid target {run!r}: expected 'module:function' (e.g. 'pkg.mod:fn')",
            field="run",
        )
    add_import_paths(import_paths)
    if module_name == MAIN:
        if main_path is None:
            raise WorkflowError(
                f"target {run!r} names the main script, but there is none here "
                "(only a Python script can define '__main__' steps)",
                field="run",
            )
        module = _load_main(main_path)
    else:
        module = _import(module_name)
    target: object = module
    for depth, part in enumerate(attr_path.split(".")):
        try:
            target = getattr(target, part)
        except AttributeError:
            owner = ".".join([module_name, *attr_path.split(".")[:depth]])
            raise WorkflowError(f"{owner!r} has no attribute {part!r}", field="run") from None
    if not callable(target):
        raise WorkflowError(
            f"target {run!r} is not callable: it is of type {type(target).__name__}", field="run"
        )
    return target


def describe(fn: Callable[..., Any]) -> str:
    """Return the target ``"module:qualname"`` under which :func:`resolve` finds ``fn`` again.

    A function of a script loaded as ``__mp_main__`` is described as ``"__main__:..."``.
    Raises :class:`~mcpp.errors.WorkflowError` for callables another process cannot import:
    lambdas, functions defined inside functions, objects without ``__module__``/``__qualname__``.
    """
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise WorkflowError(f"{fn!r} has no module and qualified name to import it by")
    if not _is_dotted_name(qualname):
        raise WorkflowError(
            f"{module}.{qualname} cannot run in another process: define it at module level"
        )
    if module == MP_MAIN:
        module = MAIN
    return f"{module}:{qualname}"


def add_import_paths(paths: Sequence[str]) -> None:
    """Prepend each of ``paths`` to :data:`sys.path` unless it is there already (keeps order)."""
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def _import(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise WorkflowError(
                f"module {name!r} not found (is its folder on the import path? "
                "mcpp adds the workflow file's folder and the working directory)",
                field="run",
            ) from exc
        raise WorkflowError(f"importing {name!r} failed: {_exc_text(exc)}", field="run") from exc
    except BaseException as exc:  # a module's top-level code may raise anything
        raise WorkflowError(f"importing {name!r} failed: {_exc_text(exc)}", field="run") from exc


def _load_main(main_path: str) -> ModuleType:
    path = os.path.abspath(main_path)
    for name in (MAIN, MP_MAIN):
        loaded = sys.modules.get(name)
        loaded_file = getattr(loaded, "__file__", None)
        if loaded is not None and loaded_file and os.path.abspath(loaded_file) == path:
            return loaded
    spec = importlib.util.spec_from_file_location(MP_MAIN, path)
    if spec is None or spec.loader is None or not os.path.isfile(path):
        raise WorkflowError(f"main script {main_path!r} is not a Python file", field="run")
    add_import_paths([os.path.dirname(path)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[MP_MAIN] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # a script's top-level code may raise anything
        del sys.modules[MP_MAIN]
        raise WorkflowError(
            f"loading main script {main_path!r} failed: {_exc_text(exc)}", field="run"
        ) from exc
    return module


def _exc_text(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a user's exception whose __str__ raises
        text = ""
    text = text if len(text) <= 500 else text[:497] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
