"""The CSPRNG: AES-128-CTR keystreams, deterministic per key, uniform, and the only source of
randomness anywhere in smpc/ (a source scan refuses torch/numpy/random generators)."""

from __future__ import annotations

import ast
import ctypes
import re
from pathlib import Path

import pytest
import torch
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

import smpc
from smpc.prg import KEY_BYTES, PRG, new_key, private_prg

KEY_A = bytes(range(16))
KEY_B = bytes(range(1, 17))
P_MIN = 1e-6  # statistical tests fail only below this p-value (fixed keys: deterministic anyway)


def chi_square_uniform_p(counts: torch.Tensor) -> float:
    """p-value of a chi-square goodness-of-fit test against the uniform distribution."""
    counts = counts.to(torch.float64)
    expected = counts.sum() / counts.numel()
    stat = float(((counts - expected) ** 2 / expected).sum())
    df = counts.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64),
                                         torch.tensor(stat / 2.0, dtype=torch.float64)))


def test_known_answer_against_aes_ecb():
    """The stream is AES_k(0), AES_k(1), ... (CTR with a zero initial counter block)."""
    ecb = Cipher(algorithms.AES(KEY_A), modes.ECB()).encryptor()
    blocks = b"".join(ecb.update(i.to_bytes(16, "big")) for i in range(4))
    assert bytes(PRG(KEY_A).bytes(64)[:64]) == blocks


def test_deterministic_per_key_and_split_invariant():
    a = PRG(KEY_A)
    whole = bytes(a.bytes(10_000_000)[:10_000_000])  # crosses the internal 4 MiB chunks
    b = PRG(KEY_A)
    parts = b"".join(bytes(b.bytes(n)[:n]) for n in (1, 7, 4_194_300, 5_805_692))
    assert parts == whole
    assert a.bytes_drawn == b.bytes_drawn == 10_000_000
    assert torch.equal(PRG(KEY_A).int64(1000), PRG(KEY_A).int64(1000))
    c = PRG(KEY_A)
    first, second = c.int64(3), c.int64(5)
    assert torch.equal(torch.cat([first, second]), PRG(KEY_A).int64(8))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 1000, (1 << 19) + 3])
def test_xor_into_draws_the_same_stream_in_place(n):
    key = bytes(range(16))
    data = torch.arange(n, dtype=torch.int64) * 7919
    expected = data ^ PRG(key).int64(n) if n else data.clone()
    prg = PRG(key)
    target = data.clone()
    prg.xor_into(target)
    assert torch.equal(target, expected)
    reference = PRG(key)
    reference.int64(n)
    assert torch.equal(prg.int64(5), reference.int64(5))  # the stream continues in step
    assert prg.bytes_drawn == reference.bytes_drawn


def test_different_keys_differ():
    streams = [PRG(k).int64(1024) for k in (KEY_A, KEY_B, bytes(16), bytes(15) + b"\x01")]
    for i in range(len(streams)):
        for j in range(i + 1, len(streams)):
            assert not bool((streams[i] == streams[j]).any()), "two keys agreed on a 64-bit word"


def test_output_lengths_and_types():
    prg = PRG(KEY_A)
    for n in (0, 1, 2, 15, 16, 17, 1000):
        out = prg.int64(n)
        assert out.dtype == torch.int64 and out.shape == (n,)
        assert len(prg.bytes(n)) >= n
    out = prg.int64(5)
    out += 1  # a fresh writable buffer
    with pytest.raises(ValueError):
        PRG(bytes(15))


def test_fresh_keys():
    keys = {new_key() for _ in range(64)}
    assert len(keys) == 64 and all(len(k) == KEY_BYTES for k in keys)
    assert not torch.equal(private_prg().int64(4), private_prg().int64(4))


@pytest.mark.parametrize("key", [KEY_A, KEY_B, bytes(16)], ids=["key-a", "key-b", "zero-key"])
def test_bytes_are_uniform(key):
    data = torch.frombuffer(PRG(key).bytes(1 << 20), dtype=torch.uint8, count=1 << 20)
    assert chi_square_uniform_p(torch.bincount(data.to(torch.int64), minlength=256)) > P_MIN
    # the high byte of each 64-bit word (the sign and magnitude of a share) is uniform as well
    words = PRG(key).int64(1 << 17)
    top = (words >> 56) & 0xFF
    assert chi_square_uniform_p(torch.bincount(top, minlength=256)) > P_MIN
    # and each of the 64 bit positions is set about half the time (binomial, 8.5 sigma)
    n = words.numel()
    ones = ((words.unsqueeze(1) >> torch.arange(64)) & 1).sum(dim=0).to(torch.float64)
    assert bool(((ones - n / 2).abs() < 8.5 * (n / 4) ** 0.5).all()), ones


def test_chi_square_helper_rejects_non_uniform_data():
    """The statistic has power: a slightly biased byte histogram is rejected."""
    counts = torch.full((256,), 4096)
    counts[0] += 2000
    counts[1] -= 2000
    assert chi_square_uniform_p(counts) < P_MIN
    assert chi_square_uniform_p(torch.full((256,), 4096)) > 0.99


# ----- no other generator anywhere in smpc/ ---------------------------------------------------
SMPC_DIR = Path(smpc.__file__).resolve().parent
FORBIDDEN_ATTRIBUTES = {
    ("torch", "Generator"), ("torch", "rand"), ("torch", "randn"), ("torch", "randint"), ("torch", "randperm"),
    ("torch", "rand_like"), ("torch", "randn_like"), ("torch", "randint_like"), ("torch", "bernoulli"),
    ("torch", "multinomial"), ("torch", "normal"), ("torch", "poisson"), ("torch", "manual_seed"),
    ("torch", "seed"), ("torch", "initial_seed"), ("np", "random"), ("numpy", "random"),
}
FORBIDDEN_METHODS = {"random_", "uniform_", "normal_", "bernoulli_", "exponential_", "geometric_", "cauchy_",
                     "log_normal_", "default_rng"}
FORBIDDEN_MODULES = {"random", "numpy.random"}


def forbidden_uses(source: str) -> list[str]:
    """Uses of non-cryptographic generators in Python source (code only: docstrings and
    comments may name them)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod in FORBIDDEN_MODULES:
                found.append(f"from {mod} import ...")
            if mod in ("torch", "numpy"):
                found += [f"from {mod} import {a.name}" for a in node.names
                          if (mod if mod != "numpy" else "np", a.name) in FORBIDDEN_ATTRIBUTES]
        elif isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and (node.value.id, node.attr) in FORBIDDEN_ATTRIBUTES:
                found.append(f"{node.value.id}.{node.attr}")
            if node.attr in FORBIDDEN_METHODS:
                found.append(f".{node.attr}")
    return found


def test_scanner_finds_forbidden_generators():
    bad = "import random\nimport numpy as np\nimport torch\nfrom numpy.random import default_rng\n" \
          "g = torch.Generator()\nx = torch.rand(3)\ny = np.random.default_rng(1)\nz = x.uniform_()\n"
    found = forbidden_uses(bad)
    for needle in ("import random", "from numpy.random import ...", "torch.Generator", "torch.rand",
                   "np.random", ".uniform_", ".default_rng"):
        assert needle in found
    assert forbidden_uses('"""torch.Generator and random are never used"""\n# torch.rand\n') == []


# modules allowed a seeded numpy generator, with the reason; nothing else may use one
ALLOWED = {
    "datasets.py": ({"np.random", ".default_rng"}, "synthetic data with known answers, deterministic by seed; "
                    "no party's view depends on it"),
}


def test_no_module_in_smpc_uses_a_non_cryptographic_generator():
    files = sorted(SMPC_DIR.rglob("*.py"))
    assert len(files) >= 10
    offenders = {}
    for path in files:
        name = str(path.relative_to(SMPC_DIR))
        allowed = ALLOWED.get(name, (set(), ""))[0]
        uses = [u for u in forbidden_uses(path.read_text()) if u not in allowed]
        if uses:
            offenders[name] = uses
    assert offenders == {}, f"non-cryptographic randomness in smpc/: {offenders}"
    for path in SMPC_DIR.rglob("*.c"):
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", path.read_text(), flags=re.S)
        assert not re.search(r"\b(s?rand|random|drand48|rand_r)\s*\(", code), path.name


# ----- both stream paths against cryptography's own CTR output ---------------------------------
def reference_stream(key: bytes, n_bytes: int, skip: int = 0) -> bytes:
    """``n_bytes`` of AES-128-CTR keystream (zero initial counter) after ``skip`` bytes, from
    ``cryptography`` directly: the stream every PRG path must reproduce."""
    encryptor = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(skip + n_bytes))[skip:]


def _address_range(buf) -> tuple[int, int]:
    view = memoryview(buf).cast("B")
    if view.readonly:
        start = ctypes.addressof(ctypes.c_char.from_buffer_copy(b"\0"))  # read-only input: never written
        return start, start
    start = ctypes.addressof(ctypes.c_char.from_buffer(view))
    return start, start + view.nbytes


class NoOverlapEncryptor:
    """Wraps an encryptor and fails on an ``update_into`` whose input and output overlap:
    cryptography 51 refuses that, and older releases never promised it works."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def update_into(self, data, buf):
        self.calls += 1
        d0, d1 = _address_range(data)
        b0, b1 = _address_range(buf)
        assert d1 <= b0 or b1 <= d0 or d0 == d1, "update_into called with overlapping input and output"
        return self.inner.update_into(data, buf)

    def update(self, data):
        return self.inner.update(data)


@pytest.mark.parametrize("n", [1, 3, 1000, (1 << 19) + 3])
def test_xor_into_matches_cryptography_and_never_encrypts_in_place(n):
    key = bytes(range(7, 23))
    data = torch.arange(n, dtype=torch.int64) * -104729
    prg = PRG(key)
    prg.int64(5)  # start mid-stream
    guard = NoOverlapEncryptor(prg._encryptor)
    prg._encryptor = guard
    target = data.clone()
    prg.xor_into(target)
    stream = torch.frombuffer(bytearray(reference_stream(key, 8 * n, skip=40)), dtype=torch.int64)
    assert torch.equal(target, data ^ stream)
    assert guard.calls > 0


def test_the_overlap_guard_catches_in_place_encryption():
    """The guard above has teeth: an in-place update_into is what it refuses."""
    buf = bytearray(64)
    guard = NoOverlapEncryptor(Cipher(algorithms.AES(KEY_A), modes.CTR(bytes(16))).encryptor())
    with pytest.raises(AssertionError, match="overlapping"):
        guard.update_into(memoryview(buf)[:32], memoryview(buf))
    guard.update_into(bytes(32), bytearray(48))  # separate buffers pass


@pytest.mark.parametrize("offset_words", [0, 1, 7])
def test_every_draw_path_matches_cryptography(kernel_path, offset_words):
    """int64, bytes, chunks, xor_into, and the C kernels' AES-NI keystream (``PRG.claim``,
    ``fused.uniform``, ``fused.xor_random2_``) all give cryptography's CTR stream."""
    from smpc.protocols import fused
    from smpc.ring import RING64

    key_a, key_b = KEY_A, KEY_B
    n = 70_001
    skip = 8 * offset_words

    def fresh(key):
        prg = PRG(key)
        prg.int64(offset_words)
        prg._encryptor = NoOverlapEncryptor(prg._encryptor)
        return prg

    expected_a = torch.frombuffer(bytearray(reference_stream(key_a, 8 * n, skip)), dtype=torch.int64)
    expected_b = torch.frombuffer(bytearray(reference_stream(key_b, 8 * n, skip)), dtype=torch.int64)
    assert torch.equal(fresh(key_a).int64(n), expected_a)
    assert bytes(fresh(key_a).bytes(8 * n)[: 8 * n]) == reference_stream(key_a, 8 * n, skip)
    pieces = torch.cat([w[:c].clone() for _, c, w in fresh(key_a).chunks(n)])
    assert torch.equal(pieces, expected_a)
    drawn = fused.uniform(RING64, fresh(key_a), (n,))
    assert torch.equal(drawn, expected_a)
    z = torch.arange(n, dtype=torch.int64)
    fused.xor_random2_(z, fresh(key_a), fresh(key_b))
    assert torch.equal(z, torch.arange(n, dtype=torch.int64) ^ expected_a ^ expected_b)
    if kernel_path == "c" and fused.aes_kernels() is not None:
        claimed = fresh(key_a)
        key, start = claimed.claim(n)
        assert (key, start) == (key_a, offset_words)
        after = claimed.int64(3)  # the stream resumes through cryptography after the claim
        assert torch.equal(after, torch.frombuffer(bytearray(reference_stream(key_a, 24, skip + 8 * n)),
                                                   dtype=torch.int64))
