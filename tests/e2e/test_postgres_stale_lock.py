"""PostgreSQL starts right after a ``kill -9`` of its postmaster, and never beside a live one (issue 13).

Within a second of the kill the postmaster is often still a zombie that its parent has not reaped,
and its backends may still hold its shared memory: PostgreSQL itself then refuses to start
("lock file postmaster.pid already exists"). :func:`infra.local.postgres.clear_stale_lock` tells a
dead server's lock from a live one's.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from infra.local.databases import postgres_instance
from infra.local.postgres import clear_stale_lock, shared_memory_attached
from infra.local.process import ProcessError, read_pid, stop_process
from streams.runtime.settings import Settings
from tests.support.stack import isolated_settings, make_data_dir, remove_data_dir

pytestmark = pytest.mark.e2e

IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0


def lock_file(pgdata: Path, pid: int, shmid: int | None = None) -> Path:
    """A ``postmaster.pid`` in PostgreSQL's layout (pid, data dir, start, port, socket dir, host, shm)."""
    pgdata.mkdir(parents=True, exist_ok=True)
    shm = f"  5432001 {shmid}" if shmid is not None else ""
    path = pgdata / "postmaster.pid"
    path.write_text(f"{pid}\n{pgdata}\n1796362299\n15432\n\n127.0.0.1\n{shm}\nready   \n")
    return path


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        return fh.read().rsplit(") ", 1)[1][0]


@pytest.fixture()
def zombie_of_another_parent() -> Iterator[int]:
    """The pid of a dead process that its (live) parent never reaps, like a postmaster right after kill -9."""
    code = ("import os, sys, time\npid = os.fork()\nif pid == 0:\n    os._exit(0)\n"
            "print(pid, flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while process_state(pid) != "Z" and time.monotonic() < deadline:  # the child may not have exited yet
            time.sleep(0.01)
        yield pid
    finally:
        parent.kill()
        parent.wait()


@pytest.fixture()
def program_named_postgres(tmp_path: Path) -> Iterator[int]:
    """A live process whose executable is called ``postgres`` (what a running postmaster looks like)."""
    binary = tmp_path / "postgres"
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "600"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_of_a_zombie_postmaster_is_removed(tmp_path: Path, zombie_of_another_parent: int) -> None:
    assert process_state(zombie_of_another_parent) == "Z"  # kill(pid, 0) succeeds: PostgreSQL thinks it lives
    lock = lock_file(tmp_path / "pgdata", zombie_of_another_parent)
    said: list[str] = []
    clear_stale_lock(tmp_path / "pgdata", 5, say=said.append)
    assert not lock.exists()
    assert said and f"crashed server (pid {zombie_of_another_parent})" in said[-1]


def test_the_lock_of_a_live_postmaster_is_kept(tmp_path: Path, program_named_postgres: int) -> None:
    lock = lock_file(tmp_path / "pgdata", program_named_postgres)
    with pytest.raises(ProcessError, match=f"a server \\(pid {program_named_postgres}\\) already runs"):
        clear_stale_lock(tmp_path / "pgdata", 5)
    assert lock.exists()


def test_a_recycled_pid_of_another_program_does_not_hold_the_lock(tmp_path: Path) -> None:
    other = subprocess.Popen([shutil.which("sleep") or "/bin/sleep", "600"])
    try:
        lock = lock_file(tmp_path / "pgdata", other.pid)
        clear_stale_lock(tmp_path / "pgdata", 5)
        assert not lock.exists()
    finally:
        other.kill()
        other.wait()


def test_the_lock_is_kept_while_a_backend_of_the_dead_server_holds_its_memory(
        tmp_path: Path, zombie_of_another_parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmat.restype = ctypes.c_void_p
    shmid = libc.shmget(IPC_PRIVATE, 56, IPC_CREAT | 0o600)
    assert shmid >= 0, os.strerror(ctypes.get_errno())
    address = libc.shmat(shmid, None, 0)  # this process plays the orphaned backend
    try:
        assert shared_memory_attached(shmid) == 1
        lock = lock_file(tmp_path / "pgdata", zombie_of_another_parent, shmid)
        with pytest.raises(ProcessError, match="still use its shared memory"):
            clear_stale_lock(tmp_path / "pgdata", 0.5)
        assert lock.exists()
        libc.shmdt(ctypes.c_void_p(address))
        address = None
        assert shared_memory_attached(shmid) == 0
        clear_stale_lock(tmp_path / "pgdata", 5)
        assert not lock.exists()
    finally:
        if address is not None:
            libc.shmdt(ctypes.c_void_p(address))
        libc.shmctl(shmid, IPC_RMID, None)


@pytest.fixture()
def one_postgres() -> Iterator[Settings]:
    data_dir = make_data_dir("platsync-stale-lock-")
    settings = isolated_settings(data_dir)
    try:
        yield settings
    finally:
        stop_process(data_dir, "pg-local")
        remove_data_dir(data_dir)


def test_a_real_postgres_starts_at_once_after_kill_9(one_postgres: Settings) -> None:
    pg = postgres_instance(one_postgres, "local")
    pg.init()
    pg.start()
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE survives (id int)")
        conn.execute("INSERT INTO survives VALUES (1)")
        # A session of its own keeps a backend (an orphan after the kill) attached to the shared memory.
        held = psycopg.connect(pg.conninfo(), autocommit=True)
        pid = read_pid(one_postgres.data_dir, pg.name)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        said: list[str] = []
        pg.start(30, say=said.append)  # at once: no pause for the zombie or the orphans
        held.close()
    with psycopg.connect(pg.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT id FROM survives").fetchall() == [(1,)]
    assert any("removed the lock file of the crashed server" in line for line in said), said
