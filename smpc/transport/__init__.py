"""Transports move tensors between parties; protocols never see how."""

from smpc.transport.base import Transport
from smpc.transport.inprocess import InProcessNetwork, InProcessTransport

__all__ = ["Transport", "InProcessNetwork", "InProcessTransport"]
