"""The one place that imports CrypTen 0.4.1, with every shim it needs on this torch.

Import ``crypten`` through ``load()`` only; nothing else in the harness touches it. Shims, each
applied once, in this order:

1. ``torch.onnx._internal.registration``: CrypTen's ``crypten.nn.onnx_converter`` imports it
   at module level, and torch 2.13 moved it to
   ``torch.onnx._internal.torchscript_exporter.registration``. We alias the old name to the
   new module before ``import crypten``; the ONNX converter is never used here.
2. (optional, ``decode_fix=True``) CrypTen's ``FixedPointEncoder.decode`` floor-divides a
   negative encoded value by ``scale - 1`` instead of ``scale``, so some negative results
   come back 1.0 too low (and every value of magnitude >= 2^16 - 1 off by more). The fix
   decodes with a true floor division by the scale; like stock CrypTen it still returns
   float32. Off by default: the stock errors are what CrypTen users get.
3. (optional, ``relay_control``) WAN emulation: CrypTen's communicator is torch.distributed
   with gloo. Gloo publishes each rank's listening socket address (a ``sockaddr`` inside the
   value it ``set``s in the rendezvous store) and the peers connect to it directly. We
   replace ``torch.distributed.init_process_group`` by a wrapper that gives gloo a store
   that rewrites each published loopback address to the port of a delay relay (asked for on
   the relay's control port) forwarding to the real listener. Gloo picks which side of a pair
   dials by comparing the two addresses, so the relay port is chosen to sort exactly like the
   real one (``relay.Relay.listen``). CrypTen's code and gloo's transport are unchanged;
   every party-to-party TCP connection then crosses a relay. The Python store object is kept
   referenced: torch holds only its C++ half.
"""

from __future__ import annotations

import importlib
import socket
import struct
import sys

_loaded = None
_original_decode = None


def available() -> tuple[bool, str]:
    """(True, version) when CrypTen imports through this shim, else (False, why)."""
    try:
        crypten = load()
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available", with why
        return False, f"{type(exc).__name__}: {exc}"
    return True, getattr(crypten, "__version__", "0.4.1")


def load():
    """``import crypten`` after the torch 2.13 alias (shim 1)."""
    global _loaded
    if _loaded is None:
        old, new = "torch.onnx._internal.registration", "torch.onnx._internal.torchscript_exporter.registration"
        if old not in sys.modules:
            try:
                importlib.import_module(old)
            except ImportError:
                sys.modules[old] = importlib.import_module(new)
        import crypten

        _loaded = crypten
    return _loaded


def set_decode_fix(enabled: bool) -> None:
    """Shim 2: decode with a true floor division by the scale (or restore the stock one)."""
    global _original_decode
    from crypten.encoder import FixedPointEncoder

    if _original_decode is None:
        _original_decode = FixedPointEncoder.decode
    FixedPointEncoder.decode = fixed_decode if enabled else _original_decode


def fixed_decode(self, tensor):
    """FixedPointEncoder.decode with the divisor bug fixed: floor(t / s) + (t mod s) / s."""
    import torch

    if tensor is None:
        return None
    scale = self._scale
    if scale > 1:
        dividend = tensor.div(scale, rounding_mode="floor")
        remainder = tensor - dividend * scale  # in [0, scale)
        return (dividend.float() + remainder.float() / scale).data
    return tensor.to(torch.float32).data if tensor.dtype != torch.float32 else tensor.data


def stock_decode(encoder, tensor):
    """CrypTen's own decode (whatever ``set_decode_fix`` did)."""
    if _original_decode is not None:
        return _original_decode(encoder, tensor)
    return type(encoder).decode(encoder, tensor)


# ----- shim 3: relaying gloo's connections ----------------------------------------------
_AF_INET = 2
_stores: list = []
_AF_INET6 = 10


def rewrite_gloo_address(value: bytes, relay_port_for) -> bytes | None:
    """The gloo rank record with its listener port replaced, or None if ``value`` is not one.

    Layout (gloo's tcp transport, as torch 2.13 writes it): u64 hostname length, hostname,
    u64 address length, the address (``sockaddr_storage`` then a u64 sequence number),
    then the pair identifiers. The port sits in the sockaddr at bytes 2..4 (big-endian).
    """
    if len(value) < 16:
        return None
    (host_len,) = struct.unpack_from("<Q", value, 0)
    if host_len > 255 or 8 + host_len + 8 > len(value):
        return None
    (addr_len,) = struct.unpack_from("<Q", value, 8 + host_len)
    start = 16 + host_len
    if addr_len < 28 or start + addr_len > len(value):
        return None
    (family,) = struct.unpack_from("<H", value, start)
    if family == _AF_INET:
        host = socket.inet_ntop(socket.AF_INET, value[start + 4:start + 8])
    elif family == _AF_INET6:
        host = socket.inet_ntop(socket.AF_INET6, value[start + 8:start + 24])
    else:
        return None
    (port,) = struct.unpack_from(">H", value, start + 2)
    new_port = relay_port_for(host, port)
    out = bytearray(value)
    struct.pack_into(">H", out, start + 2, new_port)
    return bytes(out)


def install_relay_store(control: tuple[str, int], rendezvous_file: str) -> None:
    """Shim 3: route every gloo connection through the relay whose control port is given."""
    import torch.distributed as dist

    from smpc_compare.relay import request_relay

    original = dist.init_process_group
    if getattr(original, "_smpc_bench_relay", False):
        return

    class RelayStore(dist.Store):
        """A store that rewrites gloo's published listener addresses to relay ports."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.rewritten = 0

        def set(self, key, value):
            raw = value.encode() if isinstance(value, str) else bytes(value)
            new = rewrite_gloo_address(raw, lambda host, port: request_relay(control, host, port, gloo=True))
            if new is not None:
                self.rewritten += 1
                raw = new
            return self.inner.set(key, raw)

        def get(self, key):
            return self.inner.get(key)

        def add(self, key, amount):
            return self.inner.add(key, amount)

        def wait(self, keys, timeout=None):
            return self.inner.wait(keys) if timeout is None else self.inner.wait(keys, timeout)

        def check(self, keys):
            return self.inner.check(keys)

        def compare_set(self, key, expected, desired):
            return self.inner.compare_set(key, expected, desired)

        def delete_key(self, key):
            return self.inner.delete_key(key)

        def num_keys(self):
            return self.inner.num_keys()

        def set_timeout(self, timeout):
            return self.inner.set_timeout(timeout)

    def init_process_group(backend=None, init_method=None, timeout=None, world_size=-1, rank=-1, store=None,
                           **kwargs):
        if store is None:
            store = dist.FileStore(rendezvous_file, world_size)
        kw = dict(kwargs)
        if timeout is not None:
            kw["timeout"] = timeout
        wrapped = RelayStore(store)
        # keep the Python object alive: torch holds only the C++ half of a Python store, and
        # once the Python half is collected every call fails with "Not implemented"
        _stores.append(wrapped)
        return original(backend=backend, store=wrapped, world_size=world_size, rank=rank, **kw)

    init_process_group._smpc_bench_relay = True
    dist.init_process_group = init_process_group
