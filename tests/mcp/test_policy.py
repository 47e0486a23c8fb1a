"""What ``mcpp mcp`` may run and where it may listen (pure rules: no server, no process)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mcpp.errors import RefusedError
from mcpp.mcp.policy import Policy, looks_like_path, parse_http


def test_files_under_the_root_resolve_to_their_real_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    policy = Policy.make(root)
    assert policy.resolve("sub/wf.toml") == str((root / "sub" / "wf.toml").resolve())
    assert policy.resolve(str(root / "wf.toml")) == str((root / "wf.toml").resolve())
    assert policy.resolve("templates/etl.toml").startswith(str(root.resolve()))


@pytest.mark.parametrize("path", ["../wf.toml", "/etc/passwd", "sub/../../wf.toml"])
def test_paths_outside_the_root_are_refused(tmp_path: Path, path: str) -> None:
    (tmp_path / "root" / "sub").mkdir(parents=True)
    with pytest.raises(RefusedError, match="outside the server's roots"):
        Policy.make(tmp_path / "root").resolve(path)


def test_a_symlink_that_leaves_the_root_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere.toml").write_text("")
    os.symlink(tmp_path / "elsewhere.toml", root / "link.toml")
    os.symlink(tmp_path, root / "up")
    policy = Policy.make(root)
    for path in ("link.toml", "up/elsewhere.toml"):
        with pytest.raises(RefusedError, match="outside"):
            policy.resolve(path)
    assert not policy.trusted(str(root / "link.toml"))
    assert policy.trusted(str(root / "wf.toml")) and not policy.trusted(None)


def test_the_template_folder_is_a_root_too(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "shared").mkdir()
    policy = Policy.make(tmp_path / "root", tmp_path / "shared")
    assert policy.template_dir == (tmp_path / "shared").resolve()
    assert policy.resolve(str(tmp_path / "shared" / "etl.toml"))


def test_inline_needs_allow_inline_and_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(RefusedError, match="--allow-inline"):
        Policy.make(tmp_path).check_inline()
    Policy.make(tmp_path, allow_inline=True).check_inline()
    with pytest.raises(RefusedError, match="not a folder"):
        Policy.make(tmp_path / "missing")
    with pytest.raises(RefusedError, match="at least 1"):
        Policy.make(tmp_path, max_runs=0)


def test_paths_and_template_refs_are_told_apart() -> None:
    assert looks_like_path("wf.toml") and looks_like_path("a/b") and looks_like_path("x.YAML")
    assert not looks_like_path("etl") and not looks_like_path("etl@1.0.0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8000", ("127.0.0.1", 8000)),
        ("8000", ("127.0.0.1", 8000)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9", ("::1", 9)),
        ("127.8.9.10:1", ("127.8.9.10", 1)),
    ],
)
def test_http_addresses_on_loopback(text: str, expected: tuple[str, int]) -> None:
    assert parse_http(text) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:8000", "192.168.1.2:80", "example.com:80", "[::]:1"])
def test_http_off_loopback_needs_allow_remote(text: str) -> None:
    with pytest.raises(RefusedError, match=r"not a loopback address.*--allow-remote"):
        parse_http(text)
    assert parse_http(text, allow_remote=True)[1] > 0


@pytest.mark.parametrize("text", ["127.0.0.1:", "127.0.0.1:http", "127.0.0.1:70000", ""])
def test_malformed_http_addresses_are_refused(text: str) -> None:
    with pytest.raises(RefusedError, match="expected HOST:PORT"):
        parse_http(text)
