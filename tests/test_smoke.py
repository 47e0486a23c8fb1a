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


def test_import_mcpp_loads_the_library_only() -> None:
    # In a fresh interpreter: the CLI's and the actor layer's imports cost half a second.
    import subprocess
    import sys

    probe = (
        "import sys, mcpp; "
        "heavy = {'rich', 'argparse', 'sqlite3', 'trio', 'msgspec.yaml'} & set(sys.modules); "
        "layers = {m for m in sys.modules if m.startswith(('mcpp.actors', 'mcpp.cli'))}; "
        "print(sorted(heavy | layers))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"
    names = subprocess.run(
        [sys.executable, "-c", "import mcpp; print(all(hasattr(mcpp, n) for n in mcpp.__all__))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert names.stdout.strip() == "True"  # every exported name loads on first use
