"""A party's runtime: rank, transport, PRG streams, communication counters, and the rounds
that carry public values (``publish``).

Every compute party runs the same function with its own ``Context`` (see ``smpc.simulate``
and the party service). Ranks 0..2 are the compute parties; ranks 3.. are input/result
parties that own data or receive results but hold no shares. Secrets are made from a
context by ``smpc.share``, ``smpc.share_each`` and ``smpc.constant`` (``smpc.secret``): this
module knows nothing of them, so the protocols can use it without a cycle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import torch

from smpc.errors import SmpcError
from smpc.fixedpoint import DEFAULTS
from smpc.prg import PRG, new_key
from smpc.ring import ring_for
from smpc.sharing import COMPUTE_RANKS, N_COMPUTE
from smpc.transport.base import Transport, payload_bytes

DEFAULT_TIMEOUT = 60.0


def _key_tensor(key: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(key), dtype=torch.uint8).clone()


def _tensor_key(t: torch.Tensor) -> bytes:
    return bytes(t.to(torch.uint8).tolist())


class Context:
    """One party's view of a job.

    Attributes: ``rank``, ``world_size``, ``ring`` (``smpc.ring.Ring``), ``frac_bits`` (the
    default for fixed-point values), ``timeout`` (seconds a receive may wait),
    ``result_ranks`` (the ranks a job's results are opened to: its recipients; default the
    compute parties). Analyses open their results to ``result_ranks`` only: any other rank,
    compute party or not, receives no result bytes and returns None.
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        transport: Transport,
        ring: int = 128,
        frac_bits: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        party_names: list[str] | None = None,
        result_ranks: Iterable[int] | None = None,
    ):
        if world_size < N_COMPUTE:
            raise ValueError(f"a job needs {N_COMPUTE} compute parties, got world_size={world_size}")
        result_ranks = COMPUTE_RANKS if result_ranks is None else tuple(sorted(set(result_ranks)))
        if any(not 0 <= r < world_size for r in result_ranks):
            raise SmpcError(f"result ranks {list(result_ranks)} are not all parties of this job "
                            f"(world size {world_size})")
        self.result_ranks = result_ranks
        self.rank = rank
        self.world_size = world_size
        self.transport = transport
        self.ring = ring_for(ring)
        defaults = DEFAULTS[self.ring.bits]
        self.frac_bits = defaults.frac_bits if frac_bits is None else int(frac_bits)
        self.default_bound = defaults.bound
        self.timeout = timeout
        self.party_names = party_names or [f"party {r}" for r in range(world_size)]
        self._send_seq: defaultdict[int, int] = defaultdict(int)
        self._recv_seq: defaultdict[int, int] = defaultdict(int)
        self._bytes_to: defaultdict[int, int] = defaultdict(int)
        self._messages = 0
        self._rounds = 0
        self.prg_next: PRG | None = None
        self.prg_prev: PRG | None = None
        self.prg_common: PRG | None = None
        self.input_prgs: list[PRG] | None = None
        self.input_prgs_of: dict[int, list[PRG]] = {}
        self._setup_keys()

    # ----- identity ------------------------------------------------------------------
    @property
    def is_compute(self) -> bool:
        return self.rank < N_COMPUTE

    def name_of(self, rank: int) -> str:
        return self.party_names[rank]

    # ----- communication -------------------------------------------------------------
    def exchange(
        self,
        step: str,
        sends: dict[int, torch.Tensor | list[torch.Tensor]] | None = None,
        recv_from: Iterable[int] = (),
    ) -> dict[int, torch.Tensor]:
        """One communication round: send at most one message to each peer (a tensor, or a
        list of tensors sent as their flattened concatenation without concatenating them
        first), then receive one from each peer in ``recv_from``. Counts bytes, messages and
        the round."""
        sends = sends or {}
        recv_from = list(recv_from)
        for peer, payload in sends.items():
            seq = self._send_seq[peer]
            self._send_seq[peer] = seq + 1
            self.transport.send(peer, f"{step}#{seq}", payload)
            self._bytes_to[peer] += payload_bytes(payload)
            self._messages += 1
        received = {}
        for peer in recv_from:
            seq = self._recv_seq[peer]
            self._recv_seq[peer] = seq + 1
            received[peer] = self.transport.recv(peer, f"{step}#{seq}", self.timeout)
        if sends or recv_from:
            self._rounds += 1
        return received

    def comm_stats(self) -> dict:
        """Traffic this party caused since the session was set up (key agreement excluded):
        ``bytes_sent`` (payload bytes), ``rounds`` (rounds it sent or received in),
        ``messages_sent`` and ``bytes_sent_to`` per peer rank."""
        return {
            "bytes_sent": sum(self._bytes_to.values()),
            "rounds": self._rounds,
            "messages_sent": self._messages,
            "bytes_sent_to": dict(self._bytes_to),
        }

    def reset_comm_stats(self) -> None:
        self._bytes_to.clear()
        self._messages = 0
        self._rounds = 0

    # ----- session keys --------------------------------------------------------------
    def _setup_keys(self) -> None:
        """Pairwise PRG keys, fresh per session from os.urandom.

        Compute party i draws the key it shares with i+1 and sends it there, party 0 one key
        for all three compute parties (``prg_common``); input party u
        draws one key per share index j in {0, 1} and sends it to the two holders of s_j.
        This is the only traffic not counted in ``comm_stats``.
        """
        rank = self.rank
        if self.is_compute:
            mine = new_key()
            nxt, prev = (rank + 1) % N_COMPUTE, (rank - 1) % N_COMPUTE
            got = self.exchange("keys", sends={nxt: _key_tensor(mine)}, recv_from=[prev])
            self.prg_next = PRG(mine)
            self.prg_prev = PRG(_tensor_key(got[prev]))
            # a stream all three compute parties know: the input shares a compute owner knows
            # anyway (``arithmetic.share_input``); party 0 draws its key
            if rank == 0:
                common = new_key()
                self.exchange("common-key", sends={1: _key_tensor(common), 2: _key_tensor(common)})
            else:
                common = _tensor_key(self.exchange("common-key", recv_from=[0])[0])
            self.prg_common = PRG(common)
            inputs = list(range(N_COMPUTE, self.world_size))
            got = self.exchange("input-keys", recv_from=inputs)
            for u in inputs:
                keys = got[u].reshape(2, -1)
                # party 0 holds s_0 and s_1, party 1 holds s_1 (and s_2), party 2 holds s_0
                self.input_prgs_of[u] = [PRG(_tensor_key(keys[0])), PRG(_tensor_key(keys[1]))]
        else:
            k0, k1 = new_key(), new_key()
            zero = bytes(len(k0))
            packed = {
                0: _key_tensor(k0 + k1),
                1: _key_tensor(zero + k1),  # party 1 never learns k0
                2: _key_tensor(k0 + zero),  # party 2 never learns k1
            }
            self.exchange("input-keys", sends=packed)
            self.input_prgs = [PRG(k0), PRG(k1)]
        self.reset_comm_stats()

    # ----- public values ----------------------------------------------------------------
    def publish_each(self, value, owners) -> list:
        """Every rank in ``owners`` sends its public, JSON-serialisable ``value`` to every other
        rank, all in one round; all ranks return the values in owner order (``publish`` is the
        one-owner case). For declared public facts only (schemas, group keys a policy lets
        banks disclose): the values are sent in the clear. Cost: 1 round; each owner's JSON
        bytes to each other rank."""
        import json

        owners = list(owners)
        sends = {}
        if self.rank in owners:
            payload = torch.frombuffer(bytearray(json.dumps(value).encode("utf-8")), dtype=torch.uint8)
            sends = {r: payload for r in range(self.world_size) if r != self.rank}
        got = self.exchange("publish-each", sends=sends, recv_from=[o for o in owners if o != self.rank])
        out = []
        for o in owners:
            if o == self.rank:
                out.append(value)
                continue
            try:
                out.append(json.loads(bytes(got[o].tolist()).decode("utf-8")))
            except ValueError:
                raise SmpcError(f"{self.name_of(o)} published a value that is not valid JSON") from None
        return out

    def publish(self, value, owner: int):
        """Send a public, JSON-serialisable value from ``owner`` to every other rank; all
        ranks return it (``publish_each`` with one owner). Cost: 1 round; the JSON bytes, to
        each other rank."""
        return self.publish_each(value, [owner])[0]
