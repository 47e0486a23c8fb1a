"""Step targets resolve to callables, and functions describe themselves as targets."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcpp.errors import WorkflowError
from mcpp.workflow.targets import add_import_paths, describe, resolve
from tests.conftest import write_module

pytestmark = pytest.mark.usefixtures("restore_sys_path")


@pytest.fixture
def no_mp_main() -> Iterator[None]:
    saved = sys.modules.pop("__mp_main__", None)
    yield
    sys.modules.pop("__mp_main__", None)
    if saved is not None:
        sys.modules["__mp_main__"] = saved


def resolve_error(run: str, **kwargs: Any) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        resolve(run, **kwargs)
    assert info.value.field == "run"
    return info.value


def test_resolves_a_function_and_a_dotted_attribute(tmp_path: Path) -> None:
    name = write_module(
        tmp_path,
        "def f():\n    return 1\nclass C:\n    @staticmethod\n    def g():\n        return 2\n",
    )
    assert resolve(f"{name}:f", import_paths=[str(tmp_path)])() == 1
    assert resolve(f"{name}:C.g", import_paths=[str(tmp_path)])() == 2
    assert resolve("os.path:join") is __import__("os").path.join


def test_import_paths_are_prepended_once(tmp_path: Path) -> None:
    add_import_paths([str(tmp_path), "/elsewhere"])
    add_import_paths([str(tmp_path)])
    assert sys.path[:2] == [str(tmp_path), "/elsewhere"]
    assert sys.path.count(str(tmp_path)) == 1


@pytest.mark.parametrize("run", ["nocolon", ":f", "mod:", "a-b:f", "mod:f.", "mod:1f", "a:b:c"])
def test_malformed_targets(run: str) -> None:
    assert "expected 'module:function'" in str(resolve_error(run))


def test_a_missing_module_is_not_found() -> None:
    assert "module 'no_such_xyz' not found" in str(resolve_error("no_such_xyz:f"))
    assert "module 'os.no_such_xyz' not found" in str(resolve_error("os.no_such_xyz:f"))


def test_an_import_error_inside_the_module_is_reported_as_such(tmp_path: Path) -> None:
    name = write_module(tmp_path, "import no_such_dependency_xyz\n")
    err = resolve_error(f"{name}:f", import_paths=[str(tmp_path)])
    assert f"importing {name!r} failed: ModuleNotFoundError" in str(err)
    assert "not found (is its folder" not in str(err)

    name = write_module(tmp_path, "import sys\nsys.exit(3)\n")
    err = resolve_error(f"{name}:f", import_paths=[str(tmp_path)])
    assert "SystemExit: 3" in str(err)


def test_missing_attribute_and_not_callable(tmp_path: Path) -> None:
    name = write_module(tmp_path, "X = 1\nclass C:\n    pass\n")
    err = resolve_error(f"{name}:nope", import_paths=[str(tmp_path)])
    assert f"{name!r} has no attribute 'nope'" in str(err)
    err = resolve_error(f"{name}:C.nope", import_paths=[str(tmp_path)])
    assert f"'{name}.C' has no attribute 'nope'" in str(err)
    assert "is not callable: it is of type int" in str(resolve_error(f"{name}:X"))


def test_main_targets_need_the_script() -> None:
    assert "names the main script" in str(resolve_error("__main__:f"))


@pytest.mark.usefixtures("no_mp_main")
def test_main_script_loads_as_mp_main_without_running_its_guard(tmp_path: Path) -> None:
    marker = tmp_path / "guard-ran"
    helper = write_module(tmp_path, "VALUE = 41\n")
    script = tmp_path / "script.py"
    script.write_text(
        f"import {helper}\n"
        "LOADS = []\n"
        "LOADS.append(__name__)\n"
        f"def f():\n    return {helper}.VALUE + 1\n"
        'if __name__ == "__main__":\n'
        f"    open({str(marker)!r}, 'w').close()\n"
    )
    fn = resolve("__main__:f", main_path=str(script))
    assert fn() == 42
    assert not marker.exists()
    module = sys.modules["__mp_main__"]
    assert module.LOADS == ["__mp_main__"]
    assert describe(fn) == "__main__:f"
    # Loaded once: resolving again reuses the module.
    assert resolve("__main__:f", main_path=str(script)) is fn
    assert sys.modules["__mp_main__"] is module


@pytest.mark.usefixtures("no_mp_main")
def test_a_failing_main_script_is_reported_and_not_kept(tmp_path: Path) -> None:
    script = tmp_path / "bad.py"
    script.write_text("raise ValueError('nope')\n")
    err = resolve_error("__main__:f", main_path=str(script))
    assert "loading main script" in str(err)
    assert "ValueError: nope" in str(err)
    assert "__mp_main__" not in sys.modules
    assert "is not a Python file" in str(resolve_error("__main__:f", main_path="/no/such.py"))


def module_level() -> int:
    return 1


class Holder:
    @staticmethod
    def method() -> int:
        return 2


def test_describe_round_trips_through_resolve() -> None:
    for fn in (module_level, Holder.method):
        target = describe(fn)
        assert target == f"{__name__}:{fn.__qualname__}"
        assert resolve(target) is fn


def test_describe_rejects_what_another_process_cannot_import() -> None:
    def nested() -> None:
        pass

    lam: Callable[[], int] = lambda: 1  # noqa: E731
    for fn in (nested, lam):
        with pytest.raises(WorkflowError, match="define it at module level"):
            describe(fn)
    with pytest.raises(WorkflowError, match="no module and qualified name"):
        describe(object())  # type: ignore[arg-type]
