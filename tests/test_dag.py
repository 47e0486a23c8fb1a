"""mcpp.dag: graph validation, structure queries, exports and the run state machine."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcpp.dag import Graph, RunState, StepState, export
from mcpp.dag.heuristics import critical_path, effective_priority, levels
from mcpp.errors import CycleError, WorkflowError
from mcpp.status import LOOKS

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


@st.composite
def dags(draw: st.DrawFn, max_steps: int = 25) -> dict[str, list[str]]:
    """A random DAG in a random definition order (so the order does not give the answer)."""
    n = draw(st.integers(0, max_steps))
    names = [f"s{i}" for i in range(n)]
    deps = {
        names[i]: draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        for i in range(n)
    }
    order = draw(st.permutations(names))
    return {name: deps[name] for name in order}


def drive(run: RunState, pick_failure: st.DataObject | random.Random) -> None:
    """Run to the end, succeeding or failing each running step at random."""
    while run.is_active():
        run.get_ready()
        running = run.running()
        assert running
        if isinstance(pick_failure, random.Random):
            step, ok = pick_failure.choice(running), pick_failure.random() > 0.1
        else:
            step = pick_failure.draw(st.sampled_from(running))
            ok = pick_failure.draw(st.booleans())
        if ok:
            run.done(step)
        else:
            run.fail(step)


# -- validation ------------------------------------------------------------------------------


def test_unknown_dependency_names_step_field_and_unknown_id() -> None:
    with pytest.raises(WorkflowError) as info:
        Graph({"a": [], "b": ["a", "nope"]})
    assert (info.value.step, info.value.field) == ("b", "depends_on")
    assert str(info.value) == "step 'b', field 'depends_on': unknown dependency 'nope'"


def test_self_dependency_is_rejected() -> None:
    with pytest.raises(WorkflowError) as info:
        Graph({"a": ["a"]})
    assert (info.value.step, info.value.field) == ("a", "depends_on")
    assert "step 'a', field 'depends_on'" in str(info.value)
    assert "itself" in str(info.value)
    assert not isinstance(info.value, CycleError)


def test_duplicate_dependency_is_rejected() -> None:
    with pytest.raises(WorkflowError) as info:
        Graph({"a": [], "b": ["a", "a"]})
    assert (info.value.step, info.value.field) == ("b", "depends_on")
    assert "step 'b', field 'depends_on'" in str(info.value)
    assert "'a' is listed more than once" in str(info.value)


def test_a_string_is_not_a_dependency_list() -> None:
    with pytest.raises(WorkflowError, match="not a string") as info:
        Graph({"a": [], "b": "a"})
    assert (info.value.step, info.value.field) == ("b", "depends_on")


def test_first_error_in_definition_order_is_reported() -> None:
    with pytest.raises(WorkflowError, match=r"step 'b'.*unknown dependency 'x'"):
        Graph({"a": [], "b": ["x", "b"], "c": ["c"]})


def test_from_pairs_rejects_a_duplicate_id() -> None:
    with pytest.raises(WorkflowError) as info:
        Graph.from_pairs([("a", []), ("b", ["a"]), ("a", [])])
    assert (info.value.step, info.value.field) == ("a", "id")
    assert str(info.value) == "step 'a', field 'id': step id is defined more than once"


def test_from_pairs_keeps_definition_order() -> None:
    graph = Graph.from_pairs([("z", []), ("a", ["z"]), ("m", [])])
    assert graph.steps == ("z", "a", "m")
    assert graph.dependencies("a") == ("z",)


def test_two_step_cycle_shows_its_path() -> None:
    with pytest.raises(CycleError) as info:
        Graph({"a": ["b"], "b": ["a"]})
    assert info.value.cycle == ("a", "b", "a")
    assert "a -> b -> a" in str(info.value)
    assert (info.value.step, info.value.field) == ("a", "depends_on")


def test_longer_cycle_starts_at_its_earliest_step_and_follows_depends_on() -> None:
    # ok is fine; x depends on z, y on x, z on y: x -> z -> y -> x; w hangs below the cycle.
    with pytest.raises(CycleError) as info:
        Graph({"ok": [], "w": ["y"], "x": ["ok", "z"], "y": ["x"], "z": ["y"]})
    assert info.value.cycle == ("x", "z", "y", "x")
    assert str(info.value) == "step 'x', field 'depends_on': dependency cycle: x -> z -> y -> x"


@given(dags(), st.data())
def test_any_added_back_edge_is_reported_as_a_real_cycle(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    graph = Graph(deps)
    pairs = [(s, d) for s in graph.steps for d in graph.descendants(s)]
    if not pairs:
        return
    upstream, downstream = data.draw(st.sampled_from(pairs))
    deps[upstream] = [*deps[upstream], downstream]  # upstream now also waits for downstream
    with pytest.raises(CycleError) as info:
        Graph(deps)
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and len(set(cycle)) == len(cycle) - 1
    for step, needs in itertools.pairwise(cycle):
        assert needs in deps[step]


# -- structure -------------------------------------------------------------------------------


def test_queries_on_a_diamond() -> None:
    graph = Graph(DIAMOND)
    assert graph.steps == ("a", "b", "c", "d")
    assert len(graph) == 4 and "d" in graph and "e" not in graph
    assert graph.dependencies("d") == ("b", "c")
    assert graph.dependents("a") == ("b", "c")
    assert graph.ancestors("d") == {"a", "b", "c"}
    assert graph.descendants("b") == {"d"}
    assert levels(graph) == (("a",), ("b", "c"), ("d",))
    with pytest.raises(KeyError, match="unknown step 'e'"):
        graph.dependents("e")


def test_topological_order_breaks_ties_by_definition_order() -> None:
    graph = Graph({"late": ["early"], "free": [], "early": [], "last": ["late", "free"]})
    assert graph.topological_order() == ("free", "early", "late", "last")
    assert Graph({}).topological_order() == ()


def test_levels_use_the_longest_path() -> None:
    graph = Graph({"a": [], "b": ["a"], "c": ["b"], "d": ["a", "c"], "e": []})
    assert levels(graph) == (("a", "e"), ("b",), ("c",), ("d",))


@given(dags())
def test_topological_order_respects_every_edge(deps: dict[str, list[str]]) -> None:
    graph = Graph(deps)
    order = graph.topological_order()
    assert sorted(order) == sorted(deps)
    position = {step: i for i, step in enumerate(order)}
    for step, needs in deps.items():
        for dep in needs:
            assert position[dep] < position[step]


@given(dags())
def test_topological_order_takes_the_earliest_defined_available_step(
    deps: dict[str, list[str]],
) -> None:
    graph = Graph(deps)
    placed: set[str] = set()
    for step in graph.topological_order():
        available = [s for s in deps if s not in placed and set(deps[s]) <= placed]
        assert step == available[0]
        placed.add(step)


def test_a_definition_order_that_respects_the_edges_is_kept() -> None:
    assert Graph(DIAMOND).topological_order() == ("a", "b", "c", "d")
    assert Graph({"b": ["a"], "a": []}).topological_order() == ("a", "b")


@given(dags())
def test_levels_are_consistent_with_edges(deps: dict[str, list[str]]) -> None:
    groups = levels(Graph(deps))
    level = {step: k for k, group in enumerate(groups) for step in group}
    assert sorted(level) == sorted(deps)
    for step, needs in deps.items():
        assert level[step] == (1 + max(level[d] for d in needs) if needs else 0)


@given(dags())
def test_ancestors_and_descendants_mirror_each_other(deps: dict[str, list[str]]) -> None:
    graph = Graph(deps)
    for step in graph.steps:
        assert set(graph.dependencies(step)) <= graph.ancestors(step)
        for up in graph.ancestors(step):
            assert step in graph.descendants(up)


def test_critical_path_counts_steps_by_default() -> None:
    graph = Graph({"a": [], "b": ["a"], "c": ["b"], "d": ["a"], "lone": []})
    assert critical_path(graph) == {"a": 3.0, "b": 2.0, "c": 1.0, "d": 1.0, "lone": 1.0}


def test_critical_path_weights_by_duration() -> None:
    graph = Graph(DIAMOND)
    path = critical_path(graph, {"a": 2.0, "b": 1.0, "c": 10.0, "d": 0.5})
    assert path == {"a": 12.5, "b": 1.5, "c": 10.5, "d": 0.5}
    with pytest.raises(ValueError, match=">= 0"):
        critical_path(graph, {"a": -1.0})
    with pytest.raises(KeyError):
        critical_path(graph, {"zzz": 1.0})


def test_effective_priority_is_inherited_from_dependents() -> None:
    graph = Graph({"a": [], "b": ["a"], "c": ["a"], "d": ["b"], "other": []})
    assert effective_priority(graph, {"d": 7, "c": 3, "other": -1}) == {
        "a": 7,
        "b": 7,
        "c": 3,
        "d": 7,
        "other": -1,
    }
    assert effective_priority(graph, {"a": 9}) == {"a": 9, "b": 0, "c": 0, "d": 0, "other": 0}


# -- exports ---------------------------------------------------------------------------------


def test_json_export_round_trips() -> None:
    graph = Graph(DIAMOND)
    doc = json.loads(export.to_json(graph, {"a": StepState.SUCCEEDED, "b": StepState.FAILED}))
    assert doc["nodes"] == [
        {"id": "a", "state": "succeeded"},
        {"id": "b", "state": "failed"},
        {"id": "c", "state": None},
        {"id": "d", "state": None},
    ]
    assert doc["edges"] == [
        {"from": "a", "to": "b"},
        {"from": "a", "to": "c"},
        {"from": "b", "to": "d"},
        {"from": "c", "to": "d"},
    ]


def test_dot_export_has_every_node_and_edge_and_colours_states() -> None:
    dot = export.to_dot(Graph(DIAMOND), {"d": StepState.SKIPPED}, name="etl")
    lines = dot.splitlines()
    assert lines[0] == 'digraph "etl" {' and lines[-1] == "}"
    assert re.findall(r'^  "(\w)" -> "(\w)";$', dot, re.M) == [
        ("a", "b"),
        ("a", "c"),
        ("b", "d"),
        ("c", "d"),
    ]
    assert '  "a";' in lines
    assert '  "d" [label="d\\nskipped", fillcolor="#d0d0d0"];' in lines


def test_dot_export_quotes_awkward_ids() -> None:
    dot = export.to_dot(Graph({'say "hi"': [], "b\\": ['say "hi"']}))
    assert '  "say \\"hi\\"" -> "b\\\\";' in dot.splitlines()


def test_mermaid_export_shape() -> None:
    text = export.to_mermaid(Graph({"a": [], 'q"t': ["a"]}), {"a": StepState.RUNNING})
    assert text.splitlines() == [
        "flowchart LR",
        '  s0["a"]',
        '  s1["q#quot;t"]',
        "  s0 --> s1",
        "  classDef running fill:#9ecbff,stroke:#333",
        "  class s0 running",
    ]


def test_exports_reject_states_of_unknown_steps() -> None:
    with pytest.raises(KeyError):
        export.to_json(Graph(DIAMOND), {"zzz": StepState.FAILED})


# -- run state -------------------------------------------------------------------------------


def test_step_state_values_and_finished() -> None:
    assert [s.value for s in StepState] == [
        "pending",
        "ready",
        "running",
        "succeeded",
        "failed",
        "timed_out",
        "skipped",
        "cancelled",
    ]
    assert {s for s in StepState if s.finished} == {
        StepState.SUCCEEDED,
        StepState.FAILED,
        StepState.TIMED_OUT,
        StepState.SKIPPED,
        StepState.CANCELLED,
    }
    # One vocabulary: the members are the strings of the JSON documents, and every one has
    # its look (graph fill, terminal style).
    assert StepState.TIMED_OUT == "timed_out" and set(LOOKS) == set(StepState)


def test_run_passes_out_each_step_once_as_its_own_dependencies_finish() -> None:
    run = Graph({"a": [], "slow": [], "b": ["a"], "c": ["b", "slow"]}).run_state()
    assert run.state("a") is StepState.READY and run.state("b") is StepState.PENDING
    assert run.get_ready() == ("a", "slow")
    assert run.get_ready() == ()
    assert run.running() == ("a", "slow")
    run.done("a")
    assert run.state("b") is StepState.READY
    assert run.get_ready() == ("b",)  # slow still running: b does not wait for it
    run.done("b")
    assert run.get_ready() == ()
    run.done("slow")
    assert run.get_ready() == ("c",)
    assert run.is_active()
    run.done("c")
    assert not run.is_active()
    assert set(run.states().values()) == {StepState.SUCCEEDED}
    assert run.counts()[StepState.SUCCEEDED] == 4 and sum(run.counts().values()) == 4


def test_get_ready_returns_definition_order_whatever_the_finish_order() -> None:
    run = Graph({"x": [], "y": [], "z": [], "p": ["z"], "q": ["y"], "r": ["x"]}).run_state()
    run.get_ready()
    for step in ("x", "y", "z"):
        run.done(step)
    assert run.get_ready() == ("p", "q", "r")


def test_misuse_raises_value_error() -> None:
    run = Graph({"a": [], "b": ["a"]}).run_state()
    with pytest.raises(ValueError, match=re.escape("step 'a' was not passed out by get_ready()")):
        run.done("a")
    with pytest.raises(ValueError, match="step 'b' was not passed out"):
        run.fail("b")
    with pytest.raises(ValueError, match="unknown step 'zzz'"):
        run.cancel("zzz")
    run.get_ready()
    run.done("a")
    with pytest.raises(ValueError, match="step 'a' is already succeeded"):
        run.done("a")
    with pytest.raises(KeyError):
        run.state("zzz")


def test_fail_skips_descendants_and_records_the_cause() -> None:
    graph = Graph({"a": [], "b": ["a"], "c": ["b"], "d": ["c", "e"], "e": [], "f": ["e"]})
    run = graph.run_state()
    assert run.get_ready() == ("a", "e")
    assert run.fail("a") == ("b", "c", "d")
    assert run.skipped_because("d") == "a"
    assert run.skipped_because("a") is None and run.skipped_because("e") is None
    run.done("e")
    assert run.get_ready() == ("f",)  # unrelated work carries on
    run.done("f")
    assert not run.is_active()
    assert run.counts()[StepState.SKIPPED] == 3


def test_cancel_skips_descendants_like_fail() -> None:
    run = Graph(DIAMOND).run_state()
    run.get_ready()
    run.done("a")
    run.get_ready()
    assert run.cancel("b") == ("d",)
    assert run.state("b") is StepState.CANCELLED
    assert run.skipped_because("d") == "b"
    assert run.fail("c") == ()  # d already skipped; keeps its first cause
    assert run.skipped_because("d") == "b"
    assert not run.is_active()


def test_skip_remaining_skips_what_was_not_passed_out() -> None:
    run = Graph({"a": [], "b": [], "c": ["a"], "d": []}).run_state()
    assert run.get_ready() == ("a", "b", "d")
    run.fail("b")
    assert run.skip_remaining(because="b") == ("c",)
    assert run.skipped_because("c") == "b"
    assert run.running() == ("a", "d")
    run.cancel("a")
    run.done("d")
    assert not run.is_active()
    assert run.get_ready() == ()


def test_skip_remaining_includes_ready_steps() -> None:
    run = Graph({"a": [], "b": []}).run_state()
    assert run.skip_remaining() == ("a", "b")
    assert run.skipped_because("a") is None
    assert run.get_ready() == () and not run.is_active()


def test_resume_starts_from_completed_steps() -> None:
    run = Graph(DIAMOND).run_state(completed=["a", "b"])
    assert run.state("b") is StepState.SUCCEEDED
    assert run.get_ready() == ("c",)
    run.done("c")
    assert run.get_ready() == ("d",)
    all_done = Graph(DIAMOND).run_state(completed=DIAMOND)
    assert not all_done.is_active() and all_done.get_ready() == ()


def test_resume_rejects_a_completed_step_with_an_unfinished_dependency() -> None:
    with pytest.raises(ValueError, match="step 'b' is completed but its dependency 'a' is not"):
        Graph(DIAMOND).run_state(completed=["b"])
    with pytest.raises(KeyError):
        Graph(DIAMOND).run_state(completed=["zzz"])


def test_states_is_a_read_only_snapshot() -> None:
    run = Graph(DIAMOND).run_state()
    snapshot = run.states()
    run.get_ready()
    assert snapshot["a"] is StepState.READY
    with pytest.raises(TypeError):
        snapshot["a"] = StepState.FAILED  # type: ignore[index]


@given(dags(), st.data())
def test_fail_skips_exactly_the_unfinished_descendants(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    graph = Graph(deps)
    run = graph.run_state()
    while run.is_active():
        run.get_ready()
        step = data.draw(st.sampled_from(run.running()))
        if not data.draw(st.booleans()):
            run.done(step)
            continue
        before = run.states()
        expected = {d for d in graph.descendants(step) if not before[d].finished}
        skipped = run.fail(step)
        assert set(skipped) == expected and len(skipped) == len(expected)
        order = graph.topological_order()
        assert list(skipped) == sorted(skipped, key=order.index)
        assert all(run.skipped_because(d) == step for d in skipped)


@given(dags(), st.data())
def test_a_run_always_ends_with_every_step_finished(
    deps: dict[str, list[str]], data: st.DataObject
) -> None:
    graph = Graph(deps)
    run = graph.run_state()
    drive(run, data)
    assert not run.is_active()
    states = run.states()
    assert all(state.finished for state in states.values())
    for step, state in states.items():
        if state is StepState.SUCCEEDED:
            assert all(states[d] is StepState.SUCCEEDED for d in graph.dependencies(step))
        if state is StepState.SKIPPED:
            cause = run.skipped_because(step)
            assert cause in graph.ancestors(step)
            assert states[cause] is StepState.FAILED
    counts = run.counts()
    assert sum(counts.values()) == len(deps)
    assert counts[StepState.PENDING] == counts[StepState.READY] == counts[StepState.RUNNING] == 0


# -- size ------------------------------------------------------------------------------------

N = 100_000


def chain(n: int) -> dict[str, list[str]]:
    return {f"s{i}": [f"s{i - 1}"] if i else [] for i in range(n)}


def random_dag(n: int, seed: int = 1) -> dict[str, list[str]]:
    rng = random.Random(seed)
    deps = {
        f"s{i}": [f"s{j}" for j in set(rng.randrange(i) for _ in range(3))] if i else []
        for i in range(n)
    }
    names = list(deps)
    rng.shuffle(names)
    return {name: deps[name] for name in names}


@pytest.mark.parametrize("make", [chain, random_dag], ids=["chain", "random"])
def test_100k_steps_build_sort_and_run(
    make: Callable[[int], dict[str, list[str]]], capsys: pytest.CaptureFixture[str]
) -> None:
    deps = make(N)
    started = time.perf_counter()
    graph = Graph(deps)
    order = graph.topological_order()
    built = time.perf_counter()
    run = graph.run_state()
    while run.is_active():
        for step in run.get_ready():
            run.done(step)
    finished = time.perf_counter()
    assert len(order) == N
    assert run.counts()[StepState.SUCCEEDED] == N
    assert len(levels(graph)) >= 1 and len(critical_path(graph)) == N
    with capsys.disabled():
        print(f"\n{make.__name__}: build+sort {built - started:.3f}s, run {finished - built:.3f}s")
