"""Workflow files load into validated specs, and every invalid one names file, step and field."""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mcpp.errors import CycleError, WorkflowError
from mcpp.workflow import targets
from mcpp.workflow.loader import dump_plan, load_workflow_spec, parse_param_overrides
from mcpp.workflow.spec import StepSpec, WorkflowSpec
from tests.conftest import write_module

REPO = Path(__file__).resolve().parents[2]

STEPS_SOURCE = """
def produce(rows=10, label="x"):
    return list(range(rows))

def consume(produce, scale=1):
    return sum(produce) * scale

def anything(**kwargs):
    return kwargs

def needs_x(produce, x):
    return x

NOT_CALLABLE = 42
"""


pytestmark = pytest.mark.usefixtures("restore_sys_path")


@pytest.fixture
def mod(tmp_path: Path) -> str:
    """A fresh module of step functions next to the workflow files; returns its name."""
    return write_module(tmp_path, STEPS_SOURCE)


def write(tmp_path: Path, text: str, name: str = "wf.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def workflow(mod: str, steps: str, *, head: str = "", params: str = "") -> str:
    """A TOML workflow named 'wf' whose steps' run targets may say MOD for the steps module."""
    text = '[workflow]\nname = "wf"\n' + textwrap.dedent(head)
    if params:
        text += "[params]\n" + textwrap.dedent(params)
    return text + textwrap.dedent(steps).replace("MOD", mod)


def load_error(path: Path, **params: Any) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        load_workflow_spec(path, params)
    return info.value


def assert_names(err: WorkflowError, path: Path, *, step: str | None, field: str) -> None:
    """The error names the file, the step and the field, as attributes and in its message."""
    message = str(err)
    assert err.file == str(path)
    assert message.startswith(f"{path}: ")
    assert err.step == step
    assert (f"step {step!r}" in message) == (step is not None)
    assert err.field == field
    assert f"field {field!r}" in message


def assert_load_error(path: Path, *, step: str | None, field: str, says: str) -> None:
    """Loading ``path`` fails naming the file, ``step`` and ``field``, and the message ``says``."""
    err = load_error(path)
    assert_names(err, path, step=step, field=field)
    assert says in str(err)


# --- a valid file -------------------------------------------------------------------------


def test_valid_file_loads_into_a_typed_spec(tmp_path: Path, mod: str) -> None:
    path = write(
        tmp_path,
        workflow(
            mod,
            """
            [[steps]]
            id = "produce"
            run = "MOD:produce"
            args = { rows = 5 }
            timeout = 30
            retries = 2
            priority = 3

            [[steps]]
            id = "consume"
            run = "MOD:consume"
            depends_on = ["produce"]
            uses = ["gpu"]
            """,
            head='max_concurrent = 2\non_failure = "fail_fast"\nactors = "pool"\nworkers = 3\n'
            "[resources]\ngpu = 1\n",
        ),
    )
    spec = load_workflow_spec(path)
    assert spec.name == "wf"
    assert spec.source == str(path)
    assert (spec.max_concurrent, spec.on_failure, spec.actors, spec.workers) == (
        2,
        "fail_fast",
        "pool",
        3,
    )
    assert spec.resources == {"gpu": 1}
    assert spec.import_paths[0] == str(tmp_path)
    assert spec.main_path is None
    assert spec.steps == (
        StepSpec(
            id="produce",
            run=f"{mod}:produce",
            args={"rows": 5},
            timeout=30.0,
            retries=2,
            priority=3,
        ),
        StepSpec(id="consume", run=f"{mod}:consume", depends_on=("produce",), uses=("gpu",)),
    )
    assert isinstance(spec.steps[0].timeout, float)
    # The spec crosses process boundaries: it must round-trip through msgspec.
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(spec), type=WorkflowSpec) == spec


def test_toml_json_and_yaml_give_equal_specs(tmp_path: Path, mod: str) -> None:
    toml = write(
        tmp_path,
        workflow(
            mod,
            """
            [[steps]]
            id = "produce"
            run = "MOD:produce"
            args = { rows = "${rows}", label = "n=${rows}" }
            timeout = 1.5

            [[steps]]
            id = "consume"
            run = "MOD:consume"
            depends_on = ["produce"]
            """,
            params="rows = 7\n",
        ),
    )
    document = {
        "workflow": {"name": "wf"},
        "params": {"rows": 7},
        "steps": [
            {
                "id": "produce",
                "run": f"{mod}:produce",
                "args": {"rows": "${rows}", "label": "n=${rows}"},
                "timeout": 1.5,
            },
            {"id": "consume", "run": f"{mod}:consume", "depends_on": ["produce"]},
        ],
    }
    json_path = tmp_path / "wf.json"
    json_path.write_bytes(msgspec.json.encode(document))
    yaml_path = tmp_path / "wf.yml"
    yaml_path.write_bytes(msgspec.yaml.encode(document))
    specs = [load_workflow_spec(p) for p in (toml, json_path, yaml_path)]
    assert [s.source for s in specs] == [str(toml), str(json_path), str(yaml_path)]
    bare = [msgspec.structs.replace(s, source=None) for s in specs]
    assert bare[0] == bare[1] == bare[2]
    assert bare[0].steps[0].args == {"rows": 7, "label": "n=7"}


def test_a_path_object_is_accepted_and_source_is_the_path_as_given(
    tmp_path: Path, mod: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, workflow(mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\n'))
    monkeypatch.chdir(tmp_path)
    spec = load_workflow_spec(Path("wf.toml"))
    assert spec.source == "wf.toml"
    assert spec.import_paths == (str(tmp_path),)


# --- file-level errors --------------------------------------------------------------------


def test_unknown_suffix_missing_file_and_bad_syntax_name_the_file(tmp_path: Path) -> None:
    for path, reason in [
        (write(tmp_path, "", "wf.ini"), "unknown workflow file format '.ini'"),
        (tmp_path / "absent.toml", "cannot read"),
        (write(tmp_path, "[workflow\n"), "invalid TOML"),
        (write(tmp_path, "{", "wf.json"), "invalid JSON"),
        (write(tmp_path, "a: [", "wf.yaml"), "invalid YAML"),
    ]:
        err = load_error(path)
        assert err.file == str(path)
        assert reason in str(err)


def test_a_document_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    err = load_error(write(tmp_path, "- 1\n", "wf.yaml"))
    assert "expected `object`, got `array`" in str(err)


def test_unknown_top_level_key(tmp_path: Path, mod: str) -> None:
    path = write(tmp_path, workflow(mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\n[step]\n'))
    assert_load_error(
        path, step=None, field="step", says="unknown key 'step'; did you mean 'steps'?"
    )


def test_unknown_workflow_key_suggests_the_right_one(tmp_path: Path, mod: str) -> None:
    path = write(
        tmp_path,
        workflow(mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\n', head="max_concurent = 2\n"),
    )
    assert_load_error(
        path, step=None, field="workflow.max_concurent", says="did you mean 'max_concurrent'?"
    )


def test_unknown_step_key(tmp_path: Path, mod: str) -> None:
    path = write(
        tmp_path, workflow(mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\nfrobnicate = 1\n')
    )
    assert_load_error(path, step="a", field="frobnicate", says="allowed: id, run, args, depends_on")


def test_missing_workflow_table_and_name(tmp_path: Path, mod: str) -> None:
    path = write(tmp_path, f'[[steps]]\nid = "a"\nrun = "{mod}:anything"\n')
    assert_names(load_error(path), path, step=None, field="workflow")
    path = write(tmp_path, f'[workflow]\n[[steps]]\nid = "a"\nrun = "{mod}:anything"\n')
    assert_load_error(path, step=None, field="workflow.name", says="missing required key 'name'")


def test_no_steps_is_an_error(tmp_path: Path, mod: str) -> None:
    path = write(tmp_path, workflow(mod, ""))
    assert_names(load_error(path), path, step=None, field="steps")
    path = write(tmp_path, '{"workflow": {"name": "wf"}, "steps": []}', "wf.json")
    assert_load_error(path, step=None, field="steps", says="expected `array` of length >= 1")


def test_missing_step_id_names_the_step_by_position(tmp_path: Path, mod: str) -> None:
    path = write(
        tmp_path,
        workflow(
            mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\n[[steps]]\nrun = "MOD:anything"\n'
        ),
    )
    assert_load_error(path, step=None, field="steps[1].id", says="missing required key 'id'")


def test_run_must_be_a_string(tmp_path: Path, mod: str) -> None:
    path = write(tmp_path, workflow(mod, '[[steps]]\nid = "a"\nrun = 3\n'))
    assert_load_error(path, step="a", field="run", says="expected `str`, got `int`")


def test_missing_step_run(tmp_path: Path, mod: str) -> None:
    path = write(tmp_path, workflow(mod, '[[steps]]\nid = "a"\n'))
    assert_load_error(path, step="a", field="run", says="missing required key 'run'")


@pytest.mark.parametrize(
    ("line", "field", "reason"),
    [
        ('isolate = "yes"', "isolate", "expected `bool`, got `str`"),
        ('args = "x"', "args", "expected `object`, got `str`"),
        ('timeout = "soon"', "timeout", "expected `float | null`, got `str`"),
        ("timeout = -1", "timeout", "expected `float` > 0.0, got -1"),
        ("timeout = true", "timeout", "got `bool`"),
        ("retries = -1", "retries", "expected `int` >= 0, got -1"),
        ("retries = 1.5", "retries", "expected `int`, got `float`"),
        ('priority = "high"', "priority", "expected `int`, got `str`"),
        ("retry_delay = -0.5", "retry_delay", "expected `float` >= 0.0"),
        ("deadline = 0", "deadline", "expected `float` > 0.0"),
        ("retry_on = [1]", "retry_on", "expected `str`, got `int` (at retry_on[0])"),
        ('depends_on = "x"', "depends_on", "expected `array`, got `str`"),
        ("depends_on = [1]", "depends_on", "expected `str`, got `int` (at depends_on[0])"),
    ],
)
def test_wrong_step_field_types_and_ranges(
    tmp_path: Path, mod: str, line: str, field: str, reason: str
) -> None:
    path = write(tmp_path, workflow(mod, f'[[steps]]\nid = "a"\nrun = "MOD:anything"\n{line}\n'))
    assert_load_error(path, step="a", field=field, says=reason)


@pytest.mark.parametrize(
    ("head", "field", "reason"),
    [
        ("max_concurrent = 0", "workflow.max_concurrent", "expected `int` >= 1"),
        ("workers = 0", "workflow.workers", "expected `int` >= 1"),
        ('on_failure = "stop"', "workflow.on_failure", "invalid enum value 'stop'"),
        ('actors = "threads"', "workflow.actors", "invalid enum value 'threads'"),
        ("name = 3", "workflow.name", "expected `str`, got `int`"),
    ],
)
def test_wrong_workflow_settings(
    tmp_path: Path, mod: str, head: str, field: str, reason: str
) -> None:
    text = workflow(mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\n', head=head + "\n")
    path = write(tmp_path, text.replace('name = "wf"\n', "") if "name" in head else text)
    assert_load_error(path, step=None, field=field, says=reason)


def test_resources_must_be_positive_ints(tmp_path: Path, mod: str) -> None:
    path = write(
        tmp_path,
        workflow(mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\n', head="[resources]\ngpu = 0\n"),
    )
    assert_load_error(path, step=None, field="resources", says="expected `int` >= 1")


def test_a_step_may_only_use_declared_resources(tmp_path: Path, mod: str) -> None:
    path = write(
        tmp_path,
        workflow(mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\nuses = ["gpu"]\n'),
    )
    assert_load_error(path, step="a", field="uses", says="unknown resource 'gpu'")


# --- ids and the graph --------------------------------------------------------------------


@pytest.mark.parametrize("step_id", ["my-step", "1st", "class", "", "a b"])
def test_step_id_must_be_a_python_identifier(tmp_path: Path, mod: str, step_id: str) -> None:
    path = write(tmp_path, workflow(mod, f'[[steps]]\nid = "{step_id}"\nrun = "MOD:anything"\n'))
    assert_load_error(path, step=step_id, field="id", says="must be a Python identifier")


def test_duplicate_step_id(tmp_path: Path, mod: str) -> None:
    steps = '[[steps]]\nid = "a"\nrun = "MOD:anything"\n' * 2
    path = write(tmp_path, workflow(mod, steps))
    assert_load_error(path, step="a", field="id", says="more than once")


def test_unknown_dependency(tmp_path: Path, mod: str) -> None:
    path = write(
        tmp_path,
        workflow(mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\ndepends_on = ["ghost"]\n'),
    )
    assert_load_error(path, step="a", field="depends_on", says="ghost")


def test_duplicate_dependency(tmp_path: Path, mod: str) -> None:
    steps = '[[steps]]\nid = "a"\nrun = "MOD:anything"\n'
    steps += '[[steps]]\nid = "b"\nrun = "MOD:anything"\ndepends_on = ["a", "a"]\n'
    path = write(tmp_path, workflow(mod, steps))
    assert_names(load_error(path), path, step="b", field="depends_on")


def test_self_dependency(tmp_path: Path, mod: str) -> None:
    path = write(
        tmp_path, workflow(mod, '[[steps]]\nid = "a"\nrun = "MOD:anything"\ndepends_on = ["a"]\n')
    )
    assert_names(load_error(path), path, step="a", field="depends_on")


def test_cycle_names_the_cycle(tmp_path: Path, mod: str) -> None:
    steps = """
    [[steps]]
    id = "a"
    run = "MOD:anything"
    depends_on = ["b"]
    [[steps]]
    id = "b"
    run = "MOD:anything"
    depends_on = ["a"]
    """
    path = write(tmp_path, workflow(mod, steps))
    err = load_error(path)
    assert isinstance(err, CycleError)
    assert_names(err, path, step="a", field="depends_on")
    assert "a -> b -> a" in str(err)


def test_graph_errors_come_before_imports(tmp_path: Path) -> None:
    """A cycle is reported even when the targets would not import: nothing is imported first."""
    text = workflow(
        "no_such_module",
        '[[steps]]\nid = "a"\nrun = "MOD:f"\ndepends_on = ["a"]\n',
    )
    path = write(tmp_path, text)
    assert_names(load_error(path), path, step="a", field="depends_on")


# --- run targets and signatures -----------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "reason"),
    [
        ("no_colon", "expected 'module:function'"),
        ("MOD:", "expected 'module:function'"),
        ("MOD:a-b", "expected 'module:function'"),
        ("no_such_module_xyz:fn", "module 'no_such_module_xyz' not found"),
        ("MOD:missing", "has no attribute 'missing'"),
        ("MOD:NOT_CALLABLE", "is not callable: it is of type int"),
        ("__main__:fn", "names the main script"),
    ],
)
def test_unresolvable_run_target(tmp_path: Path, mod: str, run: str, reason: str) -> None:
    path = write(tmp_path, workflow(mod, f'[[steps]]\nid = "a"\nrun = "{run}"\n'))
    assert_load_error(path, step="a", field="run", says=reason)


def test_an_import_error_inside_the_module_is_not_module_not_found(tmp_path: Path) -> None:
    name = write_module(tmp_path, "import no_such_dependency_xyz\n", "broken")
    path = write(tmp_path, workflow(name, '[[steps]]\nid = "a"\nrun = "MOD:f"\n'))
    err = load_error(path)
    assert_names(err, path, step="a", field="run")
    assert f"importing {name!r} failed: ModuleNotFoundError" in str(err)
    assert "no_such_dependency_xyz" in str(err)

    (tmp_path / f"{name}_2.py").write_text("raise RuntimeError('boom at import')\n")
    path = write(tmp_path, workflow(f"{name}_2", '[[steps]]\nid = "a"\nrun = "MOD:f"\n'))
    assert "RuntimeError: boom at import" in str(load_error(path))


@pytest.mark.parametrize(
    ("step_b", "field", "reason"),
    [
        ('run = "MOD:consume"\nargs = { nope = 1 }', "args", "no keyword argument 'nope'"),
        ('run = "MOD:needs_x"', "args", "needs argument 'x'"),
        ('run = "MOD:produce"', "depends_on", "for the result of upstream step 'produce'"),
        ('run = "MOD:anything"\nargs = { produce = 1 }', "args", "clashes with the result"),
    ],
)
def test_step_function_must_accept_its_arguments(
    tmp_path: Path, mod: str, step_b: str, field: str, reason: str
) -> None:
    steps = f"""
[[steps]]
id = "produce"
run = "MOD:anything"
[[steps]]
id = "b"
depends_on = ["produce"]
{step_b}
"""
    path = write(tmp_path, workflow(mod, steps))
    assert_load_error(path, step="b", field=field, says=reason)


def test_upstream_results_and_args_fill_the_signature(tmp_path: Path, mod: str) -> None:
    steps = """
    [[steps]]
    id = "produce"
    run = "MOD:produce"
    [[steps]]
    id = "b"
    run = "MOD:consume"
    depends_on = ["produce"]
    args = { scale = 2 }
    """
    spec = load_workflow_spec(write(tmp_path, workflow(mod, steps)))
    assert spec.step("b").args == {"scale": 2}


# --- parameters ---------------------------------------------------------------------------


def one_step(mod: str, body: str, params: str) -> str:
    return workflow(mod, f'[[steps]]\nid = "a"\nrun = "MOD:anything"\n{body}\n', params=params)


def test_a_whole_placeholder_keeps_the_value_type(tmp_path: Path, mod: str) -> None:
    params = 'rows = 1000\nratio = 0.5\nflag = true\nitems = [1, 2]\nname = "n"\nt = { k = 1 }\n'
    args = (
        'args = { rows = "${rows}", ratio = "${ratio}", flag = "${flag}", items = "${items}", '
        'name = "${name}", t = "${t}" }'
    )
    spec = load_workflow_spec(write(tmp_path, one_step(mod, args, params)))
    assert spec.steps[0].args == {
        "rows": 1000,
        "ratio": 0.5,
        "flag": True,
        "items": [1, 2],
        "name": "n",
        "t": {"k": 1},
    }
    assert spec.params == {
        "rows": 1000,
        "ratio": 0.5,
        "flag": True,
        "items": [1, 2],
        "name": "n",
        "t": {"k": 1},
    }


def test_placeholders_inside_longer_strings_are_formatted(tmp_path: Path, mod: str) -> None:
    params = 'rows = 3\nflag = true\nitems = [1, 2]\nname = "data"\n'
    args = 'args = { s = "${name}/${rows}.csv", b = "-${flag}-", l = "x${items}" }'
    spec = load_workflow_spec(write(tmp_path, one_step(mod, args, params)))
    assert spec.steps[0].args == {"s": "data/3.csv", "b": "-true-", "l": "x[1,2]"}


def test_placeholders_are_replaced_at_any_depth(tmp_path: Path, mod: str) -> None:
    args = 'args = { outer = { inner = ["${n}", "n=${n}", { deep = "${n}" }] }, keep = 5 }'
    spec = load_workflow_spec(write(tmp_path, one_step(mod, args, "n = 2\n")))
    assert spec.steps[0].args == {"outer": {"inner": [2, "n=2", {"deep": 2}]}, "keep": 5}


def test_double_dollar_escapes_a_literal_placeholder(tmp_path: Path, mod: str) -> None:
    args = "args = { a = '$${n}', b = 'cost: $${n} and ${n}', c = '$5', d = '$$' }"
    spec = load_workflow_spec(write(tmp_path, one_step(mod, args, "n = 2\n")))
    assert spec.steps[0].args == {"a": "${n}", "b": "cost: ${n} and 2", "c": "$5", "d": "$$"}


def test_timeout_retries_and_priority_take_params(tmp_path: Path, mod: str) -> None:
    body = 'timeout = "${t}"\nretries = "${r}"\npriority = "${p}"'
    spec = load_workflow_spec(write(tmp_path, one_step(mod, body, "t = 5\nr = 2\np = -1\n")))
    step = spec.steps[0]
    assert (step.timeout, step.retries, step.priority) == (5.0, 2, -1)
    assert isinstance(step.timeout, float)


def test_undefined_placeholder_names_step_field_and_param(tmp_path: Path, mod: str) -> None:
    path = write(tmp_path, one_step(mod, 'args = { x = ["${nope}"] }', "rows = 1\n"))
    assert_load_error(
        path,
        step="a",
        field="args",
        says="undefined parameter 'nope' in args.x[0] (declared: rows)",
    )

    path = write(tmp_path, one_step(mod, 'timeout = "${t}"', ""))
    assert_load_error(path, step="a", field="timeout", says="undefined parameter 't'")


@pytest.mark.parametrize(
    ("text", "reason"),
    [("${1x}", "invalid placeholder '${1x}'"), ("a ${x", "unclosed placeholder")],
)
def test_malformed_placeholder(tmp_path: Path, mod: str, text: str, reason: str) -> None:
    path = write(tmp_path, one_step(mod, f'args = {{ v = "{text}" }}', "x = 1\n"))
    assert_load_error(path, step="a", field="args", says=reason)


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ('timeout = "${name}"', "timeout", "mistyped parameter 'name'"),
        ('retries = "${neg}"', "retries", "expected `int` >= 0, got -2"),
        ('priority = "${ratio}"', "priority", "expected `int`, got `float`"),
        ('timeout = "${rows}s"', "timeout", "got `str`"),
    ],
)
def test_mistyped_parameter_after_substitution(
    tmp_path: Path, mod: str, body: str, field: str, reason: str
) -> None:
    params = 'name = "slow"\nneg = -2\nratio = 0.5\nrows = 3\n'
    path = write(tmp_path, one_step(mod, body, params))
    assert_load_error(path, step="a", field=field, says=reason)


def test_overrides_replace_defaults(tmp_path: Path, mod: str) -> None:
    params = 'rows = 10\nratio = 0.5\nflag = false\nname = "a"\n'
    args = 'args = { rows = "${rows}", ratio = "${ratio}", flag = "${flag}", name = "${name}" }'
    path = write(tmp_path, one_step(mod, args, params))
    spec = load_workflow_spec(path, {"rows": 3, "ratio": 2, "flag": True, "name": "b"})
    assert spec.steps[0].args == {"rows": 3, "ratio": 2.0, "flag": True, "name": "b"}
    assert isinstance(spec.steps[0].args["ratio"], float)
    assert spec.params == {"rows": 3, "ratio": 2.0, "flag": True, "name": "b"}


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"nope": 1}, "unknown parameter 'nope' (declared: rows, ratio, flag)"),
        ({"rows": "abc"}, "parameter 'rows' must be an int (its default is 10), got 'abc'"),
        ({"rows": 1.5}, "parameter 'rows' must be an int"),
        ({"rows": True}, "parameter 'rows' must be an int"),
        ({"ratio": "x"}, "parameter 'ratio' must be a number"),
        ({"flag": 1}, "parameter 'flag' must be a bool"),
    ],
)
def test_bad_overrides_are_errors(
    tmp_path: Path, mod: str, override: dict[str, Any], reason: str
) -> None:
    path = write(tmp_path, one_step(mod, "", "rows = 10\nratio = 0.5\nflag = false\n"))
    err = load_error(path, **override)
    assert_names(err, path, step=None, field="params")
    assert reason in str(err)


def test_an_override_must_be_encodable(tmp_path: Path, mod: str) -> None:
    path = write(tmp_path, one_step(mod, "", "items = [1]\n"))
    err = load_error(path, items=[object()])
    assert_names(err, path, step=None, field="params")
    assert "parameter 'items': value is not encodable" in str(err)


def test_a_param_name_must_be_an_identifier(tmp_path: Path, mod: str) -> None:
    path = write(tmp_path, one_step(mod, "", '"my-param" = 1\n'))
    assert_load_error(path, step=None, field="params", says="'my-param' is not an identifier")


def test_substituted_values_are_copies(tmp_path: Path, mod: str) -> None:
    args = 'args = { a = "${items}", b = "${items}" }'
    spec = load_workflow_spec(write(tmp_path, one_step(mod, args, "items = [1]\n")))
    args_out = spec.steps[0].args
    assert args_out["a"] is not args_out["b"]
    assert args_out["a"] is not spec.params["items"]


def test_parse_param_overrides_parses_scalars_and_keeps_other_text() -> None:
    parsed = parse_param_overrides(
        [
            "n=3",
            "x=1.5",
            "flag=true",
            "items=[1,2]",
            "toml=['a', 2]",
            "name=hello world",
            'quoted="42"',
            "expr=a=b",
            "empty=",
            "day=2024-01-01",
            " spaced = 7",
        ]
    )
    assert parsed == {
        "n": 3,
        "x": 1.5,
        "flag": True,
        "items": [1, 2],
        "toml": ["a", 2],
        "name": "hello world",
        "quoted": "42",
        "expr": "a=b",
        "empty": "",
        "day": "2024-01-01",
        "spaced": 7,
    }
    assert parse_param_overrides(["n=1", "n=2"]) == {"n": 2}


@pytest.mark.parametrize("item", ["novalue", "=3", " =3"])
def test_parse_param_overrides_needs_key_and_equals(item: str) -> None:
    with pytest.raises(WorkflowError, match="expected KEY=VALUE"):
        parse_param_overrides([item])


def test_cli_overrides_feed_the_loader(tmp_path: Path, mod: str) -> None:
    path = write(tmp_path, one_step(mod, 'args = { n = "${n}" }', "n = 1\n"))
    spec = load_workflow_spec(path, parse_param_overrides(["n=5"]))
    assert spec.steps[0].args == {"n": 5}
    err = load_error(path, **parse_param_overrides(["n=five"]))
    assert "parameter 'n' must be an int (its default is 1), got 'five'" in str(err)


# --- plan ---------------------------------------------------------------------------------


def test_dump_plan_lists_steps_by_level_with_their_dependencies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)
    spec = load_workflow_spec("examples/diamond.json")
    plan = dump_plan(spec)
    assert plan.splitlines()[0] == "workflow 'diamond' (examples/diamond.json)"
    assert "4 steps in 3 levels" in plan
    assert "on_failure=fail_fast" in plan
    assert "params: x=3" in plan
    lines = [line.split() for line in plan.splitlines() if line.lstrip().startswith("[")]
    assert [(line[0], line[1]) for line in lines] == [
        ("[0]", "source"),
        ("[1]", "left"),
        ("[1]", "right"),
        ("[2]", "merge"),
    ]
    assert "(after left, right; timeout 10s)" in plan


# --- examples -----------------------------------------------------------------------------


async def run_in_process(spec: WorkflowSpec) -> dict[str, Any]:
    """Run ``spec`` step by step in this process (a stand-in for the runtime)."""
    results: dict[str, Any] = {}
    pending = list(spec.steps)
    while pending:
        step = next(s for s in pending if all(d in results for d in s.depends_on))
        pending.remove(step)
        fn = targets.resolve(step.run, import_paths=spec.import_paths)
        kwargs = {**step.args, **{dep: results[dep] for dep in step.depends_on}}
        value = fn(**kwargs)
        results[step.id] = await value if inspect.isawaitable(value) else value
        msgspec.msgpack.encode(results[step.id])  # results must be encodable
    return results


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.chdir(REPO)
    yield


@pytest.mark.usefixtures("in_repo")
@pytest.mark.parametrize(
    "name",
    ["fanout.toml", "wordcount.toml", "diamond.json", "diamond.yaml", "etl.toml"],
)
def test_examples_load(name: str) -> None:
    spec = load_workflow_spec(f"examples/{name}")
    assert spec.steps
    assert str(REPO / "examples") in spec.import_paths


def test_the_readme_file_format_example_is_examples_etl_toml() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("## Workflow files") :].split("```toml\n", 1)[1].split("```")[0]
    assert block in (REPO / "examples" / "etl.toml").read_text()


@pytest.mark.usefixtures("in_repo")
def test_every_example_workflow_is_tested() -> None:
    files = sorted(p.name for p in (REPO / "examples").iterdir() if p.suffix != ".py")
    expected = ["diamond.json", "diamond.yaml", "etl.toml", "fanout.toml", "templates", "texts"]
    assert files == [*expected, "wordcount.toml"]  # templates/: tests/test_templates.py


@pytest.mark.usefixtures("in_repo")
def test_diamond_json_and_yaml_are_the_same_workflow() -> None:
    json_spec = load_workflow_spec("examples/diamond.json")
    yaml_spec = load_workflow_spec("examples/diamond.yaml")
    assert msgspec.structs.replace(json_spec, source=None) == msgspec.structs.replace(
        yaml_spec, source=None
    )


@pytest.mark.usefixtures("in_repo")
async def test_fanout_example_sums_squares() -> None:
    results = await run_in_process(load_workflow_spec("examples/fanout.toml", {"n": 10}))
    assert results["join"]["total"] == sum(i * i for i in range(10))
    assert set(results["join"]["parts"]) == {"part_0", "part_1", "part_2"}


@pytest.mark.usefixtures("in_repo")
async def test_wordcount_example_counts_words() -> None:
    results = await run_in_process(load_workflow_spec("examples/wordcount.toml", {"top": 2}))
    assert [list(pair) for pair in results["reduce"]["top"]] == [["the", 7], ["a", 6]]
    assert results["reduce"]["words"] == sum(sum(results[f"count_{c}"].values()) for c in "abc")


@pytest.mark.usefixtures("in_repo")
async def test_diamond_example_merges_both_branches() -> None:
    results = await run_in_process(load_workflow_spec("examples/diamond.yaml", {"x": 5}))
    assert results["merge"] == (5 + 1) * (5 * 2)
