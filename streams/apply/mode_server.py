"""One side's mode server: ``python -m streams.apply.mode_server --side SIDE [--config FILE] [--data-dir DIR]``.

Three activities, none of which may stop the others:

- **heartbeat** thread (:class:`streams.apply.heartbeat.HeartbeatLink`): every ``--interval`` s
  publishes this side's heartbeat and reads the other side's, with ``client.id``
  ``platsync-<side>-mode``; a heartbeat not acknowledged within ``--publish-timeout`` s means
  this side is cut off from the broker.
- **decision** thread: every half second gathers the inputs (heartbeats, the operator override
  file, the ``catching_up`` and ``open_conflicts`` hooks), runs :func:`streams.core.modes.decide_mode`
  and writes ``<data_dir>/state/mode/<side>.json`` (see :mod:`streams.apply.mode_state`), with the
  last moment the other side was known in contact (its newest heartbeat received), recorded in
  every emergency it opens.
- **HTTP** on ``host:--port`` (default ``settings.mode_port(side)``): ``GET /status`` (JSON) and
  ``GET /healthz``; every response carries ``X-Hybridmode: normal|emergency|recovery``.

An unreachable broker or a cut link never ends the process (it reports emergency and keeps
retrying); SIGTERM/SIGINT stop it cleanly with exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from streams.apply.barrier import undrained
from streams.apply.conflicts import open_conflict_count
from streams.apply.heartbeat import HeartbeatLink, now_ms
from streams.apply.mode_state import advance, known_contact, read_json, read_override, state_path, write_json
from streams.core.model import SIDES, other_side
from streams.core.modes import MODES, NORMAL, ModeInputs, decide_mode, heartbeat_topic, iso_ms
from streams.runtime.kept_connections import KeptConnections
from streams.runtime.logs import configure_for, configure_logging
from streams.runtime.metrics import Health, MetricsPortError, mode_metrics, serve
from streams.runtime.schema_registry import SchemaRegistryError
from streams.runtime.settings import Settings, SettingsError, load_settings

log = logging.getLogger("platsync.mode")

CatchingUpHook = Callable[[Settings, str], bool]
ConflictsHook = Callable[[Settings], int]
DECIDE_INTERVAL_S = 0.5
HOOK_INTERVAL_S = 2.0


def catching_up_from_progress(settings: Settings, side: str, connections: KeptConnections | None = None) -> bool:
    """Default ``catching_up`` hook: some capture produced a position not applied yet (either
    direction: both sides' outage writes must cross). Uses :func:`streams.apply.barrier.undrained`
    (``connections``: kept open between calls; the server passes its own)."""

    return bool(undrained(settings, connections))


def open_conflicts_from_store(settings: Settings, connections: KeptConnections | None = None) -> int:
    """Default ``open_conflicts`` hook: :func:`streams.apply.conflicts.open_conflict_count`."""
    return int(open_conflict_count(settings, connections))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def default_publish_timeout(peer_timeout_s: float, interval_s: float) -> float:
    """Half the peer timeout (at least two heartbeats): a side notices that it is cut off before
    the other side notices its silence, so its reason names the cause (the broker, the link)."""
    return max(2 * interval_s, peer_timeout_s / 2)


def load_hook(spec: str) -> Callable[..., Any]:
    """The function named by ``module:function``."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"hook {spec!r}: expected module:function")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


class ModeServer:
    """Decides this side's mode from the heartbeats, the override and the hooks; serves it over HTTP."""

    def __init__(self, settings: Settings, side: str, port: int, peer_timeout_s: float,
                 catching_up: CatchingUpHook = catching_up_from_progress,
                 open_conflicts: ConflictsHook = open_conflicts_from_store, interval_s: float = 1.0,
                 publish_timeout_s: float | None = None, recovery_min_s: float = 3.0) -> None:
        self.settings, self.side, self.port = settings, side, port
        self.peer_timeout_s, self.recovery_min_s = peer_timeout_s, recovery_min_s
        # Hooks run every HOOK_INTERVAL_S: one taking ``connections`` (the defaults do) reads the stores
        # over connections this server keeps open, not new ones each time.
        self._connections = KeptConnections()
        self._catching_up_hook, self._conflicts_hook = (
            partial(hook, connections=self._connections) if "connections" in inspect.signature(hook).parameters
            else hook for hook in (catching_up, open_conflicts))
        self.incarnation = secrets.token_hex(8)
        self.watching_since_ms = now_ms()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        restored = read_json(state_path(settings, side))
        self.state: dict[str, Any] = {k: restored[k] for k in ("mode", "since", "since_ts_ms", "history",
                                                               "emergencies", "last_emergency_end_ts_ms")
                                      if k in restored}
        if self.state.get("mode") not in MODES:
            self.state.pop("mode", None)
        # The last contact must outlive this process: an emergency detected after a restart began at
        # the last heartbeat the previous process received (files written before it was kept: its peer).
        self.state["last_contact_ts_ms"] = known_contact(*(
            v if isinstance(v, int) else None for v in (restored.get("last_contact_ts_ms"),
                                                        restored.get("peer_last_seen_ts_ms"))))
        # Until the hooks first answer, "catching up" is unknown: it must not end a restored recovery.
        self._hooks: dict[str, Any] = {"catching_up": True, "catching_up_note": "not checked yet",
                                       "open_conflicts": 0, "hook_errors": [], "hooks_checked_ts_ms": None}
        self.metrics = mode_metrics(side, MODES)
        self.health = Health(settings.metrics_stall_after_s)
        self.health.add_check(self._threads_alive)
        self.link = HeartbeatLink(settings, side, self.incarnation, interval_s,
                                  publish_timeout_s if publish_timeout_s is not None
                                  else default_publish_timeout(peer_timeout_s, interval_s),
                                  self.mode)

    def mode(self) -> str:
        """The current mode (``normal`` before the first decision)."""
        with self._lock:
            return str(self.state.get("mode", NORMAL))

    def refresh_hooks(self) -> None:
        """Ask both hooks (they may block on a database); keep what they said for the decisions."""
        catching_up, conflicts = self._hooks["catching_up"], self._hooks["open_conflicts"]
        note, errors = "", []
        try:
            catching_up = bool(self._catching_up_hook(self.settings, self.side))
        except Exception as exc:  # noqa: BLE001 - unknown counts as catching up (it only matters after an outage)
            catching_up, note = True, f"cannot check: {_one_line(exc)}"
            errors.append(f"catching_up: {_one_line(exc)}")
        try:
            conflicts = int(self._conflicts_hook(self.settings))
        except Exception as exc:  # noqa: BLE001 - keep the last known count
            errors.append(f"open_conflicts: {_one_line(exc)}")
        if errors and errors != self._hooks["hook_errors"]:
            log.warning("hooks failed: %s", "; ".join(errors))
        with self._lock:
            self._hooks = {"catching_up": catching_up, "catching_up_note": note, "open_conflicts": conflicts,
                           "hook_errors": errors, "hooks_checked_ts_ms": now_ms()}

    def _hooks_loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh_hooks()
            self._stop.wait(max(0.1, HOOK_INTERVAL_S - (time.monotonic() - started)))

    def decide_once(self) -> dict[str, Any]:
        """Gather the inputs, decide, record and write the state file; return the new state."""
        at = now_ms()
        override = read_override(self.settings, self.side)
        link = self.link.snapshot(at)
        with self._lock:
            previous = str(self.state.get("mode", NORMAL))
            ended = self.state.get("last_emergency_end_ts_ms")
            hooks = dict(self._hooks)
        inputs = ModeInputs(
            side=self.side, now_ms=at, peer_last_seen_ms=link["peer"].get("last_seen_ts_ms"),
            watching_since_ms=self.watching_since_ms, peer_timeout_s=self.peer_timeout_s,
            publish_failing=link["publish_failing"], publish_error=link["publish_error"],
            broker=self.settings.broker_bootstrap, previous_mode=previous, emergency_ended_ms=ended,
            catching_up=hooks["catching_up"], catching_up_note=hooks["catching_up_note"],
            open_conflicts=hooks["open_conflicts"], override=override, recovery_min_s=self.recovery_min_s)
        decision = decide_mode(inputs)
        if decision.mode != previous:
            log.info("mode %s -> %s: %s", previous, decision.mode, decision.reason)
        self.metrics.record(decision.mode, int(hooks["open_conflicts"]), inputs.peer_last_seen_ms, at)
        self.health.beat("decide")
        with self._lock:
            contact = known_contact(self.state.get("last_contact_ts_ms"), inputs.peer_last_seen_ms)
            # Never in contact: the silence that made the emergency is counted from watching_since_ms.
            state = advance(self.state, decision, at, contact if contact is not None else self.watching_since_ms)
            state.update(
                last_contact_ts_ms=contact, last_contact=iso_ms(contact),
                side=self.side, peer_side=other_side(self.side), peer=link["peer"],
                peer_last_seen_ts_ms=link["peer"].get("last_seen_ts_ms"), peer_timeout_s=self.peer_timeout_s,
                publish_failing=link["publish_failing"], last_publish_ack_ts_ms=link["last_ack_ts_ms"],
                **hooks, override=None if override is None else vars(override),
                updated_ts_ms=at, updated=iso_ms(at), pid=os.getpid(), incarnation=self.incarnation,
                url=f"http://{self.settings.host}:{self.port}", stopped_ts_ms=None)
            self.state = state
        write_json(state_path(self.settings, self.side), state)
        return state

    def _decide_loop(self) -> None:
        while not self._stop.wait(DECIDE_INTERVAL_S):
            try:
                self.decide_once()
            except Exception:  # noqa: BLE001 - a failed round (e.g. disk full) must not stop deciding
                log.exception("mode decision round failed")

    def start(self) -> None:
        """First decision, then the heartbeat, hooks and decision threads."""
        self.decide_once()
        for name, target in (("heartbeat", lambda: self.link.run(self._stop)), ("hooks", self._hooks_loop),
                             ("decide", self._decide_loop)):
            thread = threading.Thread(target=target, name=f"mode-{self.side}-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.health.set_ready(True)

    def _threads_alive(self) -> str | None:
        """Liveness check: every activity thread still runs (until stopped)."""
        if self._stop.is_set():
            return None
        dead = [t.name for t in self._threads if not t.is_alive()]
        return f"thread exited: {', '.join(dead)}" if dead else None

    def stop(self) -> None:
        """Stop the threads, close the Kafka clients, mark the state file as stopped."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._connections.close()
        with self._lock:
            self.state = {**self.state, "stopped_ts_ms": now_ms()}
            state = self.state
        write_json(state_path(self.settings, self.side), state)

    def status_body(self) -> dict[str, Any]:
        """The ``GET /status`` document (the state without its long history)."""
        with self._lock:
            body = {k: v for k, v in self.state.items() if k != "history"}
            body["recent_transitions"] = self.state.get("history", [])[-10:]
        return body

    def app(self) -> Any:
        """The aiohttp application: ``/status``, ``/healthz``, ``X-Hybridmode`` on every response."""
        from aiohttp import web

        @web.middleware
        async def hybridmode_header(request: web.Request, handler: Any) -> web.StreamResponse:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
            response.headers["X-Hybridmode"] = self.mode()
            return response

        async def status(_request: web.Request) -> web.Response:
            return web.json_response(self.status_body())

        async def healthz(_request: web.Request) -> web.Response:
            return web.Response(text=f"{self.side} {self.mode()}\n")

        app = web.Application(middlewares=[hybridmode_header])
        app.router.add_get("/status", status)
        app.router.add_get("/healthz", healthz)
        return app

    async def _serve(self) -> None:
        from aiohttp import web

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        metrics_server = None
        try:
            await web.TCPSite(runner, self.settings.host, self.port).start()  # bind first: OSError if taken
            metrics_server = serve(self.settings, f"mode-{self.side}", self.metrics.registry, self.health)
            self.start()
            try:
                await stop.wait()
            finally:
                self.health.set_ready(False, "stopping")
                await loop.run_in_executor(None, self.stop)
        finally:
            if metrics_server is not None:
                metrics_server.stop()
            await runner.cleanup()

    def serve(self) -> None:
        """Bind the port, start the threads, serve until SIGTERM/SIGINT, then stop everything."""
        asyncio.run(self._serve())


def mode_server_ready(settings: Settings, side: str, port: int | None = None) -> bool:
    """True once the side's mode server answers ``GET /healthz``."""
    import urllib.request

    url = f"http://{settings.host}:{port or settings.mode_port(side)}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback URL we built
            return bool(response.status == 200)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Parse the options, then serve; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m streams.apply.mode_server",
                                     description="one side's operating mode: heartbeats, decision, X-Hybridmode")
    parser.add_argument("--side", required=True, choices=SIDES)
    parser.add_argument("--config", type=Path, help="settings TOML file")
    parser.add_argument("--data-dir", type=Path, help="data dir (default from settings)")
    parser.add_argument("--port", type=int, help="HTTP port (default: settings mode_<side>_port)")
    parser.add_argument("--peer-timeout", type=float, help="seconds of silence of the other side before "
                        "emergency (default: settings mode_peer_timeout_s)")
    parser.add_argument("--publish-timeout", type=float,
                        help="seconds without acknowledgement of own heartbeat before emergency "
                        "(default: half the peer timeout, at least 2 intervals)")
    parser.add_argument("--recovery-min-s", type=float, default=3.0,
                        help="minimum seconds in recovery after an outage ended (default 3)")
    parser.add_argument("--interval", type=float, default=1.0, help="heartbeat period in seconds (default 1)")
    parser.add_argument("--catching-up-hook", default="streams.apply.mode_server:catching_up_from_progress",
                        help="module:function(settings, side) -> bool; a keyword connections, if it takes one, "
                             "gets connections kept open between calls (streams/runtime/kept_connections.py)")
    parser.add_argument("--conflicts-hook", default="streams.apply.mode_server:open_conflicts_from_store",
                        help="module:function(settings) -> int; takes connections like --catching-up-hook")
    args = parser.parse_args(argv)
    configure_logging(f"mode-{args.side}")
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    try:
        settings = load_settings(args.config, data_dir=args.data_dir)
        configure_for(settings, f"mode-{args.side}")
        catching_up, conflicts = load_hook(args.catching_up_hook), load_hook(args.conflicts_hook)
    except (SettingsError, ValueError, ImportError, AttributeError) as exc:
        print(f"mode-{args.side}: {exc}", file=sys.stderr)
        return 2
    peer_timeout = args.peer_timeout if args.peer_timeout is not None else settings.mode_peer_timeout_s
    publish_timeout = (args.publish_timeout if args.publish_timeout is not None
                       else default_publish_timeout(peer_timeout, args.interval))
    if publish_timeout < 2 * args.interval:
        print(f"mode-{args.side}: --publish-timeout must be at least twice --interval", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else settings.mode_port(args.side)
    try:
        server = ModeServer(settings, args.side, port, peer_timeout, catching_up, conflicts, args.interval,
                            publish_timeout, args.recovery_min_s)
    except SchemaRegistryError as exc:  # the registry refused the contracts, or is unreachable
        print(f"mode-{args.side}: cannot start: {exc}", file=sys.stderr)
        return 2
    log.info("serving %s side on http://%s:%s (broker %s, topic %s, peer timeout %gs)", args.side, settings.host,
             port, settings.broker_bootstrap, heartbeat_topic(settings), peer_timeout)
    try:
        server.serve()
    except MetricsPortError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"mode-{args.side}: cannot serve on {settings.host}:{port}: {exc}", file=sys.stderr)
        return 2
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
