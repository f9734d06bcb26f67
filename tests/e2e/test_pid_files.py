"""A stack's pid file names one process, never a later one that got the same pid (issue 13).

A pid file outlives its process (``kill -9``, a server rebooted during an outage): its pid may then
belong to another program, which ``up`` must neither take for a running component nor signal.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local.process import pid_path, process_start_time, read_pid, write_pid_file

pytestmark = pytest.mark.e2e


@pytest.fixture()
def other_program() -> Iterator[int]:
    proc = subprocess.Popen([shutil.which("sleep") or "/bin/sleep", "600"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_the_recorded_process_is_found(tmp_path: Path, other_program: int) -> None:
    (tmp_path / "run").mkdir()
    write_pid_file(tmp_path, "capture-local", other_program)
    assert read_pid(tmp_path, "capture-local") == other_program
    assert process_start_time(other_program)


def test_a_later_process_with_the_same_pid_is_not_the_component(tmp_path: Path, other_program: int) -> None:
    (tmp_path / "run").mkdir()
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    started = int(process_start_time(other_program))
    pid_path(tmp_path, "pg-local").write_text(f"{other_program}\n{started - 1}\n{boot}\n")
    assert read_pid(tmp_path, "pg-local") is None  # same pid, another start: not ours


def test_a_pid_file_from_before_a_reboot_names_nothing(tmp_path: Path, other_program: int) -> None:
    (tmp_path / "run").mkdir()
    started = process_start_time(other_program)
    pid_path(tmp_path, "pg-local").write_text(f"{other_program}\n{started}\n00000000-0000-0000-0000-000000000000\n")
    assert read_pid(tmp_path, "pg-local") is None


def test_a_pid_file_of_the_older_format_is_checked_by_liveness(tmp_path: Path, other_program: int) -> None:
    (tmp_path / "run").mkdir()
    pid_path(tmp_path, "broker").write_text(f"{other_program}\n")
    assert read_pid(tmp_path, "broker") == other_program
