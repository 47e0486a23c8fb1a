"""Print a real MCP session with ``mcpp mcp`` as Markdown (a dev script: the README's example).

    uv run --extra mcp python scripts/mcp_session.py

Starts ``mcpp mcp`` over stdio in the repository (a fresh ``MCPP_HOME``), connects the SDK's own
``ClientSession`` and makes the calls an assistant would to run ``examples/wordcount.toml``:
validate, submit, wait for the result with progress, look at the graph. Each call and the
main part of its structured result are printed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

ROOT = Path(__file__).resolve().parent.parent


def cut(value: Any) -> Any:
    """``value`` with long lists shortened, for reading."""
    if isinstance(value, dict):
        return {k: cut(v) for k, v in value.items()}
    if isinstance(value, list) and len(value) > 4:
        return [cut(v) for v in value[:4]] + [f"... {len(value) - 4} more"]
    return value


async def session(home: str) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "mcpp.supervisor", "mcp", "--root", str(ROOT)],
        env={**os.environ, "MCPP_HOME": home, "PYTHONDONTWRITEBYTECODE": "1"},
        cwd=str(ROOT),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        names = [tool.name for tool in (await client.list_tools()).tools]
        print(f"tools/list -> {', '.join(names)}\n")
        progress: list[str] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append(message or f"{done:g}/{total:g}")

        async def show(
            tool: str, arguments: dict[str, Any], pick: Any = cut, **options: Any
        ) -> dict[str, Any]:
            result = await client.call_tool(tool, arguments, **options)
            content = result.structured_content or {}
            print(f"```\n-> {tool} {json.dumps(arguments)}")
            for line in progress:
                print(f"   progress: {line}")
            progress.clear()
            print(f"<- {json.dumps(pick(content))}\n```")
            return content

        def document(view: dict[str, Any]) -> dict[str, Any]:
            steps = view["document"]["steps"]
            return {
                **{k: view[k] for k in ("status", "finished")},
                "steps": {k: step["status"] for k, step in steps.items()},
                "reduce.result": steps["reduce"]["result"],
            }

        def graph(view: dict[str, Any]) -> dict[str, Any]:
            return {k: view[k] for k in ("levels", "critical_path")}

        await show("workflow_validate", {"file": "examples/wordcount.toml"})
        run = await show(
            "workflow_submit", {"file": "examples/wordcount.toml", "params": {"top": 3}}
        )
        await show(
            "workflow_result",
            {"run_id": run["run_id"], "wait_s": 60},
            document,
            progress_callback=on_progress,
        )
        await show("workflow_dependencies", {"run_id": run["run_id"]}, graph)


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        anyio.run(session, home)


if __name__ == "__main__":
    main()
