"""``mcpp mcp`` over stdio, driven by the SDK's own ClientSession: the tools as an assistant uses
them, on real runs (each a ``mcpp spawn`` child of the server), the machine checked after."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import anyio
import pytest

from tests.mcp.client import GATED as gated_body
from tests.mcp.client import ROOT, call, call_error, session, wait_status, write_flow
from tests.world import World, descendants, gone, wait_for, wait_for_file

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the MCP tests count processes through /proc"
)

TOOLS = {
    "workflow_validate",
    "workflow_submit",
    "workflow_status",
    "workflow_result",
    "workflow_cancel",
    "workflow_resume",
    "workflow_list",
    "workflow_dependencies",
    "workflow_logs",
    "templates_list",
}
GATED = (
    gated_body
    + """
[[steps]]
id = "after"
run = "tests.steps.fault_steps:count"
depends_on = ["wait"]
"""
)


def gated(world: World) -> tuple[Path, Path, Path]:
    """A workflow whose step ``wait`` writes its pid to ``mark`` and waits for ``gate``."""
    mark, gate = world.workdir / "wait.pid", world.workdir / "gate"
    flow = write_flow(world.workdir / "flows" / "gated.toml", GATED.format(mark=mark, gate=gate))
    return flow, mark, gate


def run(fn: object, *args: object) -> None:
    anyio.run(fn, *args, backend="asyncio")  # type: ignore[arg-type]


def test_tools_are_listed_with_descriptions_and_schemas(world: World) -> None:
    async def main() -> None:
        async with session(world) as client:
            listed = (await client.list_tools()).tools
            assert {tool.name for tool in listed} == TOOLS
            for tool in listed:
                assert tool.description and len(tool.description) > 40, tool.name
                assert tool.input_schema["type"] == "object", tool.name
                assert tool.output_schema is not None, tool.name
            submit = next(tool for tool in listed if tool.name == "workflow_submit")
            props = submit.input_schema["properties"]
            assert {"file", "params", "max_concurrent", "actors", "fail_fast"} <= set(props)
            assert "description" in props["max_concurrent"]
            assert "run_id" in submit.output_schema["properties"]  # type: ignore[index]
            templates = await client.list_resource_templates()
            assert "mcpp://runs/{run_id}" in {t.uri_template for t in templates.resource_templates}

    run(main)


def test_validate_names_the_step_and_field_and_submit_refuses_the_same(world: World) -> None:
    broken = write_flow(
        world.workdir / "flows" / "broken.toml",
        '[workflow]\nname = "b"\n\n[[steps]]\nid = "a"\nrun = "tests.steps.fault_steps:number"\n\n'
        '[[steps]]\nid = "late"\nrun = "tests.steps.fault_steps:number"\ntimeout = "soon"\n',
    )

    async def main() -> None:
        async with session(world, "--root", str(world.workdir / "flows")) as client:
            verdict = await call(client, "workflow_validate", file="broken.toml")
            assert verdict["valid"] is False
            error = verdict["error"]
            assert (error["step"], error["field"]) == ("late", "timeout")
            assert error["file"] == str(broken.resolve())
            assert error["message"].startswith(f"invalid workflow: {broken.resolve()}: ")
            assert "step 'late', field 'timeout'" in error["message"]
            text = await call_error(client, "workflow_submit", file="broken.toml")
            assert "invalid workflow:" in text and "step 'late', field 'timeout'" in text
            assert (await call(client, "workflow_list"))["runs"] == []  # nothing started

    run(main)


def test_wordcount_submit_poll_status_get_result_list_and_graph(world: World) -> None:
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def main() -> None:
        async with session(world, "--root", str(ROOT), cwd=ROOT) as client:
            submitted = await call(
                client, "workflow_submit", file="examples/wordcount.toml", params={"top": 2}
            )
            run_id = submitted["run_id"]
            assert submitted["status"] == "running"
            assert submitted["steps"] == ["count_a", "count_b", "count_c", "reduce"]
            seen = set()
            deadline = time.monotonic() + 60
            while True:
                status = await call(client, "workflow_status", run_id=run_id)
                assert status["owned"] is True and status["workflow"] == "wordcount"
                assert sum(status["counts"].values()) == 4
                seen.add(status["status"])
                if status["finished"]:
                    break
                assert time.monotonic() < deadline, status
                await anyio.sleep(0.05)  # polling as a client would; the loop waits on status
            assert status["status"] == "succeeded", status
            assert status["counts"] == {"succeeded": 4} and status["running"] == []
            result = await client.call_tool(
                "workflow_result",
                {"run_id": run_id[:10], "wait_s": 30},
                progress_callback=on_progress,
            )
            assert not result.is_error, result.content
            doc = result.structured_content["document"]  # type: ignore[index]
            assert doc["run_id"] == run_id and doc["status"] == "succeeded"
            top = doc["steps"]["reduce"]["result"]["top"]
            assert len(top) == 2 and all(isinstance(n, int) for _, n in top)

            listed = await call(client, "workflow_list", workflow="wordcount", status="succeeded")
            assert [row["run_id"] for row in listed["runs"]] == [run_id]
            assert listed["runs"][0]["owned"] is True
            assert (await call(client, "workflow_list", status="failed"))["runs"] == []

            graph = await call(client, "workflow_dependencies", file="examples/wordcount.toml")
            assert graph["levels"] == [["count_a", "count_b", "count_c"], ["reduce"]]
            assert {(e["upstream"], e["downstream"]) for e in graph["edges"]} == {
                ("count_a", "reduce"),
                ("count_b", "reduce"),
                ("count_c", "reduce"),
            }
            assert graph["topological_order"][-1] == "reduce"
            assert graph["critical_path"]["measure"] == "steps"
            assert (
                graph["critical_path"]["length"] == 2
                and graph["critical_path"]["steps"][-1] == "reduce"
            )
            measured = await call(client, "workflow_dependencies", run_id="last")
            assert measured["critical_path"]["measure"] == "duration_s"
            assert {n["status"] for n in measured["nodes"]} == {"succeeded"}
            resource = await client.read_resource(f"mcpp://runs/{run_id}")
            assert f'"run_id":"{run_id}"' in resource.contents[0].text  # type: ignore[union-attr]

    run(main)


def test_cancel_stops_a_long_run_and_leaves_no_process(world: World) -> None:
    flow, mark, gate = gated(world)

    async def main() -> None:
        async with session(world, "--root", str(flow.parent)) as client:
            run_id = (await call(client, "workflow_submit", file="gated.toml"))["run_id"]
            step_pid = int(await anyio.to_thread.run_sync(wait_for_file, mark, 60))
            status = await wait_status(
                client, run_id, "wait running", lambda s: s["running"] == ["wait"]
            )
            assert status["running"] == ["wait"] and status["steps"]["first"] == "succeeded"
            cancelled = await call(client, "workflow_cancel", run_id=run_id)
            assert cancelled["status"] == "cancelled" and cancelled["exit_code"] == 130
            assert cancelled["steps"] == {
                "first": "succeeded",
                "wait": "cancelled",
                "after": "skipped",
            }
            assert gone(step_pid)
            # Only the server itself is left below the test.
            left = wait_for(
                lambda: (d := descendants()) and len(d) == 1 and d,
                10,
                "the run's processes gone",
            )
            assert "mcp" in left[0].cmdline()
            again = await call(client, "workflow_status", run_id=run_id)
            assert again["status"] == "cancelled" and again["finished"] is True

    run(main)
    assert not gate.exists()


def test_root_refuses_files_outside_it_and_inline_needs_the_flag(world: World) -> None:
    flow, _, _ = gated(world)
    outside = write_flow(world.workdir / "outside.toml", GATED.format(mark="m", gate="g"))
    os.symlink(outside, flow.parent / "link.toml")

    async def main() -> None:
        async with session(world, "--root", str(flow.parent)) as client:
            for path in ("../outside.toml", str(outside), "link.toml"):
                for tool in ("workflow_validate", "workflow_submit", "workflow_dependencies"):
                    text = await call_error(client, tool, file=path)
                    assert "outside the server's roots" in text and str(flow.parent) in text
            text = await call_error(client, "workflow_submit", inline=GATED)
            assert "--allow-inline" in text
            assert (await call(client, "workflow_list"))["runs"] == []

    run(main)


QUICK = """
[workflow]
name = "quick"

[params]
n = 2

[[steps]]
id = "one"
run = "tests.steps.fault_steps:number"
args = { value = "${n}" }
"""


def test_inline_workflows_with_allow_inline(world: World) -> None:
    async def main() -> None:
        async with session(world, "--allow-inline") as client:
            broken = QUICK.replace('value = "${n}"', 'value = "${n}" }\ntimeout = "x"\n#')
            verdict = await call(client, "workflow_validate", inline=broken)
            assert verdict["valid"] is False
            assert verdict["error"]["file"] == "inline workflow"
            assert (verdict["error"]["step"], verdict["error"]["field"]) == ("one", "timeout")
            as_object = {"workflow": {"name": "j"}, "steps": [{"id": "s", "run": "os:getpid"}]}
            verdict = await call(client, "workflow_validate", inline=as_object)
            assert verdict["valid"] is True and verdict["steps"] == ["s"]
            as_yaml = "workflow: {name: y}\nsteps:\n  - {id: t, run: 'os:getpid'}\n"
            verdict = await call(client, "workflow_validate", inline=as_yaml, inline_format="yaml")
            assert verdict["valid"] is True and verdict["workflow"] == "y"
            run_id = (await call(client, "workflow_submit", inline=QUICK, params={"n": 5}))[
                "run_id"
            ]
            result = await call(client, "workflow_result", run_id=run_id, wait_s=60)
            assert result["status"] == "succeeded", result
            assert result["document"]["steps"]["one"]["result"] == 5
            kept = world.home / "runs" / run_id / "workflow.toml"
            assert kept.read_text() == QUICK and kept.stat().st_mode & 0o777 == 0o600

    run(main)


LOUD = """
[workflow]
name = "loud"

[[steps]]
id = "loud"
run = "tests.steps.mcp_steps:shout"
args = { lines = 3 }
"""


def test_logs_of_a_printing_step(world: World) -> None:
    flow = write_flow(world.workdir / "flows" / "loud.toml", LOUD)

    async def main() -> None:
        async with session(world, "--root", str(flow.parent)) as client:
            run_id = (await call(client, "workflow_submit", file="loud.toml"))["run_id"]
            result = await call(client, "workflow_result", run_id=run_id, wait_s=60)
            assert result["status"] == "succeeded", result
            logs = await call(client, "workflow_logs", run_id=run_id, step="loud", tail=1000)
            lines = [(line["stream"], line["text"]) for line in logs["lines"]]
            assert [text for stream, text in lines if stream == "stdout"] == [
                "line 0",
                "line 1",
                "line 2",
            ]
            assert ("stderr", "to stderr") in lines
            assert {line["step"] for line in logs["lines"]} == {"loud"}
            assert {line["attempt"] for line in logs["lines"]} == {1}
            last = await call(client, "workflow_logs", run_id=run_id, step="loud", tail=1)
            assert last["lines"] == logs["lines"][-1:]
            text = await call_error(client, "workflow_logs", run_id=run_id, step="nosuch")
            assert "nosuch" in text

    run(main)


def test_templates_are_listed_and_run_by_ref_with_typed_params(world: World) -> None:
    async def main() -> None:
        async with session(
            world, "--root", str(ROOT), "--templates", "examples/templates", cwd=ROOT
        ) as client:
            listed = await call(client, "templates_list")
            refs = {t["ref"]: t for t in listed["templates"]}
            assert {"etl@1.0.0", "report@1.0.0"} <= set(refs)
            assert refs["etl@1.0.0"]["params"]["mode"]["choices"] == ["sum", "mean"]
            text = await call_error(
                client, "workflow_submit", file="etl@1.0.0", params={"mode": "median"}
            )
            assert "invalid workflow" in text and "params.mode" in text
            # "10" stays a string for a string parameter: the label pattern refuses digits first
            text = await call_error(client, "workflow_submit", file="etl", params={"label": "10"})
            assert "params.label" in text
            submitted = await call(
                client, "workflow_submit", file="etl@1.0.0", params={"rows": 4, "mode": "mean"}
            )
            result = await call(client, "workflow_result", run_id=submitted["run_id"], wait_s=60)
            assert result["status"] == "succeeded", result
            resource = await client.read_resource("mcpp://templates")
            assert "etl@1.0.0" in resource.contents[0].text  # type: ignore[union-attr]

    run(main)


NOISY_MODULE = """
import os, sys
print("printed at import")
os.write(1, b"written to fd 1 at import\\n")
sys.stdout.flush()


def step():
    print("printed by the step")
    return 1
"""


def test_what_step_modules_print_never_reaches_the_wire(world: World) -> None:
    flows = world.workdir / "flows"
    write_flow(flows / "noisy_steps.py", NOISY_MODULE)
    write_flow(
        flows / "noisy.toml",
        '[workflow]\nname = "noisy"\n\n[[steps]]\nid = "s"\nrun = "noisy_steps:step"\n',
    )

    async def main() -> None:
        async with session(world, "--root", str(flows)) as client:
            assert (await call(client, "workflow_validate", file="noisy.toml"))["valid"] is True
            run_id = (await call(client, "workflow_submit", file="noisy.toml"))["run_id"]
            result = await call(client, "workflow_result", run_id=run_id, wait_s=60)
            assert result["status"] == "succeeded", result
            assert len((await client.list_tools()).tools) == 10  # the stream is intact

    run(main)
    server_err = (world.workdir / "server.err").read_text()
    assert "printed at import" in server_err and "written to fd 1 at import" in server_err


def test_result_waits_with_progress_notifications(world: World) -> None:
    flow, _, gate = gated(world)
    progress: list[tuple[float, float | None, str]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message or ""))
        if "running: wait" in (message or ""):
            gate.touch()  # the client saw the step running: let it finish

    async def main() -> None:
        async with session(world, "--root", str(flow.parent)) as client:
            run_id = (await call(client, "workflow_submit", file="gated.toml"))["run_id"]
            early = await call(client, "workflow_result", run_id=run_id)  # no wait
            assert early["finished"] is False and early["status"] == "running"
            result = await client.call_tool(
                "workflow_result", {"run_id": run_id, "wait_s": 120}, progress_callback=on_progress
            )
            assert result.structured_content is not None, result.content
            assert result.structured_content["status"] == "succeeded"
            assert result.structured_content["finished"] is True

    run(main)
    assert ("1/3 steps finished; running: wait") in [message for _, _, message in progress]
    assert all(total == 3 for _, total, _ in progress)
    assert [done for done, _, _ in progress] == sorted(done for done, _, _ in progress)
