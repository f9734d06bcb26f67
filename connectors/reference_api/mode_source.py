"""Where an API server learns its side's mode when the mode server's state file is not at hand.

On the embedded stack the API server reads the mode server's state file in the shared data dir
(:func:`streams.apply.mode_state.current_mode`). In Kubernetes each pod has a data dir of its own, so the API
pod follows the mode server over HTTP instead (``--mode-url``, rendered by infra/k8s/api.py): every response of
the mode server carries ``X-Hybridmode: normal|emergency|recovery``. A thread polls it, so a request never waits
on the network; while the mode server cannot be reached the last mode it gave stays (``normal`` before the
first answer, as the mode server itself starts), because the seed calls the header a guide, and the failure is
logged once per outage.
"""

from __future__ import annotations

import logging
import threading
import urllib.request

from streams.core.modes import HYBRIDMODE_HEADER, MODES, NORMAL

log = logging.getLogger("platsync.api")

POLL_S = 0.25
TIMEOUT_S = 1.0


class ModeFollower:
    """The mode a mode server announces at ``url`` (its ``/healthz``), polled every ``poll_s`` by a thread."""

    def __init__(self, url: str, poll_s: float = POLL_S, timeout_s: float = TIMEOUT_S) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"mode URL {url!r}: expected an http:// or https:// URL of the mode server")
        self.url, self._poll_s, self._timeout_s = url, poll_s, timeout_s
        self._mode = NORMAL
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mode-follower", daemon=True)
        self._thread.start()

    def mode(self) -> str:
        """The latest mode the mode server announced (``normal`` until it first answers)."""
        return self._mode

    def poll_once(self) -> None:
        """Ask the mode server once; keep what it says, or the last mode if it cannot say."""
        try:
            with urllib.request.urlopen(self.url, timeout=self._timeout_s) as response:  # noqa: S310 - configured
                announced = response.headers.get(HYBRIDMODE_HEADER, "")
        except (OSError, ValueError) as exc:
            if not self._failing:
                log.warning("mode server %s unreachable (%s): X-Hybridmode keeps %s until it answers", self.url,
                            type(exc).__name__, self._mode)
            self._failing = True
            return
        if self._failing:
            log.info("mode server %s answers again", self.url)
        self._failing = False
        if announced in MODES:
            self._mode = announced
        else:
            log.warning("mode server %s announced %r, not a mode (%s): keeping %s", self.url, announced,
                        ", ".join(MODES), self._mode)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._poll_s)

    def close(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._thread.join(timeout=self._timeout_s + self._poll_s + 1)
