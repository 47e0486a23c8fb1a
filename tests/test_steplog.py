"""The step log format (:mod:`mcpp.steplog`): pure functions, no process."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcpp.errors import MCPPError
from mcpp.steplog import DEFAULT_CAP, encode_line, parse_cap, parse_line, stderr_tail


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("64K", 65536),
        ("50M", DEFAULT_CAP),
        ("1GiB", 1024**3),
        ("2mb", 2 * 1024**2),
    ],
)
def test_caps_are_sizes_with_units(text: str, size: int) -> None:
    assert parse_cap(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-5", "1.5M", "100"])
def test_a_bad_cap_names_the_variable(text: str) -> None:
    with pytest.raises(MCPPError, match="MCPP_LOG_CAP="):
        parse_cap(text)


def test_a_line_round_trips_with_tabs_and_bad_bytes() -> None:
    line = encode_line(12.5, b"err", b"a\tb \xff")
    assert line == b"12.500000\terr\ta\tb \xff\n"
    assert parse_line(line[:-1]) == (12.5, "stderr", None, "a\tb \ufffd")
    assert parse_line(encode_line(1.0, b"log:INFO", b"x")[:-1]) == (1.0, "log", "INFO", "x")
    assert parse_line(b"12.5\terr") is None  # cut short
    assert parse_line(b"x\tout\ty") is None
    assert parse_line(b"1\twhat\ty") is None


def test_the_stderr_tail_skips_other_streams(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    data = b"".join(
        encode_line(float(i), b"err" if i % 2 else b"out", b"%d" % i) for i in range(100)
    )
    (tmp_path / "s" / "3.log").write_bytes(data + b"17.0\terr")  # a last line cut short
    assert stderr_tail(tmp_path, "s", 3) == tuple(str(i) for i in range(61, 100, 2))
    assert stderr_tail(tmp_path, "s", 4) == ()
