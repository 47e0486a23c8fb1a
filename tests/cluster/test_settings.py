"""Dask mode's settings: the scheduler address, where it may be given, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import mcpp
from mcpp.cluster.launcher import ENV, scheduler_address
from mcpp.errors import WorkflowError
from mcpp.workflow.loader import dump_plan, load_workflow_spec
from mcpp.workflow.spec import StepSpec, WorkflowSpec, check_scheduler, check_spec


@pytest.mark.parametrize(
    ("address", "parts"),
    [
        ("tcp://127.0.0.1:8786", ("tcp", "127.0.0.1", 8786)),
        ("tls://sched.example:443", ("tls", "sched.example", 443)),
        ("tcp://[::1]:8786", ("tcp", "::1", 8786)),
    ],
)
def test_a_scheduler_address_splits_into_scheme_host_and_port(
    address: str, parts: tuple[str, str, int]
) -> None:
    assert check_scheduler(address) == parts


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1:8786",
        "udp://h:1",
        "tcp://h",
        "tcp://:8786",
        "tcp://h:0",
        "tcp://h:x",
        "tcp://h:1/p",
    ],
)
def test_other_forms_are_an_error_naming_the_field(address: str) -> None:
    with pytest.raises(WorkflowError, match="invalid Dask scheduler address") as caught:
        check_scheduler(address)
    assert caught.value.field == "scheduler"


def write(tmp_path: Path, workflow: str) -> Path:
    path = tmp_path / "wf.toml"
    path.write_text(
        f'[workflow]\nname = "w"\n{workflow}\n\n[[steps]]\nid = "a"\nrun = "os:getpid"\n'
    )
    return path


def test_a_file_names_its_scheduler(tmp_path: Path) -> None:
    spec = load_workflow_spec(write(tmp_path, 'actors = "dask"\nscheduler = "tls://h:8786"'))
    assert (spec.actors, spec.scheduler) == ("dask", "tls://h:8786")
    assert "scheduler=tls://h:8786" in dump_plan(spec)


def test_a_scheduler_outside_dask_mode_is_an_error_naming_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, 'scheduler = "tcp://h:8786"')
    with pytest.raises(WorkflowError, match="only with actors = 'dask'") as caught:
        load_workflow_spec(path)
    assert (caught.value.file, caught.value.field) == (str(path), "scheduler")


def test_a_bad_address_in_a_file_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, 'actors = "dask"\nscheduler = "h:8786"')
    with pytest.raises(WorkflowError, match="expected tcp://HOST:PORT") as caught:
        load_workflow_spec(path)
    assert (caught.value.file, caught.value.field) == (str(path), "scheduler")


def test_the_python_api_takes_a_scheduler() -> None:
    wf = mcpp.Workflow("w", actors="dask", scheduler="tcp://127.0.0.1:8786")
    wf.add_step("a", "os:getpid")
    assert wf.spec().scheduler == "tcp://127.0.0.1:8786"


def spec(scheduler: str | None = None) -> WorkflowSpec:
    step = StepSpec(id="a", run="os:getpid")
    return check_spec(WorkflowSpec(name="w", steps=(step,), actors="dask", scheduler=scheduler))


def test_the_spec_comes_before_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "tcp://from-env:1")
    assert scheduler_address(spec("tcp://from-spec:2")) == "tcp://from-spec:2"
    assert scheduler_address(spec()) == "tcp://from-env:1"
    monkeypatch.delenv(ENV)
    assert scheduler_address(spec()) is None  # a local cluster


def test_a_bad_address_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ENV, "nonsense")
    with pytest.raises(WorkflowError) as caught:
        scheduler_address(spec())
    assert caught.value.field == ENV
