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


def test_a_port_in_use_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        for busy in range(PORT_RANGE[0], PORT_RANGE[1]):  # a port in the range that is not handed out yet
            try:
                taken.bind(("127.0.0.1", busy))
                break
            except OSError:
                continue
        taken.listen()
        picks = iter([busy, busy, busy + 1 if busy < PORT_RANGE[1] else busy - 1])
        monkeypatch.setattr(process.random, "randint", lambda _a, _b: next(picks))
        assert free_port() != busy
