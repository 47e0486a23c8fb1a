"""Dask mode across two network namespaces: the scheduler in one, a worker and the CLI in the
other, a veth pair between them (root and ``ip netns`` only; skipped with the reason
otherwise). The namespaces, the scheduler and the worker are this test's own."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.world import World, cli_argv, cli_env, write_workflow

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="network namespaces are Linux's"
)

STEPS = "tests.steps.dask_steps"
SCHEDULER = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
WORKER = [sys.executable, "-m", "distributed.cli.dask_worker"]
READY_TIMEOUT = 90.0


def netns_reason() -> str | None:
    """Why the two-namespace test cannot run here, or None."""
    import shutil

    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "needs the ip command (iproute2)"
    probe = f"mcpp-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.decode(errors='replace').strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def two_namespaces() -> Iterator[tuple[str, str]]:
    """Namespaces A and B joined by a veth pair: 10.231.0.1 in A, 10.231.0.2 in B."""
    tag = os.getpid() % 100000
    a, b = f"mcpp-a-{tag}", f"mcpp-b-{tag}"
    ip("netns", "add", a)
    try:
        ip("netns", "add", b)
        try:
            ip(
                "link",
                "add",
                f"va{tag}",
                "netns",
                a,
                "type",
                "veth",
                "peer",
                "name",
                f"vb{tag}",
                "netns",
                b,
            )
            for ns, dev, addr in (
                (a, f"va{tag}", "10.231.0.1/24"),
                (b, f"vb{tag}", "10.231.0.2/24"),
            ):
                ip("-n", ns, "link", "set", "lo", "up")
                ip("-n", ns, "addr", "add", addr, "dev", dev)
                ip("-n", ns, "link", "set", dev, "up")
            yield a, b
        finally:
            subprocess.run(["ip", "netns", "del", b], check=False)
    finally:
        subprocess.run(["ip", "netns", "del", a], check=False)


def test_across_two_network_namespaces(world: World) -> None:
    """The scheduler in namespace A, a worker and the CLI in B, a veth pair between them."""
    reason = netns_reason()
    if reason is not None:
        pytest.skip(reason)
    env = cli_env(world)
    port = "8786"
    address = f"tcp://10.231.0.1:{port}"
    with two_namespaces() as (a, b):

        def in_ns(ns: str, *argv: str, log: str) -> subprocess.Popen[Any]:
            with (world.workdir / log).open("wb") as out:
                return world.spawn(
                    ["ip", "netns", "exec", ns, *argv],
                    env=env,
                    cwd=world.cwd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )

        scheduler = in_ns(
            a, *SCHEDULER, "--host", "10.231.0.1", "--port", port, "--no-dashboard", log="a.log"
        )
        worker_options = ["--nthreads", "1", "--host", "10.231.0.2", "--no-dashboard"]
        nanny = in_ns(b, *WORKER, address, *worker_options, log="b.log")
        try:
            ready = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    b,
                    sys.executable,
                    "-c",
                    "import sys; from distributed import Client; "
                    f"c = Client({address!r}, timeout={READY_TIMEOUT}); "
                    f"c.wait_for_workers(1, timeout={READY_TIMEOUT}); c.close()",
                ],
                env=env,
                capture_output=True,
                timeout=2 * READY_TIMEOUT,
                check=False,
            )
            assert ready.returncode == 0, ready.stderr.decode()[-2000:]
            steps = [
                {"id": "where", "run": f"{STEPS}:net_namespace"},
                {"id": "then", "run": f"{STEPS}:worker_pid", "depends_on": ["where"]},
            ]
            wf = write_workflow(world.workdir / "wf.toml", steps, actors="dask", scheduler=address)
            done = subprocess.run(
                ["ip", "netns", "exec", b, *cli_argv(wf)],
                env=env,
                cwd=world.cwd,
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert done.returncode == 0, done.stderr.decode()[-3000:]
            doc = json.loads(done.stdout)
            in_b = (
                subprocess.run(
                    ["ip", "netns", "exec", b, "readlink", "/proc/self/ns/net"],
                    capture_output=True,
                    check=True,
                )
                .stdout.decode()
                .strip()
            )
            assert doc["steps"]["where"]["result"] == in_b
            assert doc["steps"]["where"]["result"] != os.readlink("/proc/self/ns/net")
        finally:
            for proc in (nanny, scheduler):
                proc.terminate()
            for proc in (nanny, scheduler):
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
