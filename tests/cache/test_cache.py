"""The result cache: keys, both backends under one contract, TTLs, eviction, processes."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mcpp.cache import (
    CacheBackend,
    CacheEntry,
    CacheHit,
    CacheStats,
    MemoryCache,
    SQLiteCache,
    cache_key,
    default_path,
    hash_result,
    open_cache,
    parse_ttl,
)
from mcpp.errors import WorkflowError

REPO = Path(__file__).resolve().parents[2]
KIB = b"x" * 10  # every value in the eviction tests has this size


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


Factory = Callable[..., CacheBackend]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def make_cache(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Factory]:
    """Open caches of the parametrized kind with the fake clock; closes them afterwards."""
    opened: list[CacheBackend] = []

    def make(**options: Any) -> CacheBackend:
        path = tmp_path / f"cache{len(opened)}.sqlite3" if request.param == "sqlite" else None
        cache = open_cache(request.param, path, clock=clock, **options)
        opened.append(cache)
        return cache

    yield make
    for cache in opened:
        cache.close()


def stats(cache: CacheBackend) -> tuple[int, int, int, int, int, int]:
    s = cache.stats()
    return (s.entries, s.bytes, s.hits, s.misses, s.evictions, s.expirations)


def keys_of(cache: CacheBackend) -> list[str]:
    return [entry.key for entry in cache.entries()]


# --- keys ---------------------------------------------------------------------------------


def extract(rows: int = 10) -> list[int]:
    return list(range(rows))


def load_module(tmp_path: Path, folder: str, source: str) -> Any:
    """Import ``source`` as a module named ``stepmod`` from its own file under ``folder``."""
    path = tmp_path / folder / "stepmod.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location("stepmod", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exec_function(source: str) -> Callable[..., Any]:
    """Define the function ``step`` by exec, so it has no source file."""
    namespace: dict[str, Any] = {"__name__": "workflow"}
    # dont_inherit: this module's `from __future__` flags would change the code object.
    exec(compile(textwrap.dedent(source), "<string>", "exec", dont_inherit=True), namespace)
    fn: Callable[..., Any] = namespace["step"]
    return fn


def test_identical_inputs_give_the_same_hex_key() -> None:
    key = cache_key(extract, {"rows": 3}, {"up": "k1"})
    assert key == cache_key(extract, {"rows": 3}, {"up": "k1"})
    assert len(key) == 64 and int(key, 16) >= 0


def test_a_changed_argument_gives_another_key() -> None:
    assert cache_key(extract, {"rows": 3}, {}) != cache_key(extract, {"rows": 4}, {})
    assert cache_key(extract, {"rows": 3}, {}) != cache_key(extract, {"rows": 3.0}, {})
    assert cache_key(extract, {}, {}) != cache_key(extract, {"rows": 3}, {})


def test_a_changed_or_added_upstream_key_gives_another_key() -> None:
    base = cache_key(extract, {}, {"a": "k1"})
    assert base != cache_key(extract, {}, {"a": "k2"})
    assert base != cache_key(extract, {}, {"a": "k1", "b": "k3"})
    assert base != cache_key(extract, {}, {"b": "k1"})


def test_dict_order_does_not_change_the_key() -> None:
    one = {"a": 1, "b": {"x": [1, {"p": 1, "q": 2}], "y": 2}}
    two = {"b": {"y": 2, "x": [1, {"q": 2, "p": 1}]}, "a": 1}
    assert cache_key(extract, one, {"u": "1", "v": "2"}) == cache_key(
        extract, two, {"v": "2", "u": "1"}
    )


def test_a_changed_source_gives_another_key(tmp_path: Path) -> None:
    v1 = load_module(tmp_path, "v1", "def step(x):\n    return x + 1\n")
    v2 = load_module(tmp_path, "v2", "def step(x):\n    return x + 2\n")
    same = load_module(tmp_path, "v3", "def step(x):\n    return x + 1\n")
    assert (v1.step.__module__, v1.step.__qualname__) == (v2.step.__module__, "step")
    assert cache_key(v1.step, {"x": 1}, {}) != cache_key(v2.step, {"x": 1}, {})
    assert cache_key(v1.step, {"x": 1}, {}) == cache_key(same.step, {"x": 1}, {})


def test_a_function_without_source_is_keyed_by_its_code() -> None:
    one = exec_function("def step(x):\n    return x + 1\n")
    two = exec_function("def step(x):\n    return x + 2\n")
    three = exec_function("def step(x, y=5):\n    return x + 1\n")
    four = exec_function("def step(x, y=6):\n    return x + 1\n")
    again = exec_function("def step(x):\n    return x + 1\n")
    keys = {cache_key(fn, {"x": 1}, {}) for fn in (one, two, three, four)}
    assert len(keys) == 4
    assert cache_key(one, {"x": 1}, {}) == cache_key(again, {"x": 1}, {})


def test_a_builtin_is_keyed_by_its_name() -> None:
    assert cache_key(len, {}, {}) == cache_key(len, {}, {})
    assert cache_key(len, {}, {}) != cache_key(abs, {}, {})


def test_a_key_is_the_same_in_another_process() -> None:
    # Set constants are ordered by string hashes, which differ between processes.
    source = "def step(x):\n    return x in {'alpha', 'beta', 'gamma'}\n"
    script = textwrap.dedent(
        f"""
        from mcpp.cache import cache_key
        namespace = {{"__name__": "workflow"}}
        exec({source!r}, namespace)
        print(cache_key(namespace["step"], {{"x": "a"}}, {{"up": "k"}}))
        """
    )
    theirs = run_python(script, env={"PYTHONHASHSEED": "12345"}).strip()
    assert theirs == cache_key(exec_function(source), {"x": "a"}, {"up": "k"})


def test_unencodable_arguments_raise_type_error() -> None:
    with pytest.raises(TypeError, match="extract"):
        cache_key(extract, {"rows": object()}, {})


def test_hash_result_ignores_dict_order_and_sees_changes() -> None:
    assert hash_result({"a": 1, "b": 2}) == hash_result({"b": 2, "a": 1})
    assert hash_result({"a": 1}) != hash_result({"a": 2})
    assert hash_result(None) != cache_key(extract, {}, {})
    with pytest.raises(TypeError):
        hash_result(object())


# --- TTL parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (True, None),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        (" 90 ", 90.0),
        (45, 45.0),
        (0.5, 0.5),
    ],
)
def test_parse_ttl_accepts_true_seconds_and_units(
    value: bool | str | float, seconds: float
) -> None:
    assert parse_ttl(value) == seconds


@pytest.mark.parametrize("value", [False, "", "1w", "h", "-5s", "0", 0, -1, "1 hour", float("inf")])
def test_parse_ttl_rejects_bad_values_with_a_workflow_error(value: bool | str | float) -> None:
    with pytest.raises(WorkflowError) as info:
        parse_ttl(value, step="extract")
    assert info.value.step == "extract" and info.value.field == "cache"
    assert isinstance(info.value, ValueError)


# --- options ------------------------------------------------------------------------------


def test_bad_options_raise_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="policy 'mru'"):
        open_cache("memory", policy="mru")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="policy"):
        open_cache("sqlite", tmp_path / "c.sqlite3", policy="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        open_cache("redis")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no path"):
        open_cache("memory", tmp_path / "c.sqlite3")
    with pytest.raises(ValueError, match="max_entries"):
        open_cache("memory", max_entries=0)
    with pytest.raises(ValueError, match="max_bytes"):
        open_cache("memory", max_bytes=0)


def test_a_file_that_is_not_a_cache_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    path.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(ValueError, match="not an mcpp cache"):
        open_cache("sqlite", path)


def test_the_default_file_is_under_mcpp_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCPP_HOME", str(tmp_path / "home"))
    with open_cache() as cache:
        assert isinstance(cache, SQLiteCache)
        assert cache.path == tmp_path / "home" / "cache.sqlite3"
        assert cache.path.exists()
    monkeypatch.delenv("MCPP_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_path() == Path(".mcpp") / "cache.sqlite3"


def test_open_cache_makes_the_asked_kind(tmp_path: Path) -> None:
    with open_cache("memory") as memory, open_cache("sqlite", tmp_path / "c.db") as sqlite:
        assert isinstance(memory, MemoryCache) and isinstance(sqlite, SQLiteCache)


# --- the contract, against both backends --------------------------------------------------


def test_a_stored_value_is_a_hit(make_cache: Factory) -> None:
    cache = make_cache()
    assert cache.get("k") is None
    assert cache.put("k", b"value", step_id="extract") is True
    assert cache.get("k") == CacheHit(b"value")


def test_a_cached_none_result_is_a_hit(make_cache: Factory) -> None:
    cache = make_cache()
    cache.put("none", msgspec.msgpack.encode(None), step_id="s")
    cache.put("empty", b"", step_id="s")
    hit = cache.get("none")
    assert hit is not None and msgspec.msgpack.decode(hit.value) is None
    assert cache.get("empty") == CacheHit(b"")
    assert (cache.stats().hits, cache.stats().misses) == (2, 0)


def test_counters_count_hits_misses_entries_and_bytes(make_cache: Factory) -> None:
    cache = make_cache()
    cache.get("a")
    cache.put("a", b"12345", step_id="s")
    cache.put("b", b"123", step_id="s")
    cache.get("a")
    cache.get("a")
    cache.get("c")
    assert cache.stats() == CacheStats(
        entries=2, bytes=8, hits=2, misses=2, evictions=0, expirations=0
    )


def test_put_replaces_an_entry_with_the_same_key(make_cache: Factory) -> None:
    cache = make_cache(max_entries=2)
    cache.put("a", b"one", step_id="s")
    cache.get("a")
    cache.put("a", b"three", step_id="t")
    assert cache.get("a") == CacheHit(b"three")
    (entry,) = cache.entries()
    assert (entry.step_id, entry.access_count, entry.size) == ("t", 1, 5)
    assert stats(cache) == (1, 5, 2, 0, 0, 0)


def test_entries_carry_metadata_oldest_first(make_cache: Factory, clock: FakeClock) -> None:
    cache = make_cache()
    cache.put("a", b"abc", step_id="extract", ttl=60)
    clock.advance(5)
    cache.put("b", b"de", step_id="load")
    clock.advance(5)
    cache.get("a")
    cache.get("a")
    t = clock.now
    assert cache.entries() == [
        CacheEntry(
            key="a",
            step_id="extract",
            created_at=t - 10,
            last_access=t,
            access_count=2,
            size=3,
            expires_at=t - 10 + 60,
        ),
        CacheEntry(
            key="b",
            step_id="load",
            created_at=t - 5,
            last_access=t - 5,
            access_count=0,
            size=2,
            expires_at=None,
        ),
    ]


def test_an_entry_expires_when_its_ttl_runs_out(make_cache: Factory, clock: FakeClock) -> None:
    cache = make_cache()
    cache.put("short", b"v", step_id="s", ttl=10)
    cache.put("forever", b"v", step_id="s")
    clock.advance(9.5)
    assert cache.get("short") == CacheHit(b"v")
    clock.advance(0.5)
    assert cache.get("short") is None
    clock.advance(10**9)
    assert cache.get("forever") == CacheHit(b"v")
    assert stats(cache) == (1, 1, 2, 1, 0, 1)


def test_expired_entries_leave_stats_and_listing(make_cache: Factory, clock: FakeClock) -> None:
    cache = make_cache()
    cache.put("a", b"v", step_id="s", ttl=1)
    cache.put("b", b"v", step_id="s", ttl=2)
    cache.put("c", b"v", step_id="s")
    clock.advance(1)
    assert keys_of(cache) == ["b", "c"]
    clock.advance(1)
    assert stats(cache) == (1, 1, 0, 0, 0, 2)
    assert cache.purge_expired() == 0


def test_purge_expired_removes_and_counts(make_cache: Factory, clock: FakeClock) -> None:
    cache = make_cache()
    for key in "abc":
        cache.put(key, b"v", step_id="s", ttl=5)
    clock.advance(5)
    assert cache.purge_expired() == 3
    assert stats(cache) == (0, 0, 0, 0, 0, 3)


def test_expired_entries_go_before_any_eviction(make_cache: Factory, clock: FakeClock) -> None:
    cache = make_cache(max_entries=2, policy="fifo")
    cache.put("old", b"v", step_id="s")
    cache.put("brief", b"v", step_id="s", ttl=5)
    clock.advance(5)
    cache.put("new", b"v", step_id="s")
    assert keys_of(cache) == ["old", "new"]
    assert (cache.stats().evictions, cache.stats().expirations) == (0, 1)


def test_a_bad_ttl_or_value_is_refused(make_cache: Factory) -> None:
    cache = make_cache()
    with pytest.raises(ValueError, match="ttl"):
        cache.put("k", b"v", step_id="s", ttl=0)
    with pytest.raises(ValueError, match="ttl"):
        cache.put("k", b"v", step_id="s", ttl=-1)
    with pytest.raises(TypeError, match="bytes"):
        cache.put("k", "text", step_id="s")  # type: ignore[arg-type]
    assert keys_of(cache) == []


# Eviction: put a, b, c (10 bytes each), read some, then put d into a cache bounded to three
# entries or 30 bytes. Each scenario reads so that the three policies disagree on the victim.
EVICTION_SCENARIOS = [
    pytest.param("lru", "cab", "c", id="lru-least-recently-read"),
    pytest.param("lru", "", "a", id="lru-never-read-oldest"),
    pytest.param("fifo", "cab", "a", id="fifo-oldest-inserted-even-if-read"),
    pytest.param("fifo", "aaa", "a", id="fifo-ignores-reads"),
    pytest.param("lfu", "aacb", "b", id="lfu-least-often-read"),
    pytest.param("lfu", "aacc", "b", id="lfu-never-read"),
    pytest.param("lfu", "cba", "a", id="lfu-tie-oldest-goes"),
]
BOUNDS = {"entries": {"max_entries": 3}, "bytes": {"max_entries": 100, "max_bytes": 30}}


@pytest.mark.parametrize("bound", sorted(BOUNDS))
@pytest.mark.parametrize(("policy", "reads", "victim"), EVICTION_SCENARIOS)
def test_eviction_removes_exactly_the_policys_victim(
    make_cache: Factory, clock: FakeClock, bound: str, policy: str, reads: str, victim: str
) -> None:
    cache = make_cache(policy=policy, **BOUNDS[bound])
    for key in "abc":
        cache.put(key, KIB, step_id="s")
        clock.advance(1)
    for key in reads:
        assert cache.get(key) is not None
        clock.advance(1)
    assert cache.put("d", KIB, step_id="s")
    assert keys_of(cache) == [key for key in "abcd" if key != victim]
    assert (cache.stats().evictions, cache.stats().entries, cache.stats().bytes) == (1, 3, 30)


def test_eviction_follows_the_policy_even_when_the_clock_stands_still(
    make_cache: Factory,
) -> None:
    cache = make_cache(policy="lru", max_entries=2)
    cache.put("a", KIB, step_id="s")
    cache.put("b", KIB, step_id="s")
    cache.get("a")
    cache.put("c", KIB, step_id="s")
    assert keys_of(cache) == ["a", "c"]


def test_lfu_ties_go_to_the_oldest_each_time(make_cache: Factory) -> None:
    cache = make_cache(policy="lfu", max_entries=3)
    for key in "abc":
        cache.put(key, KIB, step_id="s")
    cache.get("c")
    cache.put("d", KIB, step_id="s")
    assert keys_of(cache) == ["b", "c", "d"]
    cache.put("e", KIB, step_id="s")
    assert keys_of(cache) == ["c", "d", "e"]
    cache.put("f", KIB, step_id="s")
    assert keys_of(cache) == ["c", "e", "f"]


@pytest.mark.parametrize(("policy", "survivor"), [("lru", "b"), ("fifo", "c"), ("lfu", "a")])
def test_a_large_value_evicts_as_many_as_it_needs_in_policy_order(
    make_cache: Factory, policy: str, survivor: str
) -> None:
    cache = make_cache(policy=policy, max_bytes=35)
    for key in "abc":
        cache.put(key, KIB, step_id="s")
    for key in "aab":
        cache.get(key)
    # Room for 20 bytes: two of the three must go.
    cache.put("big", b"y" * 20, step_id="s")
    assert keys_of(cache) == [survivor, "big"]
    assert (cache.stats().evictions, cache.stats().bytes) == (2, 30)


def test_a_value_larger_than_the_byte_bound_is_not_stored(make_cache: Factory) -> None:
    cache = make_cache(max_bytes=15)
    cache.put("a", KIB, step_id="s")
    assert cache.put("huge", b"z" * 16, step_id="s") is False
    assert keys_of(cache) == ["a"]
    assert cache.stats().evictions == 0


def test_invalidate_by_key(make_cache: Factory) -> None:
    cache = make_cache()
    cache.put("a", b"v", step_id="s")
    cache.put("b", b"v", step_id="s")
    assert cache.invalidate("a") is True
    assert cache.invalidate("a") is False
    assert cache.get("a") is None
    assert keys_of(cache) == ["b"]


def test_invalidate_by_step(make_cache: Factory) -> None:
    cache = make_cache()
    cache.put("a1", b"v", step_id="extract")
    cache.put("a2", b"v", step_id="extract")
    cache.put("b", b"v", step_id="extract_more")
    assert cache.invalidate_step("extract") == 2
    assert cache.invalidate_step("extract") == 0
    assert keys_of(cache) == ["b"]


def test_invalidate_by_glob_over_step_ids(make_cache: Factory) -> None:
    cache = make_cache()
    for key, step in [("1", "load_a"), ("2", "load_b"), ("3", "Load_c"), ("4", "extract")]:
        cache.put(key, b"v", step_id=step)
    cache.put("5", b"v", step_id="load_a")
    assert cache.invalidate_pattern("load_*") == 3
    assert keys_of(cache) == ["3", "4"]
    assert cache.invalidate_pattern("[A-Z]oad_?") == 1
    assert cache.invalidate_pattern("nothing*") == 0
    assert keys_of(cache) == ["4"]
    assert cache.stats().evictions == 0


def test_clear_empties_the_cache_and_its_counters(make_cache: Factory) -> None:
    cache = make_cache(max_entries=2)
    for key in "abc":
        cache.put(key, b"v", step_id="s")
    cache.get("c")
    cache.get("a")
    assert cache.clear() == 2
    assert stats(cache) == (0, 0, 0, 0, 0, 0)
    assert cache.put("a", b"v", step_id="s")
    assert cache.get("a") == CacheHit(b"v")


def test_a_closed_cache_refuses_use(make_cache: Factory) -> None:
    cache = make_cache()
    cache.close()
    cache.close()
    with pytest.raises(ValueError, match="closed"):
        cache.get("a")
    with pytest.raises(ValueError, match="closed"):
        cache.put("a", b"v", step_id="s")


# --- SQLite across handles and processes --------------------------------------------------


def run_python(script: str, env: dict[str, str] | None = None) -> str:
    """Run ``script`` in a fresh interpreter; return its stdout, fail the test on an error."""
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_entries_and_counters_persist_after_reopening(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "cache.sqlite3"
    with open_cache("sqlite", path, clock=clock) as cache:
        cache.put("k", b"v", step_id="s", ttl=100)
        cache.get("k")
    with open_cache("sqlite", path, clock=clock) as cache:
        assert cache.get("k") == CacheHit(b"v")
        assert stats(cache) == (1, 1, 2, 0, 0, 0)
        clock.advance(100)
        assert cache.get("k") is None


def test_another_process_reads_what_this_one_wrote(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    with open_cache("sqlite", path) as cache:
        cache.put("key", msgspec.msgpack.encode({"rows": [1, 2]}), step_id="extract")
    script = textwrap.dedent(
        f"""
        import msgspec
        from mcpp.cache import open_cache
        with open_cache("sqlite", {str(path)!r}) as cache:
            hit = cache.get("key")
            print(msgspec.json.encode(msgspec.msgpack.decode(hit.value)).decode())
        """
    )
    assert run_python(script).strip() == '{"rows":[1,2]}'
    with open_cache("sqlite", path) as cache:
        assert cache.stats().hits == 1


def test_this_process_reads_what_another_one_wrote(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    with open_cache("sqlite", path) as cache:
        assert cache.get("key") is None
        script = textwrap.dedent(
            f"""
            import msgspec
            from mcpp.cache import open_cache
            with open_cache("sqlite", {str(path)!r}) as cache:
                cache.put("key", msgspec.msgpack.encode(None), step_id="load", ttl=3600)
            """
        )
        run_python(script)
        # The same open handle sees the other process's entry.
        hit = cache.get("key")
        assert hit is not None and msgspec.msgpack.decode(hit.value) is None
        (entry,) = cache.entries()
        assert entry.step_id == "load" and entry.expires_at is not None


def test_concurrent_processes_keep_the_file_consistent(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "cache.sqlite3"
    workers, rounds = 4, 60
    script = textwrap.dedent(
        f"""
        import sys
        from mcpp.cache import open_cache
        worker = int(sys.argv[1])
        with open_cache("sqlite", {str(path)!r}, max_entries=20, policy="lfu") as cache:
            for i in range({rounds}):
                cache.put(f"{{worker}}-{{i}}", bytes(100), step_id=f"step{{worker}}")
                cache.get(f"{{worker}}-{{i}}")
                cache.get(f"{{(worker + 1) % {workers}}}-{{i}}")
        """
    )
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(worker)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(workers)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    with open_cache("sqlite", path, max_entries=20) as cache:
        s = cache.stats()
        assert s.entries == 20 and s.bytes == 2000
        assert s.hits + s.misses == workers * rounds * 2
        # Each process reads its fresh entry at once, but another process may evict it first
        # (LFU: an unread entry goes before read ones), so only totals are exact.
        assert s.hits > 0
        assert s.evictions == workers * rounds - 20
        assert len({entry.key for entry in cache.entries()}) == 20
