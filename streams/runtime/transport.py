"""Faust's aiokafka transport with a short fetch wait, for change latency.

Faust builds its worker consumer with ``fetch_max_wait_ms=1500`` and no setting to change it.
The embedded broker (Tansu 0.6) answers a fetch that has no data yet only after half that wait,
even when records arrive meanwhile. Measured with records produced at random intervals (50–400 ms)
to an aiokafka consumer: p50/max 99/248 ms with a 500 ms wait, 20/50 ms with 100, 5/12 ms with 20
(a producer at a fixed 100 ms period had shown 3 ms: it fell into step with the fetches). A real
Kafka answers a waiting fetch as soon as ``fetch.min.bytes`` is there, so the shorter wait only
costs more empty fetches on an idle route: one per half wait, worker and broker CPU while idle.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT

log = logging.getLogger("platsync.worker")

#: Longest time a fetch waits for data (the embedded broker's latency floor).
FETCH_MAX_WAIT_MS = 100
#: Longest time the consumer may take to leave its group and close (no broker: it cannot).
CONSUMER_CLOSE_TIMEOUT_S = 5.0


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its fetcher; no public knob exists.
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        # aiokafka retries a lost broker every 100 ms with no back-off setting in Faust: during a link
        # cut that was ~25 connection attempts and 75 log lines a second (issue 13). Its client uses
        # the value now, the fetcher and the group coordinator when start() builds them.
        backoff_ms = getattr(self.app, "broker_retry_backoff_ms", None)
        if backoff_ms:
            consumer._retry_backoff_ms = backoff_ms
            consumer._client._retry_backoff = backoff_ms / 1000
        return consumer

    async def on_thread_stop(self) -> None:
        """Close the consumer within :data:`CONSUMER_CLOSE_TIMEOUT_S`, with or without a broker.

        Without a broker (a link cut, a broker crash) aiokafka 0.14's ``Fetcher.close()`` awaits a
        fetch task that it has just cancelled while that task was backing off after a connection
        error, and re-raises its ``CancelledError``; mode's thread service then never reports the
        thread's shutdown and the worker hung until SIGKILL (60 s per worker in ``up``, issue 13).
        Leaving the group is a courtesy (the broker expires the member anyway) and offsets are
        committed after each applied batch, so a bounded, best-effort close loses nothing.
        """
        try:
            await asyncio.wait_for(super().on_thread_stop(), CONSUMER_CLOSE_TIMEOUT_S)
        except (asyncio.CancelledError, TimeoutError) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled ourselves: not aiokafka's stray cancellation
            log.warning("consumer closed without the broker (%s): the group expires this member by itself",
                        "timed out" if isinstance(exc, TimeoutError) else "a fetch was cancelled while "
                        "backing off")


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class ShortFetchTransport(faust_aiokafka.Transport):
    """The aiokafka transport whose consumers wait at most :data:`FETCH_MAX_WAIT_MS` per fetch."""

    Consumer: ClassVar[type] = _Consumer


class RouteApp(faust.App):
    """A Faust app whose consumer transport is :class:`ShortFetchTransport`.

    ``broker_retry_backoff_ms`` (set by the app factory from the settings) is how long its consumer
    waits before retrying an unreachable broker.
    """

    broker_retry_backoff_ms: int | None = None

    def _new_transport(self) -> TransportT:
        return ShortFetchTransport(self.conf.broker_consumer, self)
