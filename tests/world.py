"""A test harness that watches the whole machine a run touches, as an init process would.

:class:`World` makes the test process a Linux *child subreaper*
(``prctl(PR_SET_CHILD_SUBREAPER)``): every process a run orphans (a daemon that double-forked,
the children of a killed supervisor) is re-parented to the test process instead of init, so
:meth:`World.descendants` sees everything the run started, wherever it went, without looking at
command lines. While a World is active a thread reaps the zombies of those orphans (as init
would), with ``os.waitpid(pid, WNOHANG)`` on each such pid: never ``waitpid(-1)``, which would
steal the exit status of the processes the test started itself (those go through
:meth:`World.spawn`, which records their pids so the reaper leaves them alone). With
``world.reap = False`` zombies stay, like under a parent that does not reap at once.

:meth:`World.assert_clean` polls (bounded) until no descendant is alive, no ``mcpp*`` entry is
left in the run's temporary folder and no ``/dev/shm`` entry appeared during the test; otherwise
it kills what is left and fails listing it. Each World gives its runs a ``TMPDIR`` of their own
(so their ``tempfile.gettempdir()`` is ``world.tmp``): on a shared machine other runs write
``mcpp*`` entries to ``/tmp`` at any moment, so only a folder of its own attributes a leftover to
this run. ``/dev/shm`` cannot be redirected and is compared before/after.

:func:`run_cli` / :func:`start_cli` run ``python -m mcpp.supervisor spawn --json --no-journal``
as a user would (cwd a temporary folder, ``MCPP_HOME`` a temporary folder, stdout and stderr
to files).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = [
    "ROOT",
    "STEPS",
    "Cli",
    "CliResult",
    "World",
    "gone",
    "read_pids",
    "run_cli",
    "sig_caught",
    "start_cli",
    "step",
    "wait_for",
    "wait_for_file",
    "write_workflow",
]

ROOT = Path(__file__).resolve().parent.parent
STEPS = "tests.steps.fault_steps"

PR_SET_CHILD_SUBREAPER = 36
PR_GET_CHILD_SUBREAPER = 37
SHM = Path("/dev/shm")
SHM_SETTLE = 1.0


# --- subreaper -------------------------------------------------------------------------------


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def get_subreaper() -> bool:
    """True if this process is a child subreaper (Linux only)."""
    value = ctypes.c_int(0)
    if _libc().prctl(PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return bool(value.value)


def set_subreaper(on: bool) -> None:
    """Make this process a child subreaper, or stop being one (Linux only)."""
    if _libc().prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# --- polling ---------------------------------------------------------------------------------


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> Any:
    """Poll ``condition()`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def descendants() -> list[psutil.Process]:
    """Every living (non-zombie) descendant of the test process, whatever it runs."""
    alive = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (it does not exist, or it is a zombie)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _describe(pid: int) -> str:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            return f"{pid} (ppid {proc.ppid()}, {proc.status()}): {' '.join(proc.cmdline())!r}"
    except psutil.Error:
        return f"{pid} (gone)"


def _held_elsewhere(path: str) -> bool:
    """True if a process outside this test's tree has ``path`` open or mapped (then it is
    another program's, on a shared machine)."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().children(recursive=True))}
    for proc in psutil.process_iter():
        if proc.pid in mine:
            continue
        try:
            if path in Path(f"/proc/{proc.pid}/maps").read_text():
                return True
            if any(f.path == path for f in proc.open_files()):
                return True
        except (OSError, psutil.Error):
            continue
    return False


# --- the world -------------------------------------------------------------------------------


class World:
    """The test process as a subreaper, its descendants, and what a run leaves behind."""

    def __init__(self, workdir: Path, *, reap: bool = True, interval: float = 0.05) -> None:
        self.workdir = workdir
        self.cwd = workdir / "cwd"
        self.home = workdir / "home"
        self.tmp = workdir / "tmp"  # the run's TMPDIR: its tempfile.gettempdir()
        self.reap = reap
        self.interval = interval
        self.passes = 0  # reaper loop iterations (for tests of the harness itself)
        self.reaped: list[int] = []
        self.started_at = time.time()
        self._own: set[int] = set()
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_subreaper = False
        self._shm_before: set[str] = set()

    # lifecycle

    def __enter__(self) -> World:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._was_subreaper = get_subreaper()
        set_subreaper(True)
        self._shm_before = set(self._shm_entries())
        self._thread = threading.Thread(target=self._reaper, name="world-reaper", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for proc in self._procs:
                if proc.poll() is None:
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)
            for pid in [p.pid for p in self.descendants()]:
                with contextlib.suppress(psutil.Error):
                    psutil.Process(pid).kill()
        finally:
            self._stop.set()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self.reap_once()  # whatever a reap = False test left as zombies
            set_subreaper(self._was_subreaper)

    # processes

    def spawn(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process the test owns (the reaper never waits for it)."""
        with self._lock:  # the reaper must not see the new child before it is recorded
            proc = subprocess.Popen(list(argv), **popen_kwargs)
            self._own.add(proc.pid)
        self._procs.append(proc)
        return proc

    def _reaper(self) -> None:
        while not self._stop.wait(self.interval):  # a pacing interval, not a synchronisation
            if self.reap:
                self.reap_once()
            self.passes += 1

    def reap_once(self) -> None:
        """Reap every exited child of this process that the test did not start itself."""
        with self._lock:
            try:
                children = psutil.Process().children()
            except psutil.Error:
                return
            for child in children:
                if child.pid in self._own:
                    continue
                try:
                    pid, _ = os.waitpid(child.pid, os.WNOHANG)
                except ChildProcessError:
                    continue
                if pid:
                    self.reaped.append(pid)

    def wait_passes(self, n: int = 2, timeout: float = 5.0) -> None:
        """Wait until the reaper loop has gone round ``n`` more times."""
        target = self.passes + n
        wait_for(lambda: self.passes >= target, timeout, "the reaper thread")

    def descendants(self) -> list[psutil.Process]:
        """The descendants this World answers for: all of them (a subclass may leave out
        processes its test started for the whole module, such as a cluster)."""
        return descendants()

    # files

    def temp_entries(self) -> list[str]:
        """Everything in the run's temporary folder (``TMPDIR`` of the runs it starts)."""
        try:
            return sorted(os.listdir(self.tmp))
        except OSError:
            return []

    @staticmethod
    def _shm_entries() -> list[str]:
        try:
            return os.listdir(SHM)
        except OSError:
            return []

    def temp_leftovers(self) -> list[str]:
        """``mcpp*`` entries of the run's temporary folder."""
        return [str(self.tmp / n) for n in self.temp_entries() if n.startswith("mcpp")]

    def new_shm(self) -> list[str]:
        """``/dev/shm`` entries that appeared since the World started."""
        return [str(SHM / n) for n in self._shm_entries() if n not in self._shm_before]

    # the check

    def _alive_pids(self, pids: Iterable[int]) -> list[int]:
        left = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                # A pid recorded during this test; an older process is a reused pid.
                if proc.create_time() + 1 < self.started_at:
                    continue
                left.append(pid)
            except psutil.NoSuchProcess:
                pass
        return left

    def assert_clean(self, timeout: float = 5.0, pids: Iterable[int] = ()) -> None:
        """Poll up to ``timeout`` s until no descendant (and none of ``pids``) is alive and no
        temp/shm entry is left; else kill what is alive and fail listing it.

        ``/dev/shm`` is shared with every process of the machine (a multiprocessing lock of
        another program makes a ``sem.mp-*`` entry for a moment), so an entry counts only once
        it has stayed :data:`SHM_SETTLE` seconds.
        """
        pids = list(pids)
        first_seen: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while True:
            procs = {p.pid for p in self.descendants()} | set(self._alive_pids(pids))
            temp = self.temp_leftovers()
            shm_now = self.new_shm()
            now = time.monotonic()
            for name in shm_now:
                first_seen.setdefault(name, now)
            shm = [n for n in shm_now if now - first_seen[n] >= SHM_SETTLE]
            settling = len(shm) < len(shm_now)
            if not procs and not temp and not shm_now:
                return
            if now > deadline and (not settling or now > deadline + SHM_SETTLE + 0.5):
                break
            time.sleep(0.05)
        files = temp + [n for n in shm if not _held_elsewhere(n)]
        if not procs and not files:
            return
        described = [_describe(pid) for pid in sorted(procs)]
        for pid in procs:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        with contextlib.suppress(AssertionError):
            wait_for(lambda: not self._alive_pids(procs), 5, "killed leftovers")
        problems = []
        if described:
            problems.append(
                f"{len(described)} process(es) still alive {timeout:g} s after the run "
                "(killed now):\n  " + "\n  ".join(described)
            )
        if files:
            problems.append("files left behind: " + ", ".join(files))
        raise AssertionError("\n".join(problems))


# --- workflow files --------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


STEP_FIELDS = frozenset(
    {"timeout", "retries", "priority", "isolate", "retry_delay", "retry_on", "uses", "cache"}
)


def step(id: str, fn: str, *depends_on: str, **fields: Any) -> dict[str, Any]:
    """A ``[[steps]]`` table running ``tests.steps.fault_steps:fn``: keyword arguments named in
    :data:`STEP_FIELDS` are step fields, the others go to ``args``."""
    table: dict[str, Any] = {"id": id, "run": f"{STEPS}:{fn}"}
    if depends_on:
        table["depends_on"] = list(depends_on)
    args = {k: v for k, v in fields.items() if k not in STEP_FIELDS}
    if args:
        table["args"] = args
    table.update({k: v for k, v in fields.items() if k in STEP_FIELDS})
    return table


def write_workflow(
    path: Path, steps: Sequence[dict[str, Any]], *, name: str = "faults", **workflow: Any
) -> Path:
    """Write a TOML workflow file with ``[workflow] name`` and ``workflow`` options."""
    lines = ["[workflow]", f"name = {_toml(name)}"]
    lines += [f"{k} = {_toml(v)}" for k, v in workflow.items()]
    for table in steps:
        lines += ["", "[[steps]]"]
        lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- the CLI ---------------------------------------------------------------------------------


@dataclass
class CliResult:
    """How a CLI run ended."""

    code: int
    stdout: str
    stderr: str
    doc: Any = None  # the --json document (None if not parsed)
    pid: int = 0

    def step(self, step_id: str) -> dict[str, Any]:
        steps: dict[str, Any] = self.doc["steps"]
        return steps[step_id]  # type: ignore[no-any-return]

    def status(self, step_id: str) -> str:
        return str(self.step(step_id)["status"])

    def error(self, step_id: str) -> dict[str, Any]:
        error = self.step(step_id)["error"]
        assert error is not None, f"step {step_id!r} has no error: {self.step(step_id)}"
        return error  # type: ignore[no-any-return]

    def statuses(self) -> dict[str, str]:
        return {k: v["status"] for k, v in self.doc["steps"].items()}

    def parse(self) -> CliResult:
        """Parse stdout as the one JSON document (fail if it is not)."""
        try:
            self.doc = json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(
                f"stdout is not one JSON document ({exc}); exit code {self.code}\n"
                f"stdout: {self.stdout[-2000:]!r}\nstderr: {self.stderr[-4000:]}"
            ) from None
        return self


@dataclass
class Cli:
    """A CLI run in progress (stdout and stderr go to files, so a process that inherits them
    cannot hold the test: the run is over when the supervisor exits)."""

    world: World
    proc: subprocess.Popen[Any]
    out: Path
    err: Path
    argv: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stderr_text(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def finish(self, timeout: float = 60.0, *, parse: bool = True) -> CliResult:
        """Wait (bounded) for the CLI to exit; kill it and fail if it does not."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(
                f"the CLI did not exit within {timeout:g} s (killed it)\n"
                f"stderr: {self.stderr_text()[-4000:]}"
            ) from None
        result = CliResult(
            code=code,
            stdout=self.out.read_text(errors="replace"),
            stderr=self.stderr_text(),
            pid=self.proc.pid,
        )
        return result.parse() if parse else result

    def wait_for_file(self, path: Path, timeout: float = 30.0) -> str:
        """Poll until ``path`` has text; fail early (with stderr) if the CLI exits first."""
        return wait_for_file(path, timeout, proc=self)


def cli_env(world: World) -> dict[str, str]:
    env = dict(os.environ)
    env["MCPP_HOME"] = str(world.home)
    env["TMPDIR"] = str(world.tmp)  # what the run leaves there is the run's, nobody else's
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    env.pop("NO_COLOR", None)
    return env


def cli_argv(workflow_file: Path, *args: str, json: bool = True) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mcpp.supervisor",
        "spawn",
        *(["--json"] if json else []),
        "--no-journal",
        str(workflow_file),
        *args,
    ]


_runs = 0


def start_cli(
    world: World, workflow_file: Path, *args: str, json: bool = True, **popen_kwargs: Any
) -> Cli:
    """Start ``mcpp spawn --json --no-journal FILE ARGS`` in the background (without
    ``--json`` unless ``json``: the summary table on stdout)."""
    return start_command(world, cli_argv(workflow_file, *args, json=json), **popen_kwargs)


def start_command(world: World, argv: list[str], **popen_kwargs: Any) -> Cli:
    """Start ``argv`` (a whole command line, ``python -m mcpp.supervisor ...``) as
    :func:`start_cli` starts a run."""
    global _runs
    _runs += 1
    out = world.workdir / f"cli{_runs}.out"
    err = world.workdir / f"cli{_runs}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = world.spawn(
            argv,
            cwd=world.cwd,
            env=cli_env(world),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            **popen_kwargs,
        )
    return Cli(world, proc, out, err, argv)


def run_cli(world: World, workflow_file: Path, *args: str, timeout: float = 60.0) -> CliResult:
    """Run the CLI to the end; return exit code, the parsed --json document and stderr."""
    return start_cli(world, workflow_file, *args).finish(timeout)


def wait_for_file(path: Path, timeout: float = 30.0, proc: Cli | None = None) -> str:
    """Poll (bounded) until ``path`` exists with some text; return the text."""

    def ready() -> str | None:
        if proc is not None and proc.proc.poll() is not None and not path.exists():
            raise AssertionError(
                f"the CLI exited ({proc.proc.returncode}) before {path.name} appeared\n"
                f"stderr: {proc.stderr_text()[-4000:]}"
            )
        try:
            return path.read_text() or None
        except FileNotFoundError:
            return None

    text: str = wait_for(ready, timeout, f"{path}")
    return text


def read_pids(*paths: Path) -> list[int]:
    """The pids written (one or more, whitespace separated) in the files that exist."""
    pids = []
    for path in paths:
        if path.exists():
            pids += [int(x) for x in path.read_text().split()]
    return pids


def sig_caught(pid: int, signum: int) -> bool:
    """True if process ``pid`` catches ``signum`` (its ``SigCgt`` mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False
