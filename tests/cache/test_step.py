"""Step result caching: identities, keys, hits and misses, TTLs, the ``cache`` CLI, end to end."""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mcpp.cache import open_cache
from mcpp.cache.step import StepCache, identities
from mcpp.errors import WorkflowError
from mcpp.workflow.spec import StepSpec, WorkflowSpec

REPO = Path(__file__).resolve().parents[2]

VERSION_1 = """
def load(n, scale=1):
    return [i * scale for i in range(n)]

def total(load):
    return sum(load)

def nothing(load):
    return None
"""

VERSION_2 = VERSION_1.replace("return sum(load)", "return sum(load) + 0  # same value, new code")


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def encode(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


class Module:
    """A step module written into a temporary folder, under a name unique to the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = f"stepcache_{uuid.uuid4().hex}"
        self.write(VERSION_1)

    def write(self, source: str) -> None:
        """Replace the module's source; the next :func:`identities` call imports it afresh."""
        (self.folder / f"{self.name}.py").write_text(textwrap.dedent(source))
        sys.modules.pop(self.name, None)
        importlib.invalidate_caches()

    def spec(self, *steps: StepSpec) -> WorkflowSpec:
        return WorkflowSpec(name="t", steps=steps, import_paths=(str(self.folder),))

    def step(self, step_id: str, fn: str, **options: Any) -> StepSpec:
        return StepSpec(id=step_id, run=f"{self.name}:{fn}", **options)


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Module]:
    monkeypatch.setattr(sys, "path", list(sys.path))  # identities() prepends import paths
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    folder = tmp_path / "modules"
    folder.mkdir()
    made = Module(folder)
    yield made
    sys.modules.pop(made.name, None)


def open_step_cache(
    spec: WorkflowSpec, path: Path, clock: Callable[[], float] | None = None
) -> StepCache:
    """A StepCache as one run's coordinator would open it."""
    options = {} if clock is None else {"clock": clock}
    return StepCache(spec, identities(spec), path, **options).open()


# --- identities -------------------------------------------------------------------------------


def test_identities_cover_only_the_cached_steps(module: Module) -> None:
    spec = module.spec(
        module.step("a", "load", args={"n": 3}, cache=True),
        module.step("b", "total", depends_on=("a",), cache="1h"),
        module.step("c", "nothing", depends_on=("a",)),
    )
    found = identities(spec)
    assert set(found) == {"a", "b"}
    assert all(len(value) == 64 for value in found.values())
    assert found["a"] != found["b"]


def test_identities_are_stable_for_unchanged_source(module: Module) -> None:
    spec = module.spec(module.step("a", "load", args={"n": 3}, cache=True))
    first = identities(spec)
    module.write(VERSION_1)
    assert identities(spec) == first


def test_a_bad_ttl_names_the_step_and_the_field_cache(module: Module) -> None:
    spec = msgspec.structs.replace(
        module.spec(module.step("a", "load", args={"n": 3}, cache="soon")), source="wf.toml"
    )
    with pytest.raises(WorkflowError) as caught:
        identities(spec)
    assert (caught.value.step, caught.value.field, caught.value.file) == ("a", "cache", "wf.toml")
    assert "soon" in str(caught.value)


def test_an_unresolvable_cached_target_names_the_step_and_the_field_run(module: Module) -> None:
    spec = module.spec(module.step("a", "missing", cache=True))
    with pytest.raises(WorkflowError) as caught:
        identities(spec)
    assert (caught.value.step, caught.value.field) == ("a", "run")


# --- hits and misses --------------------------------------------------------------------------


def test_identical_inputs_hit_in_a_later_run(module: Module, tmp_path: Path) -> None:
    spec = module.spec(module.step("a", "load", args={"n": 3}, cache=True))
    path = tmp_path / "cache.sqlite3"
    with open_step_cache(spec, path) as cache:
        key, hit = cache.lookup("a", {"n": 3}, {})
        assert key is not None and hit is None
        assert cache.store("a", key, encode([0, 1, 2]))
    with open_step_cache(spec, path) as cache:
        again, hit = cache.lookup("a", {"n": 3}, {})
    assert again == key
    assert hit == encode([0, 1, 2])


def test_a_changed_argument_misses(module: Module, tmp_path: Path) -> None:
    spec = module.spec(module.step("a", "load", args={"n": 3}, cache=True))
    with open_step_cache(spec, tmp_path / "cache.sqlite3") as cache:
        key, _ = cache.lookup("a", {"n": 3}, {})
        cache.store("a", key, encode([0, 1, 2]))
        other, hit = cache.lookup("a", {"n": 4}, {})
        assert hit is None and other != key
        assert cache.lookup("a", {"n": 3, "scale": 2}, {})[1] is None


def test_argument_order_does_not_change_the_key(module: Module, tmp_path: Path) -> None:
    spec = module.spec(module.step("a", "load", args={"n": 3, "scale": 2}, cache=True))
    with open_step_cache(spec, tmp_path / "cache.sqlite3") as cache:
        key, _ = cache.lookup("a", {"n": 3, "scale": 2}, {})
        assert cache.lookup("a", {"scale": 2, "n": 3}, {})[0] == key


def test_a_changed_upstream_result_misses(module: Module, tmp_path: Path) -> None:
    # "a" is not cached: its result bytes stand for it in "b"'s key.
    spec = module.spec(
        module.step("a", "load", args={"n": 3}),
        module.step("b", "total", depends_on=("a",), cache=True),
    )
    with open_step_cache(spec, tmp_path / "cache.sqlite3") as cache:
        assert cache.lookup("a", {"n": 3}, {}) == (None, None)
        key, _ = cache.lookup("b", {}, {"a": encode([0, 1, 2])})
        cache.store("b", key, encode(3))
        assert cache.lookup("b", {}, {"a": encode([0, 1, 2])}) == (key, encode(3))
        changed, hit = cache.lookup("b", {}, {"a": encode([0, 1, 2, 3])})
        assert hit is None and changed != key


def test_upstream_results_may_be_raw(module: Module, tmp_path: Path) -> None:
    spec = module.spec(
        module.step("a", "load", args={"n": 3}),
        module.step("b", "total", depends_on=("a",), cache=True),
    )
    with open_step_cache(spec, tmp_path / "cache.sqlite3") as cache:
        key, _ = cache.lookup("b", {}, {"a": encode([0, 1, 2])})
        assert cache.lookup("b", {}, {"a": msgspec.Raw(encode([0, 1, 2]))})[0] == key


def test_a_cached_upstream_contributes_its_key_not_its_result(
    module: Module, tmp_path: Path
) -> None:
    spec = module.spec(
        module.step("a", "load", args={"n": 3}, cache=True),
        module.step("b", "total", depends_on=("a",), cache=True),
    )
    path = tmp_path / "cache.sqlite3"
    with open_step_cache(spec, path) as cache:
        cache.lookup("a", {"n": 3}, {})
        key, _ = cache.lookup("b", {}, {"a": encode([0, 1, 2])})
        cache.store("b", key, encode(3))
    with open_step_cache(spec, path) as cache:
        cache.lookup("a", {"n": 3}, {})
        # Same upstream key: a hit, even though the bytes passed differ.
        assert cache.lookup("b", {}, {"a": encode("other bytes")}) == (key, encode(3))
    with open_step_cache(spec, path) as cache:
        cache.lookup("a", {"n": 4}, {})  # another upstream key
        changed, hit = cache.lookup("b", {}, {"a": encode([0, 1, 2])})
        assert hit is None and changed != key


def test_a_changed_function_source_misses(module: Module, tmp_path: Path) -> None:
    steps = (
        module.step("a", "load", args={"n": 3}, cache=True),
        module.step("b", "total", depends_on=("a",), cache=True),
    )
    path = tmp_path / "cache.sqlite3"
    with open_step_cache(module.spec(*steps), path) as cache:
        key_a, _ = cache.lookup("a", {"n": 3}, {})
        key_b, _ = cache.lookup("b", {}, {"a": encode([0, 1, 2])})
        cache.store("a", key_a, encode([0, 1, 2]))
        cache.store("b", key_b, encode(3))
    module.write(VERSION_2)  # only total() changes
    with open_step_cache(module.spec(*steps), path) as cache:
        assert cache.lookup("a", {"n": 3}, {}) == (key_a, encode([0, 1, 2]))
        changed, hit = cache.lookup("b", {}, {"a": encode([0, 1, 2])})
    assert hit is None and changed != key_b


def test_a_cached_none_result_is_a_hit(module: Module, tmp_path: Path) -> None:
    spec = module.spec(
        module.step("a", "load", args={"n": 3}),
        module.step("b", "nothing", depends_on=("a",), cache=True),
    )
    path = tmp_path / "cache.sqlite3"
    with open_step_cache(spec, path) as cache:
        key, _ = cache.lookup("b", {}, {"a": encode([0])})
        cache.store("b", key, encode(None))
    with open_step_cache(spec, path) as cache:
        assert cache.lookup("b", {}, {"a": encode([0])}) == (key, b"\xc0")


def test_a_ttl_expires_and_true_never_does(module: Module, tmp_path: Path) -> None:
    spec = module.spec(
        module.step("hourly", "load", args={"n": 1}, cache="1h"),
        module.step("forever", "load", args={"n": 2}, cache=True),
    )
    clock = FakeClock()
    with open_step_cache(spec, tmp_path / "cache.sqlite3", clock) as cache:
        hourly, _ = cache.lookup("hourly", {"n": 1}, {})
        forever, _ = cache.lookup("forever", {"n": 2}, {})
        cache.store("hourly", hourly, encode([0]))
        cache.store("forever", forever, encode([0, 1]))
        clock.now += 3599
        assert cache.lookup("hourly", {"n": 1}, {})[1] == encode([0])
        clock.now += 1
        assert cache.lookup("hourly", {"n": 1}, {})[1] is None
        clock.now += 10 * 365 * 86400
        assert cache.lookup("forever", {"n": 2}, {})[1] == encode([0, 1])


def test_hits_and_misses_are_counted_in_the_file(module: Module, tmp_path: Path) -> None:
    spec = module.spec(module.step("a", "load", args={"n": 3}, cache=True))
    path = tmp_path / "cache.sqlite3"
    with open_step_cache(spec, path) as cache:
        key, _ = cache.lookup("a", {"n": 3}, {})
        cache.store("a", key, encode([0, 1, 2]))
        cache.lookup("a", {"n": 3}, {})
    with open_cache(path=path) as backend:
        stats = backend.stats()
        (entry,) = backend.entries()
    assert (stats.entries, stats.hits, stats.misses) == (1, 1, 1)
    assert (entry.key, entry.step_id, entry.expires_at) == (key, "a", None)


# --- what is not cached, and misuse -----------------------------------------------------------


def test_an_uncached_step_gets_no_key_and_stores_nothing(module: Module, tmp_path: Path) -> None:
    spec = module.spec(
        module.step("a", "load", args={"n": 3}),
        module.step("b", "total", depends_on=("a",), cache=True),
    )
    path = tmp_path / "cache.sqlite3"
    with open_step_cache(spec, path) as cache:
        assert cache.lookup("a", {"n": 3}, {}) == (None, None)
        assert not cache.store("a", None, encode([0, 1, 2]))
        assert cache.key("a") is None
    with open_cache(path=path) as backend:
        assert backend.entries() == []


def test_without_a_path_nothing_is_opened_or_cached(module: Module, tmp_path: Path) -> None:
    spec = module.spec(module.step("a", "load", args={"n": 3}, cache=True))
    with StepCache(spec, {}, None) as cache:
        assert not cache.enabled
        assert cache.lookup("a", {"n": 3}, {}) == (None, None)
    assert list(tmp_path.iterdir()) == [tmp_path / "modules"]


def test_no_cached_step_opens_no_file(module: Module, tmp_path: Path) -> None:
    spec = module.spec(module.step("a", "load", args={"n": 3}))
    with StepCache(spec, {}, tmp_path / "cache.sqlite3") as cache:
        assert cache.lookup("a", {"n": 3}, {}) == (None, None)
    assert not (tmp_path / "cache.sqlite3").exists()


def test_identities_must_name_exactly_the_cached_steps(module: Module, tmp_path: Path) -> None:
    spec = module.spec(module.step("a", "load", args={"n": 3}, cache=True))
    with pytest.raises(ValueError, match="exactly the cached steps"):
        StepCache(spec, {}, tmp_path / "cache.sqlite3")
    with pytest.raises(ValueError, match="exactly the cached steps"):
        StepCache(spec, {"a": "0" * 64, "zzz": "0" * 64}, tmp_path / "cache.sqlite3")


def test_lookup_before_open_raises(module: Module, tmp_path: Path) -> None:
    spec = module.spec(module.step("a", "load", args={"n": 3}, cache=True))
    cache = StepCache(spec, identities(spec), tmp_path / "cache.sqlite3")
    with pytest.raises(ValueError, match=r"open\(\) must be called first"):
        cache.lookup("a", {"n": 3}, {})


def test_an_unusable_cache_file_means_misses_not_failures(
    module: Module, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "cache.sqlite3"
    path.write_bytes(b"this is not a database, just text " * 100)
    spec = module.spec(module.step("a", "load", args={"n": 3}, cache=True))
    with (
        caplog.at_level(logging.WARNING, logger="mcpp.cache.step"),
        open_step_cache(spec, path) as cache,
    ):
        assert cache.lookup("a", {"n": 3}, {}) == (None, None)
        assert not cache.store("a", "0" * 64, encode([0]))
    assert "caching off" in caplog.text


# --- mcpp cache ls|stats|clear ------------------------------------------------------------------


def mcpp(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the mcpp CLI with ``MCPP_HOME=home`` in a fresh interpreter."""
    return subprocess.run(
        [sys.executable, "-m", "mcpp.supervisor", *args],
        capture_output=True,
        text=True,
        cwd=home,
        env={**os.environ, "MCPP_HOME": str(home)},
        check=False,
        timeout=60,
    )


def fill(home: Path) -> dict[str, str]:
    """Store one entry per step through the library; return step id -> key."""
    keys = {"load_a": "a1" + "0" * 62, "load_b": "b2" + "0" * 62, "report": "c3" + "0" * 62}
    with open_cache(path=home / "cache.sqlite3") as cache:
        for step_id, key in keys.items():
            cache.put(
                key, encode(step_id), step_id=step_id, ttl=3600 if step_id == "report" else None
            )
        cache.get(keys["load_a"])
        cache.get("f" * 64)
    return keys


def listed(home: Path) -> dict[str, str]:
    done = mcpp(home, "cache", "ls", "--json")
    assert done.returncode == 0, done.stderr
    return {entry["step_id"]: entry["key"] for entry in json.loads(done.stdout)["entries"]}


def test_cache_ls_lists_every_entry(tmp_path: Path) -> None:
    keys = fill(tmp_path)
    done = mcpp(tmp_path, "cache", "ls", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["path"] == str(tmp_path / "cache.sqlite3")
    assert [entry["step_id"] for entry in document["entries"]] == ["load_a", "load_b", "report"]
    by_step = {entry["step_id"]: entry for entry in document["entries"]}
    assert {step: entry["key"] for step, entry in by_step.items()} == keys
    assert by_step["load_a"]["access_count"] == 1
    assert by_step["load_a"]["size"] == len(encode("load_a"))
    assert by_step["load_a"]["expires_at"] is None
    assert by_step["report"]["expires_at"] is not None


def test_cache_ls_prints_a_table(tmp_path: Path) -> None:
    keys = fill(tmp_path)
    done = mcpp(tmp_path, "cache", "ls")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["KEY", "STEP"]
    assert [line.split()[:2] for line in lines[1:]] == [
        [keys[step][:16], step] for step in ("load_a", "load_b", "report")
    ]
    assert "never" in lines[1]


def test_cache_stats_shows_counters(tmp_path: Path) -> None:
    fill(tmp_path)
    done = mcpp(tmp_path, "cache", "stats", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["entries"] == 3
    assert (document["hits"], document["misses"]) == (1, 1)
    assert document["bytes"] == sum(len(encode(s)) for s in ("load_a", "load_b", "report"))
    text = mcpp(tmp_path, "cache", "stats").stdout
    assert "entries" in text and "hits" in text


def test_cache_clear_by_step(tmp_path: Path) -> None:
    fill(tmp_path)
    done = mcpp(tmp_path, "cache", "clear", "--step", "load_a")
    assert done.returncode == 0, done.stderr
    assert "removed 1 cached result" in done.stdout
    assert set(listed(tmp_path)) == {"load_b", "report"}


def test_cache_clear_by_pattern(tmp_path: Path) -> None:
    fill(tmp_path)
    done = mcpp(tmp_path, "cache", "clear", "--pattern", "load_*", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"removed": 2}
    assert set(listed(tmp_path)) == {"report"}


def test_cache_clear_by_key_or_unique_prefix(tmp_path: Path) -> None:
    keys = fill(tmp_path)
    assert mcpp(tmp_path, "cache", "clear", "--key", keys["load_b"]).returncode == 0
    assert mcpp(tmp_path, "cache", "clear", "--key", "c3").returncode == 0
    assert set(listed(tmp_path)) == {"load_a"}
    none = mcpp(tmp_path, "cache", "clear", "--key", "ffff", "--json")
    assert json.loads(none.stdout) == {"removed": 0}


def test_cache_clear_refuses_an_ambiguous_key_prefix(tmp_path: Path) -> None:
    fill(tmp_path)
    with open_cache(path=tmp_path / "cache.sqlite3") as cache:
        cache.put("a1" + "1" * 62, b"\xc0", step_id="load_a")
    done = mcpp(tmp_path, "cache", "clear", "--key", "a1")
    assert done.returncode == 2
    assert "names 2 entries" in done.stderr
    assert len(listed(tmp_path)) == 3


def test_cache_clear_without_options_removes_everything(tmp_path: Path) -> None:
    fill(tmp_path)
    done = mcpp(tmp_path, "cache", "clear")
    assert done.returncode == 0, done.stderr
    assert "removed 3 cached results" in done.stdout
    assert listed(tmp_path) == {}
    stats = json.loads(mcpp(tmp_path, "cache", "stats", "--json").stdout)
    assert (stats["entries"], stats["hits"], stats["misses"]) == (0, 0, 0)


def test_cache_clear_takes_one_selector(tmp_path: Path) -> None:
    done = mcpp(tmp_path, "cache", "clear", "--step", "a", "--pattern", "b*")
    assert done.returncode == 2
    assert "not allowed with" in done.stderr


def test_cache_commands_on_a_missing_cache_create_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert listed(home) == {}
    stats = json.loads(mcpp(home, "cache", "stats", "--json").stdout)
    assert stats["entries"] == 0
    assert "removed 0" in mcpp(home, "cache", "clear").stdout
    assert "no cached results" in mcpp(home, "cache", "ls").stdout
    assert list(home.iterdir()) == []


def test_cache_commands_report_a_file_that_is_not_a_cache(tmp_path: Path) -> None:
    (tmp_path / "cache.sqlite3").write_bytes(b"this is not a database, just text " * 100)
    done = mcpp(tmp_path, "cache", "ls")
    assert done.returncode == 1
    assert "not an mcpp cache" in done.stderr


# --- end to end through the runtime -----------------------------------------------------------

WORKFLOW = """
[workflow]
name = "cached"

[params]
n = 4
log = '{log}'

[[steps]]
id = "numbers"
run = "tests.steps.cache_steps:numbers"
args = {{ n = "${{n}}", log = "${{log}}" }}
cache = true

[[steps]]
id = "total"
run = "tests.steps.cache_steps:total"
args = {{ log = "${{log}}" }}
depends_on = ["numbers"]
cache = "1h"

[[steps]]
id = "nothing"
run = "tests.steps.cache_steps:nothing"
args = {{ log = "${{log}}" }}
depends_on = ["total"]
cache = true

[[steps]]
id = "report"
run = "tests.steps.cache_steps:report"
args = {{ log = "${{log}}" }}
depends_on = ["total"]
"""


@pytest.mark.usefixtures("no_leftovers")
@pytest.mark.parametrize("actors", ["per_step", "pool"])
def test_spawn_reuses_cached_results_and_misses_on_a_changed_param(
    tmp_path: Path, actors: str
) -> None:
    log = tmp_path / "executions.log"
    workflow = tmp_path / "cached.toml"
    workflow.write_text(WORKFLOW.format(log=log))
    home = tmp_path / "home"

    def spawn(*params: str) -> tuple[dict[str, Any], list[str]]:
        """Run the workflow; return its result steps and the steps that executed."""
        before = log.read_text().splitlines() if log.exists() else []
        done = subprocess.run(
            [sys.executable, "-m", "mcpp.supervisor", "spawn", str(workflow), "--json"]
            + ["--actors", actors]
            + [arg for param in params for arg in ("--param", param)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**os.environ, "MCPP_HOME": str(home)},
            check=False,
            timeout=90,
        )
        assert done.returncode == 0, done.stderr
        steps = json.loads(done.stdout)["steps"]
        assert all(step["status"] == "succeeded" for step in steps.values()), steps
        return steps, sorted(log.read_text().splitlines()[len(before) :])

    first, ran = spawn()
    assert ran == ["nothing", "numbers", "report", "total"]
    results = {step_id: step["result"] for step_id, step in first.items()}
    assert results == {"numbers": [0, 1, 2, 3], "total": 6, "nothing": None, "report": "total=6"}

    second, ran = spawn()
    assert ran == ["report"], "cached steps must not run again; the uncached one does"
    assert {step_id: step["result"] for step_id, step in second.items()} == results
    assert [second[s]["attempts"] for s in ("numbers", "total", "nothing")] == [0, 0, 0]

    third, ran = spawn("n=5")
    assert ran == ["nothing", "numbers", "report", "total"], "a changed argument misses"
    assert third["total"]["result"] == 10

    _, ran = spawn("n=4")
    assert ran == ["report"], "the entries of n=4 are still there"

    stats = json.loads(mcpp(home, "cache", "stats", "--json").stdout)
    assert (stats["entries"], stats["hits"], stats["misses"]) == (6, 6, 6)


# --- included templates: the cache hashes the real step function -----------------------------

TEMPLATE_MODULE = """
def produce():
    return [1, 2, 3]


def consume(produce, scale=VERSION):
    return sum(produce) * scale


def report(a_consume):
    return f"total {a_consume}"
"""


def test_editing_an_included_cached_steps_function_misses(tmp_path: Path) -> None:
    # An included step with a dependency once ran through a trampoline, and the cache hashed
    # the trampoline: editing the real function served the stale result.
    (tmp_path / "tplmod.py").write_text(TEMPLATE_MODULE.replace("VERSION", "1"))
    (tmp_path / "tpl.toml").write_text(
        '[workflow]\nname = "tpl"\n'
        '[[steps]]\nid = "produce"\nrun = "tplmod:produce"\n'
        '[[steps]]\nid = "consume"\nrun = "tplmod:consume"\ndepends_on = ["produce"]\n'
        "cache = true\n"
    )
    (tmp_path / "wf.toml").write_text(
        '[workflow]\nname = "wf"\n[[include]]\npath = "tpl.toml"\nprefix = "a"\n'
        '[[steps]]\nid = "report"\nrun = "tplmod:report"\ndepends_on = ["a_consume"]\n'
    )

    def run() -> dict[str, object]:
        done = mcpp(tmp_path, "spawn", "--json", "--no-journal", "wf.toml")
        assert done.returncode == 0, done.stderr
        step: dict[str, object] = json.loads(done.stdout)["steps"]["a_consume"]
        return step

    first, again = run(), run()
    assert (first["result"], first["cached"]) == (6, False)
    assert (again["result"], again["cached"]) == (6, True)
    (tmp_path / "tplmod.py").write_text(TEMPLATE_MODULE.replace("VERSION", "10"))
    edited = run()
    assert (edited["result"], edited["cached"]) == (60, False)
