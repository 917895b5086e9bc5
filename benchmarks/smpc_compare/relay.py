"""Emulated WAN links: a userspace TCP relay that delays and rate-limits every connection.

This machine's kernel has no ``netem`` qdisc, so a link is emulated in user space: a party
dials a relay port on 127.0.0.1 instead of its peer, and the relay forwards the bytes to the
peer's real port. In each direction every chunk read is first paced to the link rate (a token
bucket, refilled at RATE, holding at most ``BURST_BYTES``) and then held for RTT/2 before it
is written on: a request and its answer therefore cost at least one RTT, and a message of
B bytes at least B / RATE more. Flow control stays TCP's: while a chunk waits for tokens the
relay reads nothing more from that socket, so the sender backs off as on a slow link.

The relay runs in its own process (``RelayProcess``) so its CPU time is not charged to any
party. Its control port answers one line per connection:

    RELAY HOST PORT   ->  the port of a new relay listener forwarding to HOST:PORT
    STATS             ->  total bytes forwarded in both directions since the start

Only loopback targets are accepted: traffic never leaves the machine.
"""

from __future__ import annotations

import asyncio
import ipaddress
import multiprocessing as mp
import os
import socket
from dataclasses import dataclass

READ_BYTES = 64 * 1024
BURST_BYTES = 64 * 1024


@dataclass(frozen=True)
class LinkShape:
    """A WAN link: round-trip time in milliseconds and an optional rate in Mbit/s."""

    rtt_ms: float
    rate_mbit: float | None = None

    @classmethod
    def parse(cls, text: str) -> LinkShape:
        """``RTT_MS`` or ``RTT_MS,RATE_MBIT`` (e.g. ``20`` or ``20,100``)."""
        parts = [p.strip() for p in str(text).split(",")]
        if not 1 <= len(parts) <= 2 or not parts[0]:
            raise ValueError(f"--wan {text!r}: expected RTT_MS or RTT_MS,RATE_MBIT")
        try:
            rtt = float(parts[0])
            rate = float(parts[1]) if len(parts) == 2 and parts[1] else None
        except ValueError:
            raise ValueError(f"--wan {text!r}: RTT_MS and RATE_MBIT must be numbers") from None
        if rtt < 0 or (rate is not None and rate <= 0):
            raise ValueError(f"--wan {text!r}: RTT must be >= 0 and the rate > 0")
        return cls(rtt, rate)

    @property
    def one_way_s(self) -> float:
        return self.rtt_ms / 2000.0

    @property
    def rate_bytes(self) -> float | None:
        return None if self.rate_mbit is None else self.rate_mbit * 1e6 / 8

    def describe(self) -> str:
        rate = f", {self.rate_mbit:g} Mbit/s per direction" if self.rate_mbit else ", no rate limit"
        return f"{self.rtt_ms:g} ms RTT ({self.rtt_ms / 2:g} ms each way){rate}"


class TokenBucket:
    """Pacing to ``rate`` bytes/s with at most ``burst`` bytes sent back to back."""

    def __init__(self, rate: float, burst: int = BURST_BYTES):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp: float | None = None

    async def take(self, n: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.stamp is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < n:
            wait = (n - self.tokens) / self.rate
            await asyncio.sleep(wait)
            self.stamp = loop.time()
            self.tokens = 0.0
        else:
            self.tokens -= n


class Relay:
    """Every relay listener of one process, sharing one link shape and one byte counter."""

    def __init__(self, shape: LinkShape):
        self.shape = shape
        self.bytes = 0
        self.servers: list[asyncio.base_events.Server] = []
        self.tasks: set[asyncio.Task] = set()

    async def listen(self, host: str, port: int, gloo_adjacent: bool = False) -> int:
        """A new listener on 127.0.0.1 that forwards each connection to host:port.

        ``gloo_adjacent``: gloo decides which side of a pair dials by comparing the two
        published addresses (IP, then ``sin_port`` read as a native integer, i.e. byte-swapped
        on little-endian machines). A relayed address must sort exactly like the real one
        against every other party's, so its port is chosen adjacent to the real port in that
        order: port +- 256, with nothing in between.
        """
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"relay target {host} is not a loopback address")
        candidates = [0]
        if gloo_adjacent:
            candidates = [q for q in (port + 256, port - 256) if 1024 <= q <= 65535]

        async def on_connect(reader, writer):
            try:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            except OSError:
                writer.close()
                return
            for w in (writer, up_writer):
                sock = w.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            a = asyncio.ensure_future(self._direction(reader, up_writer))
            b = asyncio.ensure_future(self._direction(up_reader, writer))
            self.tasks.update((a, b))
            try:
                await asyncio.gather(a, b, return_exceptions=True)
            except asyncio.CancelledError:
                pass
            self.tasks.difference_update((a, b))

        last_error = None
        for candidate in candidates:
            try:
                server = await asyncio.start_server(on_connect, "127.0.0.1", candidate)
            except OSError as exc:
                last_error = exc
                continue
            self.servers.append(server)
            return server.sockets[0].getsockname()[1]
        raise OSError(f"no relay port next to {port} is free ({last_error})")

    async def _direction(self, reader, writer) -> None:
        """One direction of one connection: pace, delay, forward, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        bucket = TokenBucket(self.shape.rate_bytes) if self.shape.rate_bytes else None
        delay = self.shape.one_way_s

        async def pump_in():
            try:
                while True:
                    data = await reader.read(READ_BYTES)
                    if not data:
                        break
                    for i in range(0, len(data), BURST_BYTES):
                        piece = data[i:i + BURST_BYTES]
                        if bucket is not None:
                            await bucket.take(len(piece))
                        self.bytes += len(piece)
                        queue.put_nowait((loop.time() + delay, piece))
            except (ConnectionError, OSError):
                pass
            finally:
                queue.put_nowait(None)

        async def pump_out():
            try:
                while True:
                    item = await queue.get()
                    if item is None:
                        break
                    due, piece = item
                    wait = due - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    writer.write(piece)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                try:
                    if writer.can_write_eof():
                        writer.write_eof()
                except (ConnectionError, OSError, RuntimeError):
                    pass

        await asyncio.gather(pump_in(), pump_out())
        writer.close()

    async def control(self, reader, writer) -> None:
        try:
            line = (await reader.readline()).decode().split()
            if line[:1] == ["RELAY"] and len(line) in (3, 4):
                reply = str(await self.listen(line[1], int(line[2]), gloo_adjacent=line[3:] == ["GLOO"]))
            elif line == ["STATS"]:
                reply = str(self.bytes)
            else:
                reply = "ERROR unknown command"
        except (ValueError, OSError) as exc:
            reply = f"ERROR {exc}"
        writer.write((reply + "\n").encode())
        await writer.drain()
        writer.close()

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.tasks):
            task.cancel()


async def _serve(shape: LinkShape, conn) -> None:
    relay = Relay(shape)
    control = await asyncio.start_server(relay.control, "127.0.0.1", 0)
    conn.send(control.sockets[0].getsockname()[1])
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # the parent closes its end of the pipe (or dies): stop
    loop.add_reader(conn.fileno(), stop.set)
    await stop.wait()
    control.close()
    relay.close()


def _relay_main(shape: LinkShape, conn) -> None:
    from smpc_compare.procs import die_with_parent

    die_with_parent()
    asyncio.run(_serve(shape, conn))


def _ask(control: tuple[str, int], line: str, timeout: float = 10.0) -> str:
    with socket.create_connection(control, timeout=timeout) as s:
        s.sendall((line + "\n").encode())
        reply = s.makefile().readline().strip()
    if not reply or reply.startswith("ERROR"):
        raise RuntimeError(f"delay relay: {line!r} -> {reply or 'no answer'}")
    return reply


def request_relay(control: tuple[str, int], host: str, port: int, gloo: bool = False) -> int:
    """Ask the relay process for a listener that forwards to host:port; returns its port
    (``gloo``: a port that sorts like ``port`` in gloo's address order, see ``Relay.listen``)."""
    return int(_ask(control, f"RELAY {host} {port}" + (" GLOO" if gloo else "")))


class RelayProcess:
    """The relay in a child process; ``close()`` (or the context manager) ends it."""

    def __init__(self, shape: LinkShape):
        self.shape = shape
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_relay_main, args=(shape, child), name="smpc-bench-relay", daemon=True)
        self.process.start()
        child.close()
        if not self._conn.poll(60):
            self.close()
            raise RuntimeError("the delay relay did not start within 60 s")
        self.control = ("127.0.0.1", int(self._conn.recv()))

    def relay_to(self, host: str, port: int) -> int:
        return request_relay(self.control, host, port)

    def bytes_forwarded(self) -> int:
        return int(_ask(self.control, "STATS"))

    def close(self) -> None:
        try:
            self._conn.close()
        except OSError:
            pass
        self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)

    def __enter__(self) -> RelayProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True
