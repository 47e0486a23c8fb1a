"""The package imports and pins its error hierarchy."""

import mcpp.errors as errors


def test_workflow_error_names_file_step_and_field() -> None:
    err = errors.WorkflowError("must be a number", file="wf.toml", step="a", field="timeout")
    assert str(err) == "wf.toml: step 'a', field 'timeout': must be a number"
    assert isinstance(err, ValueError)


def test_cycle_error_shows_the_path() -> None:
    err = errors.CycleError(["a", "b", "a"])
    assert "a -> b -> a" in str(err)
    assert err.cycle == ("a", "b", "a")
