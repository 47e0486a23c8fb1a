"""Typed parameters, versioned templates, composition by include, and the templates CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from mcpp.cli.main import main
from mcpp.errors import CycleError, WorkflowError
from mcpp.workflow.loader import dump_plan, load_workflow_spec
from mcpp.workflow.params import ParamText, parse_param_texts, resolve_params
from mcpp.workflow.templates import (
    TemplateRegistry,
    Version,
    default_template_dir,
    split_ref,
)
from tests.conftest import write_module

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "templates"

STEPS_SOURCE = """
def produce(rows=10):
    return list(range(rows))

def consume(produce, scale=1):
    return sum(produce) * scale

def gather(**results):
    return results

async def consume_async(produce):
    return len(produce)
"""


pytestmark = pytest.mark.usefixtures("restore_sys_path")


@pytest.fixture
def mod(tmp_path: Path) -> str:
    """A fresh module of step functions next to the workflow files; returns its name."""
    return write_module(tmp_path, STEPS_SOURCE, "tsteps")


def write(folder: Path, name: str, text: str, mod: str = "") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).replace("MOD", mod))
    return path


def declared(table: str) -> dict[str, Any]:
    """Parse a TOML ``[params]`` body."""
    import tomllib

    return tomllib.loads(textwrap.dedent(table))


def resolve_error(table: str, **overrides: Any) -> WorkflowError:
    with pytest.raises(WorkflowError) as info:
        resolve_params(declared(table), overrides)
    return info.value


# --- typed parameters ------------------------------------------------------------------------

ALL_TYPES = """
[s]
type = "string"
default = "a"
[i]
type = "integer"
default = 1
[n]
type = "number"
default = 2
[b]
type = "boolean"
default = false
[a]
type = "array"
default = [1, 2]
[o]
type = "object"
default = { k = 1 }
"""


def test_every_type_takes_its_default_and_a_valid_override() -> None:
    assert resolve_params(declared(ALL_TYPES), {}) == {
        "s": "a",
        "i": 1,
        "n": 2.0,
        "b": False,
        "a": [1, 2],
        "o": {"k": 1},
    }
    given = {"s": "x", "i": -5, "n": 1.5, "b": True, "a": ["q"], "o": {"z": [1]}}
    assert resolve_params(declared(ALL_TYPES), given) == given
    assert isinstance(resolve_params(declared(ALL_TYPES), {"n": 3})["n"], float)


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("s", 3, "must be a string, got 3"),
        ("i", 1.5, "must be an integer, got 1.5"),
        ("i", "7", "must be an integer, got '7'"),
        ("i", True, "must be an integer, got True"),
        ("n", True, "must be a finite number, got True"),
        ("n", False, "must be a finite number, got False"),
        ("n", "1.5", "must be a finite number"),
        ("n", float("inf"), "must be a finite number"),
        ("b", 1, "must be a boolean, got 1"),
        ("b", "true", "must be a boolean"),
        ("a", {"k": 1}, "must be an array"),
        ("a", "abc", "must be an array"),
        ("o", [1], "must be an object"),
    ],
)
def test_a_mistyped_value_names_the_param(name: str, value: Any, reason: str) -> None:
    err = resolve_error(ALL_TYPES, **{name: value})
    assert err.field == f"params.{name}"
    assert f"parameter {name!r} {reason}" in str(err)


def test_true_is_not_a_number_as_a_default_either() -> None:
    err = resolve_error('[n]\ntype = "number"\ndefault = true\n')
    assert err.field == "params.n"
    assert "invalid default" in err.reason and "must be a finite number, got True" in err.reason
    err = resolve_error('[i]\ntype = "integer"\ndefault = true\n')
    assert "must be an integer, got True" in err.reason


def test_pattern_must_match_the_whole_value() -> None:
    table = '[tag]\ntype = "string"\ndefault = "abc"\npattern = "[a-z]+"\n'
    assert resolve_params(declared(table), {"tag": "xyz"}) == {"tag": "xyz"}
    for bad in ("abc1", "1abc", "ab c", ""):
        err = resolve_error(table, tag=bad)
        assert err.field == "params.tag"
        assert "must match the pattern '[a-z]+' as a whole" in err.reason


def test_pattern_is_checked_against_the_default_and_only_for_strings() -> None:
    err = resolve_error('[t]\ntype = "string"\ndefault = "a1"\npattern = "[a-z]+"\n')
    assert err.field == "params.t" and "invalid default" in err.reason
    err = resolve_error('[t]\ntype = "integer"\ndefault = 1\npattern = "1"\n')
    assert "'pattern' applies to strings only" in err.reason
    err = resolve_error('[t]\ntype = "string"\npattern = "("\nrequired = false\n')
    assert "invalid pattern '('" in err.reason


def test_choices() -> None:
    table = '[mode]\ntype = "string"\ndefault = "sum"\nchoices = ["sum", "mean"]\n'
    assert resolve_params(declared(table), {"mode": "mean"}) == {"mode": "mean"}
    err = resolve_error(table, mode="max")
    assert err.field == "params.mode"
    assert "must be one of 'sum', 'mean', got 'max'" in err.reason
    err = resolve_error('[k]\ntype = "integer"\ndefault = 3\nchoices = [1, 2]\n')
    assert "invalid default" in err.reason and "must be one of 1, 2" in err.reason
    err = resolve_error('[k]\ntype = "integer"\nchoices = [1, "x"]\n')
    assert "must be an integer, got 'x'" in err.reason
    err = resolve_error('[k]\ntype = "integer"\nchoices = []\n')
    assert "'choices' is empty" in err.reason
    err = resolve_error('[k]\ntype = "number"\ndefault = 1.0\nchoices = [1.0, 2.0]\n', k=True)
    assert "must be a finite number, got True" in err.reason


def test_required_params() -> None:
    table = '[rows]\ntype = "integer"\n'  # no default: required
    err = resolve_error(table)
    assert err.field == "params.rows"
    assert "required parameter 'rows' is not given" in err.reason
    assert resolve_params(declared(table), {"rows": 4}) == {"rows": 4}
    optional = '[rows]\ntype = "integer"\nrequired = false\n'
    assert resolve_params(declared(optional), {}) == {"rows": None}
    err = resolve_error('[rows]\ntype = "integer"\nrequired = true\ndefault = 1\n')
    assert "required, so it cannot have a default" in err.reason


def test_declaration_errors() -> None:
    err = resolve_error('[x]\ntype = "float"\n')
    assert err.field == "params.x" and "invalid declaration of parameter 'x'" in err.reason
    err = resolve_error('[x]\ntype = "string"\ndefualt = "a"\n')
    assert err.field == "params.x" and "defualt" in err.reason
    err = resolve_error("[x]\ndefault = 1\ndescription = 'rows'\n")
    assert err.field == "params.x" and "has no 'type'" in err.reason


def test_plain_defaults_fix_the_type_next_to_typed_ones() -> None:
    table = 'rows = 10\nname = "n"\nthing = { a = 1 }\n[tag]\ntype = "string"\ndefault = "v"\n'
    values = resolve_params(declared(table), {"rows": 3, "name": "m"})
    assert values == {"rows": 3, "name": "m", "thing": {"a": 1}, "tag": "v"}
    err = resolve_error(table, rows=True)
    assert err.field == "params" and "must be an int (its default is 10)" in err.reason
    err = resolve_error(table, name=5)
    assert err.field == "params" and "must be a string (its default is 'n'), got 5" in err.reason
    err = resolve_error(table, thing=[1])
    assert err.field == "params" and "must be a table" in err.reason
    err = resolve_error(table, nope=1)
    assert err.field == "params" and "unknown parameter 'nope'" in err.reason


def test_command_line_text_is_parsed_by_the_declared_type() -> None:
    texts = parse_param_texts(["tag=1.10", "n=2", "b=true", "a=[1, 2]", "rows=7", "s=x"])
    assert all(isinstance(v, ParamText) for v in texts.values())
    table = """
    rows = 1
    s = "y"
    [tag]
    type = "string"
    default = "1.0"
    [n]
    type = "number"
    default = 0
    [b]
    type = "boolean"
    default = false
    [a]
    type = "array"
    default = []
    """
    values = resolve_params(declared(table), texts)
    assert values == {"rows": 7, "s": "x", "tag": "1.10", "n": 2.0, "b": True, "a": [1, 2]}
    assert type(values["tag"]) is str and type(values["s"]) is str
    err = resolve_error(table, n=ParamText("true"))
    assert "must be a finite number, got True" in err.reason
    with pytest.raises(WorkflowError, match="expected KEY=VALUE"):
        parse_param_texts(["novalue"])


def test_a_typed_param_error_in_a_file_names_the_file(tmp_path: Path, mod: str) -> None:
    path = write(
        tmp_path,
        "wf.toml",
        """
        [workflow]
        name = "wf"
        [params.rows]
        type = "integer"
        default = 3
        [[steps]]
        id = "produce"
        run = "MOD:produce"
        args = { rows = "${rows}" }
        """,
        mod,
    )
    assert load_workflow_spec(path).step("produce").args == {"rows": 3}
    assert load_workflow_spec(path, {"rows": 5}).params == {"rows": 5}
    with pytest.raises(WorkflowError) as info:
        load_workflow_spec(path, {"rows": True})
    assert info.value.file == str(path) and info.value.field == "params.rows"
    assert str(info.value).startswith(f"{path}: field 'params.rows': parameter 'rows'")


# --- versions --------------------------------------------------------------------------------


def test_versions_order_by_semver_precedence() -> None:
    ordered = [
        "0.9.0",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.2.0",
        "1.9.0",
        "1.10.0",
        "2.0.0",
    ]
    assert sorted(ordered, key=Version) == ordered
    assert Version("1.10.0") > Version("1.9.0")
    assert Version("1.0.0+build.5") == Version("1.0.0")
    assert Version("1.0.0-rc.1").prerelease and not Version("1.0.0").prerelease


@pytest.mark.parametrize("text", ["1.0", "1", "01.0.0", "1.0.0-", "v1.0.0", "1.0.0-01", ""])
def test_invalid_versions(text: str) -> None:
    with pytest.raises(WorkflowError, match="not a semantic version"):
        Version(text)


def test_split_ref() -> None:
    assert split_ref("etl") == ("etl", None)
    assert split_ref("etl@1.2.0") == ("etl", "1.2.0")
    for bad in ("@1.0.0", "etl@", ""):
        with pytest.raises(WorkflowError, match="invalid template reference"):
            split_ref(bad)


# --- the registry ----------------------------------------------------------------------------


def versioned(mod: str, name: str, version: str | None, extra: str = "") -> str:
    head = f'[workflow]\nname = "{name}"\n'
    if version:
        head += f'version = "{version}"\n'
    return head + extra + f'[[steps]]\nid = "produce"\nrun = "{mod}:produce"\n'


def test_registry_finds_the_newest_release_or_an_exact_version(tmp_path: Path, mod: str) -> None:
    for version in ("1.9.0", "1.10.0", "1.2.0", "2.0.0-rc.1"):
        (tmp_path / f"etl-{version}.toml").write_text(versioned(mod, "etl", version))
    (tmp_path / "other.json").write_text(
        json.dumps({"workflow": {"name": "other"}, "steps": [{"id": "a", "run": f"{mod}:x"}]})
    )
    (tmp_path / "broken.toml").write_text("[workflow\n")
    (tmp_path / "notes.txt").write_text("not a workflow")
    registry = TemplateRegistry(tmp_path)
    assert [t.ref for t in registry.templates()] == [
        "etl@2.0.0-rc.1",
        "etl@1.10.0",
        "etl@1.9.0",
        "etl@1.2.0",
        "other",
    ]
    assert registry.find("etl").version == "1.10.0"  # the newest release, not the rc
    assert registry.find("etl@1.9.0").path == str(tmp_path / "etl-1.9.0.toml")
    assert registry.find("etl@2.0.0-rc.1").version == "2.0.0-rc.1"
    assert registry.find("other").version is None
    [problem] = registry.problems
    assert problem.file == str(tmp_path / "broken.toml")
    with pytest.raises(WorkflowError, match=r"no version '3.0.0' \(versions: 2.0.0-rc.1, 1.10"):
        registry.find("etl@3.0.0")
    with pytest.raises(WorkflowError, match=r"unknown template 'nope'.*known: etl, other"):
        registry.find("nope")


def test_registry_rejects_two_files_with_one_version(tmp_path: Path, mod: str) -> None:
    (tmp_path / "a.toml").write_text(versioned(mod, "etl", "1.0.0"))
    (tmp_path / "b.toml").write_text(versioned(mod, "etl", "1.0.0"))
    with pytest.raises(WorkflowError, match=r"'etl@1\.0\.0' is defined twice"):
        TemplateRegistry(tmp_path).find("etl")


def test_a_bad_version_is_a_problem_and_a_load_error(tmp_path: Path, mod: str) -> None:
    path = tmp_path / "wf.toml"
    path.write_text(versioned(mod, "wf", "1.0"))
    [problem] = TemplateRegistry(tmp_path).problems
    assert problem.field == "workflow.version"
    with pytest.raises(WorkflowError) as info:
        load_workflow_spec(path)
    assert info.value.field == "workflow.version" and info.value.file == str(path)


def test_default_template_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCPP_TEMPLATES", raising=False)
    assert default_template_dir() == "templates"
    monkeypatch.setenv("MCPP_TEMPLATES", "/x/y")
    assert default_template_dir() == "/x/y"


# --- composition -----------------------------------------------------------------------------


def chain_template(mod: str, version: str = "1.0.0") -> str:
    return f"""
    [workflow]
    name = "chain"
    version = "{version}"
    [params.rows]
    type = "integer"
    default = 10
    [[steps]]
    id = "produce"
    run = "MOD:produce"
    args = {{ rows = "${{rows}}" }}
    [[steps]]
    id = "consume"
    run = "MOD:consume"
    depends_on = ["produce"]
    """


def test_include_prefixes_steps_and_renames_dependencies(tmp_path: Path, mod: str) -> None:
    write(tmp_path, "chain-1.0.0.toml", chain_template(mod), mod)
    write(tmp_path, "chain-1.1.0.toml", chain_template(mod, "1.1.0"), mod)
    path = write(
        tmp_path,
        "main.toml",
        """
        [workflow]
        name = "main"
        [params]
        n = 4
        [[include]]
        template = "chain@1.0.0"
        prefix = "a"
        params = { rows = "${n}" }
        [[include]]
        template = "chain"
        prefix = "b"
        [[steps]]
        id = "gather"
        run = "MOD:gather"
        depends_on = ["a_consume", "b_consume"]
        """,
        mod,
    )
    spec = load_workflow_spec(path)
    assert [s.id for s in spec.steps] == [
        "a_produce",
        "a_consume",
        "b_produce",
        "b_consume",
        "gather",
    ]
    assert spec.step("a_produce").args == {"rows": 4}
    assert spec.step("b_produce").args == {"rows": 10}
    consume = spec.step("a_consume")
    assert consume.depends_on == ("a_produce",)
    assert consume.run == f"{mod}:consume"  # the real function: the cache hashes it
    assert consume.args == {}
    assert consume.inputs == {"a_produce": "produce"}
    assert spec.step("gather").depends_on == ("a_consume", "b_consume")
    assert spec.params == {"n": 4}
    assert str(tmp_path) in spec.import_paths
    assert f"[1] a_consume  {mod}:consume  (after a_produce)" in dump_plan(spec)


def test_includes_nest_with_prefixes_on_prefixes(tmp_path: Path, mod: str) -> None:
    write(tmp_path, "chain.toml", chain_template(mod), mod)
    inner = tmp_path / "sub"
    inner.mkdir()
    write(
        inner,
        "middle.toml",
        """
        [workflow]
        name = "middle"
        [[include]]
        path = "../chain.toml"
        prefix = "c"
        params = { rows = 3 }
        [[steps]]
        id = "top"
        run = "MOD:gather"
        depends_on = ["c_consume"]
        """,
        mod,
    )
    path = write(
        tmp_path,
        "outer.toml",
        """
        [workflow]
        name = "outer"
        [[include]]
        path = "sub/middle.toml"
        prefix = "m"
        [[steps]]
        id = "last"
        run = "MOD:gather"
        depends_on = ["m_top", "m_c_produce"]
        """,
        mod,
    )
    spec = load_workflow_spec(path)
    assert [s.id for s in spec.steps] == ["m_c_produce", "m_c_consume", "m_top", "last"]
    assert spec.step("m_c_consume").depends_on == ("m_c_produce",)
    assert spec.step("m_c_consume").inputs == {"m_c_produce": "produce"}
    assert spec.step("m_c_consume").run == f"{mod}:consume"
    assert spec.step("m_top").inputs == {"m_c_consume": "c_consume"}
    assert spec.step("m_c_produce").args == {"rows": 3}


def test_an_include_cycle_names_every_file(tmp_path: Path, mod: str) -> None:
    body = '[[steps]]\nid = "s"\nrun = "MOD:produce"\n'
    write(
        tmp_path,
        "a.toml",
        '[workflow]\nname = "a"\n[[include]]\npath = "b.toml"\nprefix = "b"\n' + body,
        mod,
    )
    write(
        tmp_path,
        "b.toml",
        '[workflow]\nname = "b"\n[[include]]\npath = "a.toml"\nprefix = "a"\n' + body,
        mod,
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow_spec(tmp_path / "a.toml")
    err = info.value
    assert "include cycle: " in err.reason
    assert err.reason.endswith("a.toml -> b.toml -> a.toml")
    assert err.file == str(tmp_path / "b.toml") and err.field == "include[0]"
    path = write(
        tmp_path,
        "self.toml",
        '[workflow]\nname = "s"\n[[include]]\ntemplate = "s"\nprefix = "s"\n' + body,
        mod,
    )
    with pytest.raises(WorkflowError, match=r"include cycle: .*self.toml -> s$"):
        load_workflow_spec(path)


def composed(tmp_path: Path, mod: str, steps: str, include: str = "") -> WorkflowError:
    write(tmp_path, "chain.toml", chain_template(mod), mod)
    text = '[workflow]\nname = "wf"\n' + (
        include or '[[include]]\npath = "chain.toml"\nprefix = "c"\n'
    )
    path = write(tmp_path, "wf.toml", text + textwrap.dedent(steps), mod)
    with pytest.raises(WorkflowError) as info:
        load_workflow_spec(path)
    return info.value


def test_the_composed_workflow_is_validated_again(tmp_path: Path, mod: str) -> None:
    dup = composed(tmp_path, mod, '[[steps]]\nid = "c_produce"\nrun = "MOD:produce"\n')
    assert dup.step == "c_produce" and dup.field == "id" and "more than once" in dup.reason
    unknown = composed(
        tmp_path, mod, '[[steps]]\nid = "x"\nrun = "MOD:consume"\ndepends_on = ["produce"]\n'
    )
    assert unknown.step == "x" and "unknown dependency 'produce'" in unknown.reason
    sig = composed(
        tmp_path, mod, '[[steps]]\nid = "x"\nrun = "MOD:consume"\ndepends_on = ["c_produce"]\n'
    )
    assert sig.step == "x" and "no keyword argument 'c_produce'" in sig.reason


def test_include_entry_errors(tmp_path: Path, mod: str) -> None:
    step = '[[steps]]\nid = "x"\nrun = "MOD:produce"\n'
    both = composed(
        tmp_path, mod, step, '[[include]]\npath = "chain.toml"\ntemplate = "chain"\nprefix = "c"\n'
    )
    assert both.field == "include[0]" and "exactly one of 'template' and 'path'" in both.reason
    bad = composed(tmp_path, mod, step, '[[include]]\npath = "chain.toml"\nprefix = "1x"\n')
    assert "prefix '1x' must be an identifier" in bad.reason
    missing = composed(tmp_path, mod, step, '[[include]]\ntemplate = "nope@1.0.0"\nprefix = "c"\n')
    assert missing.field == "include[0]" and "unknown template 'nope'" in missing.reason
    param = composed(
        tmp_path,
        mod,
        step,
        '[[include]]\npath = "chain.toml"\nprefix = "c"\nparams = { rows = "x" }\n',
    )
    assert param.file == str(tmp_path / "chain.toml") and param.field == "params.rows"
    typo = composed(
        tmp_path,
        mod,
        step,
        '[[include]]\npath = "chain.toml"\nprefix = "c"\nparams = { rows = "${nope}" }\n',
    )
    assert typo.field == "include[0]" and "undefined parameter 'nope'" in typo.reason


# --- the examples and the CLI ----------------------------------------------------------------


def test_the_example_templates_load() -> None:
    registry = TemplateRegistry(EXAMPLES)
    assert [t.ref for t in registry.templates()] == ["etl@1.0.0", "report@1.0.0"]
    assert not registry.problems
    spec = load_workflow_spec(registry.find("report").path, {"big_rows": 5})
    assert spec.step("big_extract").args == {"rows": 5, "label": "big"}
    assert spec.step("summarize").depends_on == ("small_load", "big_load")


def test_templates_ls_and_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["templates", "ls", "--dir", str(EXAMPLES), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["name"], t["version"]) for t in listed["templates"]] == [
        ("etl", "1.0.0"),
        ("report", "1.0.0"),
    ]
    assert main(["templates", "show", "etl", "--dir", str(EXAMPLES), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["params"]["mode"] == {
        "type": "string",
        "required": False,
        "default": "sum",
        "description": "how load reduces the numbers",
        "choices": ["sum", "mean"],
    }
    assert shown["steps"] == ["extract", "transform", "load"]
    assert main(["templates", "show", "report@1.0.0", "--dir", str(EXAMPLES)]) == 0
    text = capsys.readouterr().out
    assert "big_rows: integer; required" in text and "includes: etl@1.0.0, etl@1.0.0" in text
    assert main(["templates", "show", "etl@9.9.9", "--dir", str(EXAMPLES)]) == 2
    assert "no version '9.9.9'" in capsys.readouterr().err


def test_spawn_dry_run_of_a_template_by_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPP_TEMPLATES", str(EXAMPLES))
    assert main(["spawn", "report", "--param", "big_rows=3", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "workflow 'report'" in plan and "big_rows=3" in plan
    assert main(["spawn", "etl@1.0.0", "--param", "mode=max", "--dry-run"]) == 2
    assert "must be one of 'sum', 'mean', got 'max'" in capsys.readouterr().err
    assert main(["spawn", "report", "--dry-run"]) == 2
    assert "required parameter 'big_rows' is not given" in capsys.readouterr().err
    assert main(["spawn", "nosuch", "--dry-run"]) == 2
    assert "unknown template 'nosuch'" in capsys.readouterr().err


def test_include_cycle_is_a_cycle_of_files_not_a_step_cycle(tmp_path: Path, mod: str) -> None:
    body = '[[steps]]\nid = "s"\nrun = "MOD:produce"\n'
    path = write(
        tmp_path,
        "me.toml",
        '[workflow]\nname = "me"\n[[include]]\npath = "me.toml"\nprefix = "m"\n' + body,
        mod,
    )
    with pytest.raises(WorkflowError) as info:
        load_workflow_spec(path)
    assert not isinstance(info.value, CycleError)
    assert info.value.reason.endswith("me.toml -> me.toml")


def test_a_composed_template_runs_for_real(tmp_path: Path, no_leftovers: None) -> None:
    env = {**os.environ, "MCPP_TEMPLATES": str(EXAMPLES), "MCPP_HOME": str(tmp_path)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mcpp.supervisor",
            "spawn",
            "report",
            "--json",
            "--no-journal",
            "--param",
            "big_rows=4",
        ],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert steps["big_load"]["result"] == {"label": "big", "mean": 1.5}
    assert steps["summarize"]["result"] == {
        "reports": {
            "big_load": {"label": "big", "mean": 1.5},
            "small_load": {"label": "small", "sum": 45.0},
        }
    }
