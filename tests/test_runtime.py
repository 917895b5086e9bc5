"""The in-process runtime: failures abort every party promptly with PartyUnavailable naming the
failed party (simulate re-raises the root error), silent peers cause ProtocolTimeout naming
the peer, and parties running different steps raise ProtocolError. No test sleeps or times
anything: "promptly" is checked by giving the job a timeout far beyond the test's run, so a
party that were left waiting would surface as a ProtocolTimeout, not a PartyUnavailable."""

from __future__ import annotations

import threading

import pytest
import torch

import smpc
from smpc.context import Context
from smpc.errors import PartyUnavailable, ProtocolError, ProtocolTimeout, SmpcError
from smpc.transport.inprocess import InProcessNetwork

LONG = 120.0  # never reached: a party still waiting at the end would mean the abort failed


class Boom(RuntimeError):
    pass


def _recording_job(world: int, body):
    """Wrap an SPMD body: wait until every context is set up, then record each rank's error."""
    started = threading.Barrier(world, timeout=LONG)
    errors: dict = {}
    lock = threading.Lock()

    def job(ctx, **kwargs):
        started.wait()
        try:
            return body(ctx, **kwargs)
        except BaseException as exc:
            with lock:
                errors[ctx.rank] = exc
            raise

    return job, errors


@pytest.mark.parametrize("failing", [0, 1, 2, 3])
def test_a_failing_party_aborts_the_others(failing):
    world = 4

    def body(ctx):
        x = smpc.share(ctx, torch.arange(5.0, dtype=torch.float64) if ctx.rank == 0 else None, owner=0, bound=10.0)
        if ctx.rank == failing:
            raise Boom(f"bank {failing} crashed")
        # everyone else now waits for a message from the failing party
        ctx.exchange("after-crash", recv_from=[failing])
        return x

    job, errors = _recording_job(world, body)
    with pytest.raises(Boom, match=f"bank {failing} crashed"):
        smpc.simulate(job, input_parties=1, timeout=LONG)
    assert set(errors) == set(range(world))
    for rank, exc in errors.items():
        if rank == failing:
            continue
        assert type(exc) is PartyUnavailable, f"rank {rank}: {exc!r}"
        assert exc.peer == failing
        assert f"party {failing} failed" in str(exc) and "Boom" in str(exc)


def test_the_root_error_wins_over_the_aborts():
    """Whatever rank order the aborts arrive in, simulate raises the error that caused them."""

    def body(ctx):
        if ctx.rank == 2:
            raise ValueError("bad parameter on rank 2")
        ctx.exchange("x", recv_from=[2])

    job, _ = _recording_job(3, body)
    with pytest.raises(ValueError, match="bad parameter on rank 2"):
        smpc.simulate(job, timeout=LONG)


def test_a_silent_peer_causes_a_timeout_naming_it():
    def job(ctx):
        if ctx.rank == 2:
            return "left early"  # never sends what the others wait for
        ctx.exchange("step", recv_from=[2])

    with pytest.raises(ProtocolTimeout) as err:
        smpc.simulate(job, timeout=0.5)
    assert err.value.peer == 2
    assert "party 2" in str(err.value) and "0.5 s" in str(err.value) and "'step#" in str(err.value)
    assert isinstance(err.value, PartyUnavailable) and isinstance(err.value, TimeoutError)


def test_transport_recv_times_out():
    net = InProcessNetwork(3)
    with pytest.raises(ProtocolTimeout, match="no message from party 1") as err:
        net.endpoint(0).recv(1, "x#0", 0.05)
    assert err.value.peer == 1


def test_tag_desync_raises_protocol_error():
    net = InProcessNetwork(3)
    net.endpoint(1).send(0, "alpha#0", torch.zeros(2))
    with pytest.raises(ProtocolError, match="expected step 'beta#0' from party 1, got 'alpha#0'"):
        net.endpoint(0).recv(1, "beta#0", 1.0)


def test_parties_running_different_code_fail_loudly():
    def job(ctx):
        if ctx.rank == 0:
            ctx.exchange("mul", sends={1: torch.zeros(3, dtype=torch.int64)})
        elif ctx.rank == 1:
            ctx.exchange("reveal", recv_from=[0])

    with pytest.raises(ProtocolError, match=r"party 1: expected step 'reveal#\d+' from party 0, got 'mul#\d+'"):
        smpc.simulate(job, timeout=LONG)


def test_after_an_abort_sends_fail_too():
    net = InProcessNetwork(3)
    net.abort(2, "Boom")
    with pytest.raises(PartyUnavailable, match="party 2 failed") as err:
        net.endpoint(0).send(1, "x#0", torch.zeros(1))
    assert err.value.peer == 2
    with pytest.raises(PartyUnavailable):  # the abort stays visible to later receives
        for _ in range(2):
            net.endpoint(1).recv(0, "x#0", LONG)


def test_simulate_passes_inputs_and_kwargs_and_returns_per_rank():
    def job(ctx, scale, value=0):
        return ctx.rank, ctx.world_size, scale * value

    out = smpc.simulate(job, input_parties=2, inputs={0: {"value": 1}, 4: {"value": 5}}, scale=10)
    assert out == [(0, 5, 10), (1, 5, 0), (2, 5, 0), (3, 5, 0), (4, 5, 50)]


def test_simulate_validates_its_arguments():
    with pytest.raises(SmpcError, match="exactly 3 compute parties"):
        smpc.simulate(lambda ctx: None, parties=4)
    with pytest.raises(SmpcError, match=r"ranks \[5\]"):
        smpc.simulate(lambda ctx: None, input_parties=1, inputs={5: {}})
    with pytest.raises(ValueError):
        Context(0, 2, InProcessNetwork(2).endpoint(0))


def test_comm_stats_start_at_zero_and_count_exactly():
    def job(ctx):
        fresh = ctx.comm_stats()
        ctx.exchange("a", sends={(ctx.rank + 1) % 3: torch.zeros(10, dtype=torch.int64)},
                     recv_from=[(ctx.rank - 1) % 3])
        return fresh, ctx.comm_stats()

    for rank, (fresh, after) in enumerate(smpc.simulate(job)):
        assert fresh == {"bytes_sent": 0, "rounds": 0, "messages_sent": 0, "bytes_sent_to": {}}
        assert after == {"bytes_sent": 80, "rounds": 1, "messages_sent": 1, "bytes_sent_to": {(rank + 1) % 3: 80}}


def test_owner_passing_none_is_an_error():
    def job(ctx):
        smpc.share(ctx, None, owner=0)

    with pytest.raises(SmpcError, match="owns this input but passed None"):
        smpc.simulate(job, timeout=LONG)


def test_a_list_payload_is_one_message_copied_once():
    net = InProcessNetwork(3)
    a, b = net.endpoint(0), net.endpoint(1)
    parts = [torch.arange(4, dtype=torch.int64), torch.arange(6, dtype=torch.int64).reshape(2, 3)]
    a.send(1, "t", parts)
    parts[1].zero_()  # the sender may reuse its buffers at once
    assert torch.equal(b.recv(0, "t", timeout=1), torch.cat([torch.arange(4), torch.arange(6)]))


def test_comm_stats_count_list_payloads_by_their_bytes():
    def job(ctx):
        parts = [torch.zeros(3, dtype=torch.int64), torch.zeros(2, dtype=torch.int64)]
        ctx.exchange("s", sends={(ctx.rank + 1) % 3: parts}, recv_from=[(ctx.rank + 2) % 3])
        return ctx.comm_stats()["bytes_sent"]

    assert smpc.simulate(job) == [40, 40, 40]


@pytest.mark.parametrize("ring", [64, 128])
def test_share_each_shares_every_owners_value_in_one_round(ring):
    """Compute parties 0 and 2 and input parties 3 and 4 share at once: the values come back
    exactly, the round is one, and each owner sends exactly what ``share`` would, minus the
    shape header that a public shape makes unnecessary."""
    owners = [0, 2, 3, 4]
    values = {o: [o * 1000 - 7, -(2**40) + o, 0, 5, o] for o in owners}
    eb = ring // 8

    def job(ctx):
        ctx.reset_comm_stats()
        parts = smpc.share_each(ctx, values.get(ctx.rank), owners, shape=(5,), bound=2.0**41, frac_bits=0, name="v")
        stats = ctx.comm_stats()
        opened = [p.reveal_int() for p in parts]
        return stats, opened, ctx.publish_each({"rank": ctx.rank}, owners)

    results = smpc.simulate(job, ring=ring, input_parties=2)
    for rank, (stats, opened, published) in enumerate(results):
        assert stats["rounds"] == 1
        if rank in (0, 2):  # a compute owner: one element per entry to the next party only
            assert stats["bytes_sent_to"] == {(rank + 1) % 3: 5 * eb}
        elif rank in (3, 4):  # an input party: one element per entry to parties 1 and 2
            assert stats["bytes_sent_to"] == {1: 5 * eb, 2: 5 * eb}
        else:
            assert stats["bytes_sent"] == 0
        assert [[int(v) for v in o.reshape(-1)] for o in opened] == [values[o] for o in owners]
        assert published == [{"rank": o} for o in owners]


def test_share_each_refuses_a_value_of_another_shape_naming_the_party():
    def job(ctx):
        mine = [1, 2, 3] if ctx.rank == 1 else [1, 2]
        return smpc.share_each(ctx, mine if ctx.rank in (0, 1) else None, [0, 1], shape=(2,), bound=10, frac_bits=0,
                              name="counts")

    with pytest.raises(smpc.InputError, match=r"party 1, column 'counts': a value of shape \(3,\)"):
        smpc.simulate(job)


def test_subpackages_are_reachable_after_a_plain_import():
    import subprocess
    import sys

    code = "import smpc; print(smpc.stats.histogram.__name__, smpc.analyses.get('describe').name, smpc.join.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["histogram", "describe", "smpc.join"]
