"""Parameters keep the type their declaration or default gives them (mcpp/workflow/params.py).

``--param`` text is parsed by that type: a string parameter keeps the text whatever it looks
like (``2024``, ``true``, ``null``); other types parse it and check the result. The Python API's
values are checked against the same type.
"""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest

from mcpp.errors import WorkflowError
from mcpp.workflow.loader import load_workflow_spec
from mcpp.workflow.params import parse_param_texts, plain_type, resolve_params

PARAMS = """
out = "out/report.md"
rows = 10
ratio = 0.5
flag = false
items = [1, 2]
table = { a = 1 }
[tag]
type = "string"
default = "v1"
[count]
type = "integer"
default = 1
"""


def resolve(*items: str) -> dict[str, Any]:
    return resolve_params(tomllib.loads(PARAMS), parse_param_texts(items))


def error(*items: str, **values: Any) -> WorkflowError:
    overrides: dict[str, Any] = {**parse_param_texts(items), **values}
    with pytest.raises(WorkflowError) as info:
        resolve_params(tomllib.loads(PARAMS), overrides)
    return info.value


@pytest.mark.parametrize("text", ["2024", "true", "null", "1.5", "[1, 2]", '"quoted"', ""])
def test_a_string_default_keeps_command_line_text_as_text(text: str) -> None:
    assert resolve(f"out={text}")["out"] == text
    assert resolve(f"tag={text}")["tag"] == text


def test_other_plain_defaults_parse_the_text_by_their_type() -> None:
    values = resolve("rows=3", "ratio=2", "flag=true", "items=[3]", "table={b = 2}", "count=4")
    assert values["rows"] == 3 and values["ratio"] == 2.0 and isinstance(values["ratio"], float)
    assert values["flag"] is True and values["items"] == [3] and values["table"] == {"b": 2}
    assert values["count"] == 4


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("rows=abc", "parameter 'rows' must be an int (its default is 10), got 'abc'"),
        ("rows=1.5", "parameter 'rows' must be an int (its default is 10), got 1.5"),
        ("ratio=true", "parameter 'ratio' must be a number (its default is 0.5), got True"),
        ("flag=1", "parameter 'flag' must be a bool (its default is False), got 1"),
        ("items=abc", "parameter 'items' must be an array (its default is [1, 2]), got 'abc'"),
        ("table=[1]", "parameter 'table' must be a table (its default is {'a': 1}), got [1]"),
        ("count=2024-01-01", "parameter 'count' must be an integer, got '2024-01-01'"),
    ],
)
def test_text_that_does_not_parse_as_the_type_is_an_error(item: str, reason: str) -> None:
    assert error(item).reason == reason


def test_python_values_must_have_the_type_of_a_string_default() -> None:
    assert error(out=2024).reason == (
        "parameter 'out' must be a string (its default is 'out/report.md'), got 2024"
    )
    assert "parameter 'tag' must be a string, got None" in error(tag=None).reason
    assert resolve_params(tomllib.loads(PARAMS), {"out": "2024"})["out"] == "2024"


def test_a_mismatch_names_the_file_the_parameter_and_the_type(tmp_path: Path) -> None:
    path = tmp_path / "wf.toml"
    path.write_text(
        textwrap.dedent(
            """
            [workflow]
            name = "p"
            [params]
            rows = 10
            [[steps]]
            id = "a"
            run = "os:getcwd"
            """
        )
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow_spec(path, parse_param_texts(["rows=ten"]))
    assert str(info.value) == (
        f"{path}: field 'params': parameter 'rows' must be an int (its default is 10), got 'ten'"
    )


@pytest.mark.parametrize(
    ("default", "kind"),
    [(True, "boolean"), (3, "integer"), (0.5, "number"), ("x", "string"), ([1], "array"),
     ({"a": 1}, "object"), (None, "any")],
)  # fmt: skip
def test_plain_type_names_the_type_a_default_gives(default: Any, kind: str) -> None:
    assert plain_type(default) == kind
