"""Ports for the embedded stacks: free, below the ephemeral range, and never handed out twice."""

from __future__ import annotations

import socket

import pytest

from infra.local import process
from infra.local.process import PORT_RANGE, free_port


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    # 300 ports: about twenty stacks; independent random picks in the range would repeat with p ≈ 0.97.
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(PORT_RANGE[0] <= p <= PORT_RANGE[1] for p in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # still free: handing a port out does not hold it


def _bindable_and_new(port: int) -> bool:
    if port in process._HANDED_OUT:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    # Both ports are chosen among those not handed out yet: earlier tests in this process took some,
    # and a neighbour of the busy port may be one of them (CI failed that way once).
    candidates = (p for p in range(PORT_RANGE[0], PORT_RANGE[1] + 1) if _bindable_and_new(p))
    busy, spare = next(candidates), next(candidates)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", busy))
        taken.listen()
        picks = iter([busy, busy, spare])
        monkeypatch.setattr(process.random, "randint", lambda _a, _b: next(picks))
        assert free_port() == spare
