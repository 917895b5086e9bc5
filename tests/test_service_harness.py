"""The service tests' own harness: the ports it picks cannot be taken by a connection."""

from __future__ import annotations

import socket

from service_harness import _ephemeral_range, free_ports


def test_free_ports_lie_below_the_ephemeral_range_and_are_free():
    low, _ = _ephemeral_range()
    ports = free_ports(8)
    assert len(set(ports)) == 8
    assert all(1024 <= p < low for p in ports)  # never a connection's source port
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))
