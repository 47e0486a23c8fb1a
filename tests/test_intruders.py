"""Intruders: black-box tests that a process which is not part of a run cannot use its actors.

The promise under test: a connection to any mcpp actor (the supervisor's root actor, the
coordinator, a step actor, a pool worker) must first pass a mutual handshake keyed by the run
secret. A peer that does not (raw bytes, valid tractor frames, a correct uid read from /proc)
gets no message served: its connection is closed within :data:`CLOSE_WITHIN` seconds, nothing
it sent is acted on, the actors and the run are unharmed and the legitimate run finishes with
its own correct results. Frames are capped in size. The secret never appears on a command
line, in an environment variable or in the output.

Every test starts ``python -m mcpp.supervisor spawn --json --no-journal FILE`` on a workflow
whose steps (tests/steps/intruder_steps.py) write a "started" file and wait for a "go" file,
attacks the live run from the test process, then lets the run finish and checks its ``--json``
document (status succeeded, exactly the results the steps compute, exit 0) and that nothing of
the run is left (:meth:`tests.world.World.assert_clean`).

Everything the tests assume about tractor's wire format is in the "wire format" section
(:func:`tractor_frame` and the helpers built on it), so a new transport changes that section
alone.
"""

from __future__ import annotations

import ast
import contextlib
import os
import re
import signal
import socket
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil
import pytest

from mcpp import protocol
from mcpp.workflow.spec import StepSpec, WorkflowSpec
from tests.world import (  # world and mode are fixtures
    Cli,
    CliResult,
    World,
    start_cli,
    wait_for,
    write_workflow,
)

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the intruder tests need Linux (/proc, prctl PR_SET_CHILD_SUBREAPER)",
)

LOOPBACK = "127.0.0.1"
CLOSE_WITHIN = 10.0  # seconds an actor may keep an unauthenticated connection open
GATE_LIMIT = 25.0  # a gated step fails by itself after this long (a lost test cannot hang)
RUN_TIMEOUT = 40.0  # the CLI must exit within this long once released
MIB = 1 << 20
RSS_LIMIT = 100 * MIB  # an actor's RSS may not grow more than this from one intruder
FLOOD = 160 * MIB  # what the 4 GiB frame test sends after its header, unless cut off first
EXPECTED = {"a": 40, "b": 70, "sum": 110}  # what the gated workflow's steps compute
STEPS = "tests.steps.intruder_steps"
TOKEN = re.compile(rb"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")  # token_urlsafe(32)


# --- wire format: every assumption about tractor's framing lives here -----------------------


def tractor_frame(obj: Any) -> bytes:
    """One message as tractor 0.1.0a5 frames it on TCP (``MsgpackTCPStream.send``): a 4-byte
    little-endian length, then the MessagePack encoding of ``obj``."""
    payload = msgspec.msgpack.encode(obj)
    return struct.pack("<I", len(payload)) + payload


def handshake(uid: tuple[str, str]) -> bytes:
    """The first frame a tractor peer sends (``Actor._do_handshake``): its uid ``[name, uuid]``."""
    return tractor_frame(list(uid))


def cmd(ns: str, func: str, kwargs: dict[str, Any], uid: tuple[str, str], cid: str) -> bytes:
    """An RPC request (``Actor.send_cmd``): call ``ns.func(**kwargs)``, replies tagged ``cid``.
    ``ns == "self"`` calls a method of the actor itself."""
    return tractor_frame({"cmd": [ns, func, kwargs, list(uid), cid]})


def stream_item(cid: str, data: bytes) -> bytes:
    """One message on the stream of context ``cid`` (``MsgStream.send``)."""
    return tractor_frame({"yield": data, "cid": cid})


def context_opened(cid: str, value: Any) -> list[bytes]:
    """What the callee of context ``cid`` sends when it starts (``_invoke``, ``ctx.started``)."""
    return [
        tractor_frame({"functype": "context", "cid": cid}),
        tractor_frame({"started": value, "cid": cid}),
    ]


def huge_frame_header() -> bytes:
    """A frame announcing 4 GiB - 1 bytes, whose payload starts with a MessagePack ``bin32``
    header announcing 4 GiB - 1 bytes more (both the framing and msgpack say 'huge')."""
    return struct.pack("<I", 0xFFFFFFFF) + b"\xc6" + struct.pack(">I", 0xFFFFFFFF)


def read_frames(data: bytes) -> list[Any]:
    """Decode the complete frames at the start of ``data`` (best effort: stops at the first
    thing that is not a frame). Used only to play along as a fake peer, never to judge."""
    frames = []
    offset = 0
    while len(data) - offset >= 4:
        (size,) = struct.unpack_from("<I", data, offset)
        if len(data) - offset - 4 < size:
            break
        try:
            frames.append(msgspec.msgpack.decode(data[offset + 4 : offset + 4 + size]))
        except msgspec.DecodeError:
            break
        offset += 4 + size
    return frames


def child_args(cmdline: list[str]) -> tuple[tuple[str, str], tuple[str, int]] | None:
    """The ``--uid`` and ``--parent_addr`` of a ``python -m tractor._child`` command line."""
    try:
        uid = ast.literal_eval(cmdline[cmdline.index("--uid") + 1])
        addr = ast.literal_eval(cmdline[cmdline.index("--parent_addr") + 1])
    except (ValueError, IndexError, SyntaxError):
        return None
    return (str(uid[0]), str(uid[1])), (str(addr[0]), int(addr[1]))


# --- polling -------------------------------------------------------------------------------


def poll(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    """:func:`tests.world.wait_for`, polling every 10 ms by default."""
    return wait_for(condition, timeout, what, interval=interval)


# --- an intruding peer ---------------------------------------------------------------------


class Peer:
    """A raw TCP connection from the test to an actor's port; records all it receives."""

    def __init__(self, port: int, label: str) -> None:
        self.port = port
        self.label = label
        self.received = bytearray()
        self.closed = False  # the actor closed (or reset) the connection
        self.sock = socket.create_connection((LOOPBACK, port), timeout=5)
        self.opened = time.monotonic()

    def send(self, data: bytes) -> bool:
        """Send ``data``; False if the actor has closed the connection."""
        if self.closed:
            return False
        try:
            self.sock.settimeout(5)
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.closed = True
            return False
        return True

    def read_for(self, seconds: float, until_closed: bool = False) -> None:
        """Read for ``seconds`` (bounded), or until the actor closes the connection."""
        deadline = time.monotonic() + seconds
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(min(left, 0.2))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except (ConnectionResetError, ConnectionAbortedError):
                self.closed = True
                return
            if not data:
                self.closed = True
                return
            self.received += data

    def drain(self) -> None:
        """Take what has arrived already, without waiting."""
        self.read_for(0.01)

    def served(self, cid: str) -> bool:
        """True if the actor sent back anything tagged with our call id (a reply, an error)."""
        return cid.encode() in self.received

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def peers() -> Iterator[list[Peer]]:
    """A list to put Peers in; every one is closed afterwards."""
    opened: list[Peer] = []
    try:
        yield opened
    finally:
        for peer in opened:
            peer.close()


def connect(opened: list[Peer], port: int, label: str, findings: list[str]) -> Peer | None:
    try:
        peer = Peer(port, label)
    except OSError as exc:
        findings.append(f"{label}: cannot connect to port {port}: {exc!r} (is the actor gone?)")
        return None
    opened.append(peer)
    return peer


def wait_closed(opened: list[Peer], findings: list[str], within: float = CLOSE_WITHIN) -> None:
    """Read every peer until the actor closes it; a finding for each still open ``within`` s
    after it was opened."""
    for peer in opened:
        peer.read_for(max(0.0, peer.opened + within - time.monotonic()), until_closed=True)
        if not peer.closed:
            findings.append(f"{peer.label}: connection still open {within:g} s after it was opened")


# --- the run's processes -------------------------------------------------------------------


def run_procs(cli: Cli) -> list[psutil.Process]:
    """The supervisor and every living descendant of it."""
    try:
        root = psutil.Process(cli.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive


def listeners(cli: Cli) -> dict[int, list[tuple[str, int]]]:
    """pid -> the TCP addresses it listens on, for every process of the run."""
    found: dict[int, list[tuple[str, int]]] = {}
    for proc in run_procs(cli):
        with contextlib.suppress(psutil.Error):
            addrs = [
                (c.laddr.ip, c.laddr.port)
                for c in proc.net_connections(kind="tcp")
                if c.status == psutil.CONN_LISTEN
            ]
            if addrs:
                found[proc.pid] = addrs
    return found


def cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def coordinator_of(cli: Cli) -> psutil.Process | None:
    """The coordinator actor: the supervisor's child actor process, once it has exec'ed (its
    command line is no longer the supervisor's)."""
    try:
        children = psutil.Process(cli.pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        with contextlib.suppress(psutil.Error):
            line = child.cmdline()
            if line and line != cli.argv and any("_child" in a or "--uid" in a for a in line):
                return child
    return None


def coordinator_uid(proc: psutil.Process) -> tuple[str, str]:
    """The coordinator's uid from its command line, else a guess (the name mcpp gives it)."""
    args = child_args(proc.cmdline())
    return args[0] if args else ("mcpp-coordinator", str(uuid.uuid4()))


def parent_addr(cli: Cli, proc: psutil.Process) -> tuple[str, int]:
    """Where the coordinator connects back to: its ``--parent_addr``, else the supervisor's
    (first) listening port."""
    args = child_args(proc.cmdline())
    if args:
        return args[1]
    ports = poll(lambda: listeners(cli).get(cli.pid), 10, "the supervisor to listen")
    return ports[0]


@dataclass
class Target:
    """One listening port of the run, and whose it is."""

    role: str  # supervisor, coordinator, step, worker
    pid: int
    port: int

    @property
    def label(self) -> str:
        return f"{self.role} (pid {self.pid}, port {self.port})"


@dataclass
class LiveRun:
    """A gated run in progress: its steps wait for ``go``."""

    world: World
    mode: str
    cli: Cli
    go: Path
    started: list[Path]
    coordinator: psutil.Process
    coordinator_uid: tuple[str, str]
    targets: list[Target] = field(default_factory=list)

    def actor_pids(self) -> set[int]:
        return {t.pid for t in self.targets}

    def release(self, findings: list[str]) -> CliResult | None:
        """Let the steps finish; the CLI's result, or None (a finding) if it did not exit."""
        self.go.write_text("go")
        return finish(self.cli, RUN_TIMEOUT, findings)


def gated_workflow(world: World, mode: str) -> tuple[Path, Path, list[Path]]:
    """Two gated steps in parallel (results 40 and 70) and their sum (110)."""
    go = world.workdir / "go"
    started = [world.workdir / "a.started", world.workdir / "b.started"]
    steps = []
    for step_id, value, mark in (("a", 4, started[0]), ("b", 7, started[1])):
        args = {"started": str(mark), "go": str(go), "value": value, "limit": GATE_LIMIT}
        steps.append({"id": step_id, "run": f"{STEPS}:gate", "args": args})
    steps.append({"id": "sum", "run": f"{STEPS}:total", "depends_on": ["a", "b"]})
    opts: dict[str, Any] = {"actors": mode, "max_concurrent": 2}
    if mode == "pool":
        opts["workers"] = 2
    wf = write_workflow(world.workdir / "wf.toml", steps, name="intruders", **opts)
    return wf, go, started


def start_gated(world: World, mode: str) -> LiveRun:
    """Start the gated run and wait until its steps are running and its actors listen."""
    wf, go, started = gated_workflow(world, mode)
    cli = start_cli(world, wf)
    # per-step: both steps run at once in two step actors; pool: a worker may hold both in
    # its queue, so only one is sure to have started.
    needed = len(started) if mode == "per_step" else 1

    def ready() -> bool:
        if cli.proc.poll() is not None:
            raise AssertionError(
                f"the CLI exited early ({cli.proc.returncode}): {cli.stderr_text()}"
            )
        return sum(p.exists() for p in started) >= needed

    poll(ready, 60, "the gated steps to start")
    coordinator = poll(lambda: coordinator_of(cli), 10, "the coordinator process")
    run = LiveRun(world, mode, cli, go, started, coordinator, coordinator_uid(coordinator))
    step_pids = {int(p.read_text()) for p in started if p.exists()}
    role_of = {cli.pid: "supervisor", coordinator.pid: "coordinator"}

    def found_actors() -> bool:
        ports = listeners(cli)
        run.targets = []
        for pid, addrs in sorted(ports.items()):
            if pid in role_of:
                role = role_of[pid]
            elif mode == "pool":
                role = "worker"
            else:
                role = "step"
            for _, port in addrs:
                run.targets.append(Target(role, pid, port))
        actors = {t.pid for t in run.targets}
        return {cli.pid, coordinator.pid} | step_pids <= actors

    poll(found_actors, 10, "the run's actors to listen")
    return run


def finish(cli: Cli, timeout: float, findings: list[str]) -> CliResult | None:
    """Wait for the CLI; its parsed result, or None and a finding if it hung or printed no
    --json document (then with the last lines of its stderr)."""
    try:
        result = cli.finish(timeout, parse=False)
    except AssertionError as exc:
        findings.append(str(exc).splitlines()[0])
        return None
    try:
        return result.parse()
    except AssertionError as exc:
        tail = [line.strip() for line in result.stderr.splitlines() if line.strip()][-2:]
        findings.append(f"{str(exc).splitlines()[0]}; stderr ends: {tail}")
        return None


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def why(result: CliResult) -> str:
    return f"exit {result.code}; statuses {result.statuses()}; stderr: ...{result.stderr[-1200:]}"


def check_run_succeeded(result: CliResult | None, findings: list[str]) -> None:
    """The legitimate run finished on its own with exactly its own results."""
    if result is None:
        return  # it did not exit: already a finding
    if result.doc is None:
        findings.append(f"no --json document: {why(result)}")
        return
    if result.code != 0:
        findings.append(f"the run exited {result.code}, not 0: {why(result)}")
    if result.doc.get("status") != "succeeded":
        findings.append(f"the run's status is {result.doc.get('status')!r}: {why(result)}")
    for step_id, value in EXPECTED.items():
        record = result.doc.get("steps", {}).get(step_id)
        if record is None or record.get("status") != "succeeded" or record.get("result") != value:
            findings.append(f"step {step_id!r}: expected result {value}, got {record}")
    if set(result.doc.get("steps", {})) != set(EXPECTED):
        findings.append(f"unexpected steps in the document: {sorted(result.doc['steps'])}")


def check_actors_alive(run: LiveRun, findings: list[str]) -> None:
    for target in run.targets:
        if not alive(target.pid):
            findings.append(f"{target.label} died while the run was live")
    if run.cli.proc.poll() is not None:
        findings.append(f"the supervisor exited ({run.cli.proc.returncode}) while the run was live")


def check_loopback_only(run: LiveRun, findings: list[str]) -> None:
    for pid, addrs in listeners(run.cli).items():
        for ip, port in addrs:
            if ip != LOOPBACK:
                findings.append(f"pid {pid} {cmdline(pid)[:3]} listens on {ip}:{port}")


def report(findings: list[str]) -> None:
    assert not findings, "\n".join(["the intruder got through:", *findings])


def uid_fake() -> tuple[str, str]:
    return ("intruder", str(uuid.uuid4()))


def new_cid(tag: str) -> str:
    return f"intruder-{tag}-{uuid.uuid4().hex[:12]}"


def closed_port() -> int:
    """A loopback port that nobody listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


# --- fixtures ------------------------------------------------------------------------------


# --- 1. racing the coordinator's connect-back ----------------------------------------------


@pytest.mark.timeout(90)
def test_race_the_coordinators_connect_back(world: World) -> None:
    """Connect to the supervisor's port as the coordinator (its uid from /proc) before the
    coordinator does, and play the coordinator's part: nothing of the run may come back.

    To win the race every time, the test stops the coordinator (SIGSTOP) the moment its
    command line is readable, before it can connect, and lets it go on once the intruder has
    read for a while (a slow machine does the same)."""
    wf, go, started = gated_workflow(world, "per_step")
    cli = start_cli(world, wf)
    findings: list[str] = []
    coordinator = poll(lambda: coordinator_of(cli), 30, "the coordinator process", 0.002)
    stopped = False
    with peers() as opened:
        try:
            coordinator.send_signal(signal.SIGSTOP)
            stopped = True
            uid = coordinator_uid(coordinator)
            parent = parent_addr(cli, coordinator)
            assert parent[0] == LOOPBACK, f"the supervisor listens on {parent}"
            already = [
                c
                for c in coordinator.net_connections(kind="tcp")
                if c.raddr and c.raddr.port == parent[1]
            ]
            if already:
                pytest.skip("the coordinator connected back before the test could stop it")
            peer = connect(opened, parent[1], "supervisor (as the coordinator)", findings)
            assert peer is not None, findings
            peer.send(handshake(uid))
            answered: set[str] = set()
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline and not peer.closed:
                peer.read_for(0.2)
                for frame in read_frames(bytes(peer.received)):
                    # Play the coordinator: accept every context the supervisor opens on us,
                    # so that it would go on to send its RunWorkflow.
                    if isinstance(frame, dict) and "cmd" in frame:
                        cid = str(frame["cmd"][4])
                        if cid not in answered:
                            answered.add(cid)
                            for data in context_opened(cid, os.getpid()):
                                peer.send(data)
        finally:
            if stopped:
                with contextlib.suppress(psutil.Error):
                    coordinator.send_signal(signal.SIGCONT)
        got = bytes(peer.received)
        if b"mcpp_secret" in got:
            findings.append(
                "the supervisor sent its runtime variables (mcpp_secret) to the intruder"
            )
        if b"run_workflow" in got:
            findings.append("the supervisor sent the RunWorkflow (with the secret) to the intruder")
        if any(isinstance(f, dict) and "cmd" in f for f in read_frames(got)):
            findings.append("the supervisor sent RPC requests (cmd) to the intruder")
        peer.close()
    try:
        poll(
            lambda: all(p.exists() for p in started) or cli.proc.poll() is not None,
            20,
            "the legitimate steps to start",
        )
    except AssertionError as exc:
        findings.append(f"the legitimate run hung: {exc}")
    go.write_text("go")
    check_run_succeeded(finish(cli, RUN_TIMEOUT if not findings else 10, findings), findings)
    report(findings)
    world.assert_clean()


# --- 2. raw peers on every port ------------------------------------------------------------


def attack_silent(run: LiveRun, opened: list[Peer], findings: list[str], marker: Path) -> None:
    """(a) Connect and send nothing."""
    for target in run.targets:
        connect(opened, target.port, f"{target.label}: silent peer", findings)
    wait_closed(opened, findings)


GARBAGE: dict[str, bytes] = {
    "http request": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "random bytes": os.urandom(4096),
    "zero-length frames": b"\0\0\0\0" * 8,
    "frames of invalid msgpack": (struct.pack("<I", 5) + b"\xc1" * 5) * 8,
    "truncated frame": struct.pack("<I", 100) + b"\x92",
    "handshake that is an int": tractor_frame(5),
    "handshake that is nil": tractor_frame(None),
    "handshake of one element": tractor_frame(["intruder"]),
    "handshake that is a map": tractor_frame({"cmd": ["self", "cancel", {}, ["x", "y"], "c"]}),
    "handshake of huge strings": tractor_frame(["x" * 100_000, "y" * 100_000]),
}


def attack_garbage(run: LiveRun, opened: list[Peer], findings: list[str], marker: Path) -> None:
    """(b), (c) Bytes that are not tractor's, frames of nothing or invalid MessagePack, and
    handshakes that are not a uid."""
    for target in run.targets:
        for name, data in GARBAGE.items():
            peer = connect(opened, target.port, f"{target.label}: {name}", findings)
            if peer is not None:
                peer.send(data)
    wait_closed(opened, findings)


def send_calls(
    run: LiveRun,
    opened: list[Peer],
    findings: list[str],
    calls: list[tuple[str, str, dict[str, Any]]],
    uids: list[tuple[str, str]],
    *,
    after_started: Callable[[str], list[bytes]] | None = None,
) -> None:
    """(d) For every port, every uid and every call: handshake, then the ``cmd`` (one
    connection each). A reply tagged with our call id means the actor served us."""
    sent: list[tuple[Peer, str]] = []
    for target in run.targets:
        for uid in uids:
            who = "its parent's uid" if uid == run.coordinator_uid else "a made-up uid"
            for ns, func, kwargs in calls:
                cid = new_cid(func)
                label = f"{target.label}: {ns}:{func} as {who}"
                peer = connect(opened, target.port, label, findings)
                if peer is None:
                    continue
                peer.send(handshake(uid))
                peer.send(cmd(ns, func, kwargs, uid, cid))
                sent.append((peer, cid))
    for peer, cid in sent:
        peer.read_for(0.3)
        if after_started is not None and peer.served(cid):
            # The actor opened the context for us: go on and send it work.
            for data in after_started(cid):
                peer.send(data)
    wait_closed(opened, findings)
    for peer, cid in sent:
        if peer.served(cid):
            frames = [f for f in read_frames(bytes(peer.received)) if isinstance(f, dict)]
            summary = [
                {k: (str(v)[:80]) for k, v in f.items()} for f in frames if f.get("cid") == cid
            ][:3]
            findings.append(f"{peer.label}: served (replies: {summary})")


def attack_self_calls(run: LiveRun, opened: list[Peer], findings: list[str], marker: Path) -> None:
    """(d) The actor's own methods: connect out to us, start a server on every interface,
    take the debugger's TTY lock."""
    with socket.socket() as trap:
        trap.bind((LOOPBACK, 0))
        trap.listen(16)
        trap_addr = [LOOPBACK, trap.getsockname()[1]]
        calls = [
            ("self", "_from_parent", {"parent_addr": trap_addr}),
            ("self", "_async_main", {"accept_addr": ["0.0.0.0", 0]}),
            ("tractor._debug", "lock_tty_for_child", {"subactor_uid": ["intruder", "x"]}),
        ]
        send_calls(run, opened, findings, calls, [uid_fake(), run.coordinator_uid])
        trap.settimeout(0.5)
        called_back = 0
        with contextlib.suppress(TimeoutError):
            while True:
                conn, _ = trap.accept()
                conn.close()
                called_back += 1
        if called_back:
            findings.append(f"actors connected out to the intruder's address {called_back} time(s)")


def attack_registry(run: LiveRun, opened: list[Peer], findings: list[str], marker: Path) -> None:
    """(d) The registry (the supervisor's root actor is the run's registrar)."""
    calls = [
        (
            "self",
            "register_actor",
            {"uid": ["mcpp-coordinator", "fake"], "sockaddr": ["10.9.9.9", 9]},
        ),
        ("self", "find_actor", {"name": "mcpp-coordinator"}),
        ("self", "get_registry", {}),
        ("self", "unregister_actor", {"uid": list(run.coordinator_uid)}),
    ]
    send_calls(run, opened, findings, calls, [uid_fake()])


def evil_start(marker: Path) -> protocol.StartStep:
    kwargs = msgspec.Raw(msgspec.msgpack.encode({"command": f"touch {marker}"}))
    return protocol.StartStep(
        version=protocol.PROTOCOL_VERSION,
        run_id="intruder",
        step="evil",
        attempt=1,
        target="os:system",
        kwargs=kwargs,
    )


def evil_messages(marker: Path) -> list[bytes]:
    """RunWorkflow / StartStep / StartBatch whose step runs ``touch marker``, as typed
    messages (messages carry no secret: the connection itself must be authenticated) and as a
    hand-made map, and one with a made-up ``secret`` field of the old protocol."""
    spec = WorkflowSpec(
        name="evil",
        steps=(StepSpec(id="evil", run="os:system", args={"command": f"touch {marker}"}),),
    )
    start = evil_start(marker)
    messages = [
        protocol.encode(
            protocol.RunWorkflow(version=protocol.PROTOCOL_VERSION, run_id="evil", spec=spec)
        ),
        protocol.encode(start),
        protocol.encode(protocol.StartBatch(steps=(start,))),
    ]
    no_secret = {
        "kind": "start_step",
        "version": protocol.PROTOCOL_VERSION,
        "run_id": "intruder",
        "step": "evil",
        "attempt": 1,
        "target": "os:system",
        "kwargs": {"command": f"touch {marker}"},
    }
    messages.append(msgspec.msgpack.encode(no_secret))
    messages.append(msgspec.msgpack.encode({**no_secret, "secret": "A" * 43}))
    return messages


def attack_endpoints(run: LiveRun, opened: list[Peer], findings: list[str], marker: Path) -> None:
    """(d) mcpp's own endpoints with a made-up secret, an empty one and none, asking to run
    ``os:system("touch MARKER")``."""
    messages = evil_messages(marker)
    calls = [
        ("mcpp.actors.coordinate", "coordinate", {}),
        ("mcpp.actors.step", "serve", {}),
        ("os", "system", {"command": f"touch {marker}"}),
    ]

    def work(cid: str) -> list[bytes]:
        return [stream_item(cid, data) for data in messages]

    send_calls(run, opened, findings, calls, [uid_fake(), run.coordinator_uid], after_started=work)


def attack_cancel(run: LiveRun, opened: list[Peer], findings: list[str], marker: Path) -> None:
    """(d) Stop the actor: cancel it, cancel a task, make it fail to reach a 'parent'."""
    calls = [
        ("self", "cancel", {}),
        ("self", "_cancel_task", {"cid": "intruder"}),
        ("self", "_from_parent", {"parent_addr": [LOOPBACK, closed_port()]}),
        ("self", "cancel_soon", {}),
    ]
    # Steps first, the supervisor last: each target is attacked while its parent still runs.
    order = {"step": 0, "worker": 0, "coordinator": 1, "supervisor": 2}
    run.targets.sort(key=lambda t: order[t.role])
    send_calls(run, opened, findings, calls, [uid_fake(), run.coordinator_uid])


ATTACKS = {
    "silent": attack_silent,
    "garbage": attack_garbage,
    "self_calls": attack_self_calls,
    "registry": attack_registry,
    "endpoints": attack_endpoints,
    "cancel": attack_cancel,
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_raw_peers_on_every_port(world: World, mode: str, attack: str) -> None:
    """Every listening port of the run (supervisor, coordinator, step actors or workers) gets
    the intruder's ``attack``; each connection must be closed within CLOSE_WITHIN s with
    nothing served, no marker file may appear, no actor may die, no listener may appear
    off loopback, and the run must succeed with its own results."""
    run = start_gated(world, mode)
    marker = world.workdir / "marker"
    findings: list[str] = []
    roles = {t.role for t in run.targets}
    assert {"supervisor", "coordinator"} <= roles and roles & {"step", "worker"}, run.targets
    check_loopback_only(run, findings)
    try:
        with peers() as opened:
            ATTACKS[attack](run, opened, findings, marker)
            check_actors_alive(run, findings)
            check_loopback_only(run, findings)
    finally:
        result = run.release(findings)
    if marker.exists():
        findings.append(f"the marker file appeared: the intruder ran code ({marker})")
    check_run_succeeded(result, findings)
    report(findings)
    world.assert_clean()


# --- 3. a 4 GiB frame ----------------------------------------------------------------------


def flood(target: Target, findings: list[str], after_handshake: bool) -> None:
    """Announce a 4 GiB frame and send up to FLOOD bytes of it; the actor's RSS must not grow
    by more than RSS_LIMIT, and it should cut the connection."""
    label = f"{target.label}: 4 GiB frame{' after a handshake' if after_handshake else ''}"
    try:
        proc = psutil.Process(target.pid)
        before = proc.memory_info().rss
    except psutil.Error:
        findings.append(f"{label}: not sent, the actor is gone")
        return
    peak = before
    with peers() as opened:
        peer = connect(opened, target.port, label, findings)
        if peer is None:
            return
        if after_handshake:
            peer.send(handshake(uid_fake()))
        peer.send(huge_frame_header())
        chunk = b"\x00" * MIB
        sent = 0
        while sent < FLOOD and peer.send(chunk):
            sent += len(chunk)
            with contextlib.suppress(psutil.Error):
                peak = max(peak, proc.memory_info().rss)
        # Let the actor read what is in flight, measuring as it does.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            with contextlib.suppress(psutil.Error):
                peak = max(peak, proc.memory_info().rss)
            peer.read_for(0.05)
        grew = peak - before
        if not alive(target.pid):
            findings.append(f"{label}: the actor died after {sent / MIB:.0f} MiB sent")
        if grew > RSS_LIMIT:
            findings.append(
                f"{label}: RSS grew by {grew / MIB:.0f} MiB (limit {RSS_LIMIT / MIB:.0f}) "
                f"after {sent / MIB:.0f} MiB sent"
            )
        wait_closed(opened, findings)


@pytest.mark.timeout(120)
def test_a_4_gib_frame_is_refused_without_buffering(world: World, mode: str) -> None:
    """A frame announcing 4 GiB to the coordinator and to a step/worker actor: the actor's
    RSS stays within RSS_LIMIT of where it was, the connection is cut, the run succeeds."""
    run = start_gated(world, mode)
    findings: list[str] = []
    chosen = [next(t for t in run.targets if t.role == "coordinator")]
    chosen.append(next(t for t in run.targets if t.role in ("step", "worker")))
    try:
        for target in chosen:
            flood(target, findings, after_handshake=False)
        check_actors_alive(run, findings)
    finally:
        result = run.release(findings)
    check_run_succeeded(result, findings)
    report(findings)
    world.assert_clean()


# --- 4. the secret stays out of argv, the environment and the output -----------------------


def own_texts() -> set[bytes]:
    """The test process's own environment entries and arguments (inherited by the run, not
    the run's doing): matches in them do not count."""
    texts = {f"{k}={v}".encode() for k, v in os.environ.items()}
    texts |= {a.encode() for a in sys.argv}
    return texts


def suspicious(text: bytes) -> list[str]:
    """What in ``text`` could be a run secret: the word, or a token_urlsafe(32) token."""
    found = []
    if b"secret" in text.lower():
        at = text.lower().index(b"secret")
        found.append(f"'secret' in ...{text[max(0, at - 40) : at + 60]!r}...")
    found += [f"token {m.group().decode()!r}" for m in TOKEN.finditer(text)]
    return found


@pytest.mark.timeout(90)
def test_hygiene_run_credential_not_in_argv_env_or_output(world: World, mode: str) -> None:
    """While the run is live, no process of it has the secret (or anything that looks like
    one) in its command line or environment; the --json output and stderr have none."""
    run = start_gated(world, mode)
    findings: list[str] = []
    mine = own_texts()
    try:
        procs = run_procs(run.cli)
        assert len(procs) >= 4, [p.cmdline() for p in procs]
        for proc in procs:
            for what in ("cmdline", "environ"):
                try:
                    data = Path(f"/proc/{proc.pid}/{what}").read_bytes()
                except OSError:
                    continue
                for entry in data.split(b"\0"):
                    if entry and entry not in mine:
                        findings += [
                            f"pid {proc.pid} {cmdline(proc.pid)[:3]} {what}: {s}"
                            for s in suspicious(entry)
                        ]
    finally:
        result = run.release(findings)
    if result is not None:
        for name, text in (("--json output", result.stdout), ("stderr", result.stderr)):
            findings += [f"{name}: {s}" for s in suspicious(text.encode())]
    check_run_succeeded(result, findings)
    report(findings)
    world.assert_clean()
