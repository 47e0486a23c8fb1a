"""The home folder's layout, private folders and run ids given by prefix or ``last``."""

import stat
from pathlib import Path

import pytest

from mcpp.home import RunIdError, private_folder, resolve_run_id, run_folder

RUNS = [("20261201-aaaa", 1.0), ("20261201-abbb", 3.0), ("20261130-cccc", 2.0)]


def test_a_whole_id_a_unique_prefix_and_last_name_one_run() -> None:
    assert resolve_run_id("20261201-aaaa", RUNS) == "20261201-aaaa"
    assert resolve_run_id("20261130", RUNS) == "20261130-cccc"
    assert resolve_run_id("last", RUNS) == "20261201-abbb"


def test_an_ambiguous_prefix_lists_the_runs_it_starts() -> None:
    with pytest.raises(RunIdError, match=r"ambiguous.*2 runs.*20261201-aaaa, 20261201-abbb"):
        resolve_run_id("20261201-a", RUNS)


@pytest.mark.parametrize("text", ["nope", ""])
def test_an_unknown_id_names_it(text: str) -> None:
    with pytest.raises(RunIdError, match="no run"):
        resolve_run_id(text, RUNS)


def test_last_with_no_runs_says_so() -> None:
    with pytest.raises(RunIdError, match="no run yet"):
        resolve_run_id("last", [])


def test_private_folder_makes_every_missing_level_0700(tmp_path: Path) -> None:
    made = private_folder(run_folder("r1", tmp_path / "home") / "logs")
    for folder in (made, made.parent, made.parent.parent, tmp_path / "home"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert made == tmp_path / "home" / "runs" / "r1" / "logs"
