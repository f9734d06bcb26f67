"""Start, find and stop the stack's child processes, each tracked by a pid file.

Every process gets ``<data_dir>/run/<name>.pid`` and ``<data_dir>/logs/<name>.log``. Processes
are started in their own session so that Ctrl-C in the terminal reaches only the supervisor,
which then stops them in order. Only processes named in our pid files are ever signalled.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.core.errors import PlatSyncError
from streams.runtime.pids import boot_id, pid_alive, process_start_time


class ProcessError(PlatSyncError, RuntimeError):
    """A child process failed to start or to become ready."""


@dataclass(frozen=True)
class ProcessSpec:
    """What to run for one named stack process."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None
    cwd: Path | None = None


def run_dir(data_dir: Path) -> Path:
    """Directory of pid files."""
    return data_dir / "run"


def log_path(data_dir: Path, name: str) -> Path:
    """Log file of a stack process."""
    return data_dir / "logs" / f"{name}.log"


def pid_path(data_dir: Path, name: str) -> Path:
    """Pid file of a stack process."""
    return run_dir(data_dir) / f"{name}.pid"


def write_pid_file(data_dir: Path, name: str, pid: int) -> None:
    """Record ``pid`` as the process ``name``, with its start time and the boot it belongs to."""
    pid_path(data_dir, name).write_text(f"{pid}\n{process_start_time(pid)}\n{boot_id()}\n")


def read_pid(data_dir: Path, name: str) -> int | None:
    """The pid recorded for ``name`` if that very process is still alive.

    A pid file outlives its process (``kill -9``, a reboot); its pid may then belong to another
    program, which must neither count as running nor ever be signalled. The recorded start time and
    boot id tell them apart (a pid file of the older one-line format is checked by liveness only).
    """
    path = pid_path(data_dir, name)
    try:
        lines = path.read_text().split("\n")
        pid = int(lines[0].strip())
    except (OSError, ValueError):
        return None
    if not pid_alive(pid):
        return None
    started = lines[1].strip() if len(lines) > 1 else ""
    boot = lines[2].strip() if len(lines) > 2 else ""
    if (boot and boot != boot_id()) or (started and started != process_start_time(pid)):
        return None
    return pid


def start_process(data_dir: Path, spec: ProcessSpec) -> int:
    """Start ``spec`` in the background with its output appended to its log; return the pid."""
    log = log_path(data_dir, spec.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    run_dir(data_dir).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if spec.env:
        env.update(spec.env)
    with open(log, "ab") as out:
        proc = subprocess.Popen(  # noqa: S603 - argv is built by the stack, not user input
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=str(spec.cwd) if spec.cwd else None,
            env=env,
            start_new_session=True,
        )
    write_pid_file(data_dir, spec.name, proc.pid)
    return proc.pid


def stop_pid(pid: int, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to ``pid`` and wait for it to exit, escalating to SIGKILL after ``timeout_s``.

    Returns True if the process exited within the grace period.
    """
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        _reap(pid)
        if not pid_alive(pid):
            break
        time.sleep(0.05)
    return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_process(data_dir: Path, name: str, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Stop the named process if it runs (with ``sig`` first) and remove its pid file. True if it was running."""
    pid = read_pid(data_dir, name)
    path = pid_path(data_dir, name)
    if pid is None:
        path.unlink(missing_ok=True)
        return False
    stop_pid(pid, timeout_s, sig=sig)
    path.unlink(missing_ok=True)
    return True


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


#: Where :func:`free_port` picks ports: below Linux's default ephemeral range (32768-60999). A port the
#: kernel hands out for ``bind(0)`` is also what it hands out as the source port of outgoing connections,
#: so a stack's port chosen that way and used a minute later was sometimes taken by one of its own
#: clients' connections ("address already in use", seen twice on a network of ~30 ports).
PORT_RANGE = (20000, 32767)


#: Ports this process already handed out: a stack takes ~14 before it binds any, and a port handed out
#: twice would make two of its processes fight for it (random picks in the range repeat within a stack
#: about once in 140 stacks).
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``, outside the ephemeral range (see :data:`PORT_RANGE`),
    and never one this process was given before."""
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # the range is crowded: any free port
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    alive: Callable[[], bool] | None = None,
    log: Path | None = None,
    waiting_for: Callable[[], str | None] | None = None,
    say: Callable[[str], None] | None = None,
    say_every_s: float = 10.0,
) -> None:
    """Poll ``check`` until true; raise :class:`ProcessError` naming ``what`` on timeout or death.

    With ``say``, every ``say_every_s`` seconds of waiting it tells what it waits for (``waiting_for``
    explains why ``what`` is not ready yet, e.g. "the broker is unreachable"); a timeout names it too.
    """
    start = time.monotonic()
    deadline = start + timeout_s
    next_say = start + say_every_s
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            raise ProcessError(f"{what}: process exited before becoming ready{log_tail(log)}")
        if say is not None and time.monotonic() >= next_say:
            reason = waiting_for() if waiting_for is not None else None
            say(f"still waiting for {what} ({time.monotonic() - start:.0f}s){': ' + reason if reason else ''}")
            next_say += say_every_s
        time.sleep(0.1)
    reason = waiting_for() if waiting_for is not None else None
    because = f" ({reason})" if reason else ""
    raise ProcessError(f"{what}: not ready after {timeout_s:.0f}s{because}{log_tail(log)}")


def log_tail(log: Path | None, lines: int = 15) -> str:
    """The last ``lines`` of ``log`` under a heading, for an error message (empty if there is no log)."""
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last lines of {log} ---\n" + "\n".join(text)
