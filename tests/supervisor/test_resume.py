"""Resume after a fix, driven from the command line: a failed step's edited ``args`` are
taken and the upstream results reused; an edited function of a succeeded step runs again with
its dependents, and the resume says so; history and the total time survive the resume."""

from __future__ import annotations

import sys

import pytest

from mcpp.supervisor.replay import RunEnded, decode_record
from tests.runs_cli import (
    STEPS,
    document,
    journal_rows,
    mcpp,
    ran,
    steps_module,
    workflow,
)
from tests.world import World

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the world harness needs Linux"
)


# --- resume after a fix --------------------------------------------------------------------

CHAIN = """
[[steps]]
id = "first"
run = "wfsteps:first"
args = {{ delay = 0.3 }}

[[steps]]
id = "second"
run = "wfsteps:second"
depends_on = ["first"]
args = {{ ok = {ok} }}

[[steps]]
id = "third"
run = "wfsteps:third"
depends_on = ["second"]
args = {{ delay = 0.3 }}
"""


def test_resume_after_editing_the_failed_steps_args_reuses_upstream_and_keeps_history(
    world: World,
) -> None:
    steps_module(world)
    wf = workflow(world, CHAIN.format(ok="false"))
    failed = document(mcpp(world, "spawn", "--json", str(wf)))
    assert failed["status"] == "failed"
    assert failed["steps"]["second"]["error"]["message"] == "not ok yet: set ok = true"

    workflow(world, CHAIN.format(ok="true"))  # the fix, in the failed step's args
    done = mcpp(world, "resume", "last", "--json")
    resumed = document(done)
    assert done.returncode == 0, done.stderr
    assert "runs again" not in done.stderr  # nothing that succeeded changed
    assert resumed["run_id"] == failed["run_id"] and resumed["status"] == "succeeded"
    assert {s: r["result"] for s, r in resumed["steps"].items()} == {
        "first": 1,
        "second": 2,
        "third": 3,
    }
    assert ran(world) == {"first": 1, "second": 2, "third": 1}  # first's result was reused

    second = resumed["steps"]["second"]
    assert second["attempts"] == 2
    assert [(h["attempt"], h["session"], h["status"]) for h in second["history"]] == [
        (1, 1, "failed"),
        (2, 2, "succeeded"),
    ]
    assert second["history"][0]["error_type"] == "ValueError"
    assert second["history"][0]["error_message"] == "not ok yet: set ok = true"
    assert resumed["steps"]["first"]["history"] == failed["steps"]["first"]["history"]
    assert len(resumed["resumed_at"]) == 1 and resumed["resumed_at"][0].endswith("+00:00")

    # The run's duration is both sessions': the sum of what each session journalled.
    ended = [
        decode_record(data)
        for (data,) in journal_rows(world.home, "SELECT data FROM events WHERE kind='run_ended'")
    ]
    assert len(ended) == 2 and all(isinstance(e, RunEnded) for e in ended)
    assert ended[0].duration_s == failed["duration_s"]
    assert resumed["duration_s"] == round(sum(e.duration_s for e in ended), 6)
    assert resumed["duration_s"] > failed["duration_s"] + 0.3  # third slept 0.3 s in session 2
    listing = document(mcpp(world, "status", "--json"))["runs"]
    assert listing[0]["duration_s"] == resumed["duration_s"]
    assert document(mcpp(world, "status", failed["run_id"], "--json")) == resumed


EDITABLE = """
[[steps]]
id = "first"
run = "wfsteps:first"

[[steps]]
id = "second"
run = "wfsteps:second"
depends_on = ["first"]
args = { ok = true }

[[steps]]
id = "third"
run = "wfsteps:third"
depends_on = ["second"]

[[steps]]
id = "lone"
run = "wfsteps:lone"
"""


def test_editing_a_succeeded_steps_function_reruns_it_and_its_dependents_and_says_so(
    world: World,
) -> None:
    steps_module(world)
    (world.workdir / "broken").touch()
    wf = workflow(world, EDITABLE)
    failed = document(mcpp(world, "spawn", "--json", str(wf)))
    assert failed["status"] == "failed" and failed["steps"]["lone"]["status"] == "failed"
    assert failed["steps"]["third"]["result"] == 3

    steps_module(world, STEPS.replace("    time.sleep(delay)\n    return 1", "    return 10"))
    (world.workdir / "broken").unlink()
    done = mcpp(world, "resume", failed["run_id"][:8], "--json")
    resumed = document(done)
    assert done.returncode == 0, done.stderr
    assert "step 'first' runs again: its function's code changed (wfsteps:first)" in done.stderr
    assert "step 'second' runs again: upstream step 'first' runs again" in done.stderr
    assert "step 'third' runs again: upstream step 'second' runs again" in done.stderr
    assert "'lone' runs again" not in done.stderr  # it failed: it runs, nothing to say
    reasons = {s: r["rerun_because"] for s, r in resumed["steps"].items()}
    assert reasons == {
        "first": "its function's code changed (wfsteps:first)",
        "second": "upstream step 'first' runs again",
        "third": "upstream step 'second' runs again",
        "lone": None,
    }
    assert {s: r["result"] for s, r in resumed["steps"].items()} == {
        "first": 10,
        "second": 11,
        "third": 12,
        "lone": "lone",
    }
    assert ran(world) == {"first": 2, "second": 2, "third": 2, "lone": 2}

    again = mcpp(world, "resume", "last", "--json")  # succeeded, unchanged: nothing runs
    assert again.returncode == 0 and "runs again" not in again.stderr
    assert document(again) == resumed
    assert ran(world) == {"first": 2, "second": 2, "third": 2, "lone": 2}


RETRIED = """
[[steps]]
id = "first"
run = "wfsteps:first"

[[steps]]
id = "second"
run = "wfsteps:second"
depends_on = ["first"]
args = {{ ok = {ok} }}
retries = 1
"""


def test_a_resumed_session_numbers_attempts_on_with_a_log_each_and_its_own_retry_budget(
    world: World,
) -> None:
    steps_module(world)
    wf = workflow(world, RETRIED.format(ok="false"))
    first = document(mcpp(world, "spawn", "--json", str(wf)))
    assert [h["attempt"] for h in first["steps"]["second"]["history"]] == [1, 2]

    again = document(mcpp(world, "resume", "last", "--json"))  # not fixed yet: 2 more attempts
    assert [(h["attempt"], h["session"]) for h in again["steps"]["second"]["history"]] == [
        (1, 1),
        (2, 1),
        (3, 2),
        (4, 2),
    ]
    workflow(world, RETRIED.format(ok="true"))
    fixed = document(mcpp(world, "resume", "last", "--json"))
    assert fixed["status"] == "succeeded" and fixed["steps"]["second"]["attempts"] == 5
    assert ran(world) == {"first": 1, "second": 5}

    latest = mcpp(world, "logs", "last", "second")
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout == "second ok=True\n"  # the latest attempt's log alone
    for attempt in ("1", "2", "3", "4"):
        earlier = mcpp(world, "logs", "last", "second", "--attempt", attempt)
        assert earlier.stdout.startswith("second ok=False\n"), (attempt, earlier.stdout)
        assert "ok=True" not in earlier.stdout
