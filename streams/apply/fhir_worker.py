"""The cloud's FHIR worker: ``python -m streams.apply.fhir_worker`` (docs/fhir.md).

Runs beside the cloud's shared store (``fructos_patient``): keeps the 6 information summary current
(:mod:`streams.apply.fhir_summarizer`) and submits the queued documents to the national sharing service
(:mod:`streams.apply.fhir_submitter`) at ``fhir_submission_url``; the embedded stack's stand-in when that is
empty. An unreachable store is retried every second, logged once, then summarised; the process never exits
on one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from streams.apply.feed_loop import add_metrics_option, process_start, serve_health
from streams.apply.fhir_submitter import Submitter, http_post
from streams.apply.fhir_summarizer import Summarizer
from streams.core.model import REPLICA_STORE
from streams.fhir.documents import load_document_types
from streams.runtime.connections import dsn
from streams.runtime.credentials import FHIR
from streams.runtime.log_repeats import OutageLog
from streams.runtime.metrics import Health
from streams.runtime.settings import Settings

log = logging.getLogger("platsync.fhir")
PROCESS = "fhir-remote"


def submission_url(settings: Settings) -> str:
    """Where documents are submitted: ``fhir_submission_url``, else the embedded stand-in's FHIR base."""
    return settings.fhir_submission_url or f"http://{settings.host}:{settings.fhir_standin_port}/fhir"


def _loop(name: str, step: Callable[[], int], full: int, stop: threading.Event, health: Health,
          summary_every_s: float, poll_s: float) -> None:
    """Run ``step`` until ``stop``: at once again after a full batch, else every ``poll_s``."""
    outage = OutageLog(log, name, summary_every_s)
    while not stop.is_set():
        health.beat(name)
        try:
            done = step()
            outage.recovered()
            health.set_ready(True)
        except OperationalError as exc:
            outage.failed(str(exc).splitlines()[0], 1.0)
            health.set_ready(False, f"{name}: the shared store is unreachable")
            stop.wait(1.0)
            continue
        except Exception as exc:  # noqa: BLE001 - a fault must not end the loop: the queue keeps the work
            log.exception("%s failed; retrying in 5 s", name)
            health.set_ready(False, f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            stop.wait(5.0)
            continue
        if done < full:
            stop.wait(poll_s)


def _summarize_step(summarizer: Summarizer) -> Callable[[], int]:
    def step() -> int:
        result = summarizer.run_once()
        if result.documents:
            log.info("summary: %d document(s) summarized, %d removed, %d not summarizable; %d submission(s) "
                     "queued", result.summarized, result.removed, result.problems, result.queued)
        return result.documents
    return step


def run(engine: Engine, settings: Settings, stop: threading.Event, health: Health) -> None:
    """Run the summarizer and the submitter (a thread each) until ``stop`` is set."""
    summarizer = Summarizer(engine, load_document_types())
    token = settings.fhir_submission_token or None
    submitter = Submitter(engine, http_post(submission_url(settings), token, settings.fhir_submission_timeout_s))
    every = settings.log_repeat_summary_s
    threads = [threading.Thread(target=_loop, name="fhir-summary", daemon=True,
                                args=("summary", _summarize_step(summarizer), summarizer.batch, stop, health,
                                      every, 0.5)),
               threading.Thread(target=_loop, name="fhir-submit", daemon=True,
                                args=("submit", submitter.run_once, submitter.batch, stop, health, every, 1.0))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main(argv: list[str] | None = None) -> int:
    """Run the cloud's FHIR worker until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m streams.apply.fhir_worker")
    parser.add_argument("--pg-node", default="remote", help="the settings node of the shared store (the cloud)")
    add_metrics_option(parser)
    started = process_start(parser, argv, PROCESS)
    if started is None:
        return 2
    args, settings, stop = started
    health, server = serve_health(settings, PROCESS, args.metrics_port)
    engine = create_engine(dsn(settings, args.pg_node, REPLICA_STORE, FHIR), pool_pre_ping=True, pool_size=2)
    log.info("FHIR worker started: summary of %s, submissions to %s", REPLICA_STORE, submission_url(settings))
    try:
        run(engine, settings, stop, health)
    finally:
        engine.dispose()
        if server is not None:
            server.stop()
    log.info("FHIR worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
