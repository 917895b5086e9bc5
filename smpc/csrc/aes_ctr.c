/* The AES-128-CTR keystream of smpc.prg.PRG with AES-NI: AES-128 in counter mode, the
 * counter a 128-bit big-endian block number starting at 0, the keystream read as
 * little-endian int64 words (word w is half w & 1 of block w >> 1). Computing it where it is
 * consumed saves the pass that writes it to memory and the pass that reads it back (a
 * 1e5-element ring128 tensor is larger than L2), and lets a receiver of a table compute only
 * the blocks it needs. Also the entry points that draw keystreams into ring tensors. */
#include "kernels.h"

#if HAVE_AESNI
#define AES_TARGET __attribute__((target("aes,sse4.1")))

AES_TARGET static inline __m128i aes_expand_step(__m128i key, __m128i assist) {
    assist = _mm_shuffle_epi32(assist, 0xff);
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    return _mm_xor_si128(key, assist);
}

AES_TARGET void aes_expand(const unsigned char *key, aes_key *out) {
    __m128i *k = out->k;
    k[0] = _mm_loadu_si128((const __m128i *)key);
    k[1] = aes_expand_step(k[0], _mm_aeskeygenassist_si128(k[0], 0x01));
    k[2] = aes_expand_step(k[1], _mm_aeskeygenassist_si128(k[1], 0x02));
    k[3] = aes_expand_step(k[2], _mm_aeskeygenassist_si128(k[2], 0x04));
    k[4] = aes_expand_step(k[3], _mm_aeskeygenassist_si128(k[3], 0x08));
    k[5] = aes_expand_step(k[4], _mm_aeskeygenassist_si128(k[4], 0x10));
    k[6] = aes_expand_step(k[5], _mm_aeskeygenassist_si128(k[5], 0x20));
    k[7] = aes_expand_step(k[6], _mm_aeskeygenassist_si128(k[6], 0x40));
    k[8] = aes_expand_step(k[7], _mm_aeskeygenassist_si128(k[7], 0x80));
    k[9] = aes_expand_step(k[8], _mm_aeskeygenassist_si128(k[8], 0x1b));
    k[10] = aes_expand_step(k[9], _mm_aeskeygenassist_si128(k[9], 0x36));
}

AES_TARGET static inline __m128i aes_counter(uint64_t block) {
    return _mm_set_epi64x((long long)__builtin_bswap64(block), 0);
}

/* Encrypt 8 counter blocks at once (AES latency hidden by independent blocks). */
AES_TARGET static inline void aes_enc8(const aes_key *key, const uint64_t *blocks, __m128i *out) {
    __m128i b[8];
    for (int j = 0; j < 8; j++) b[j] = _mm_xor_si128(aes_counter(blocks[j]), key->k[0]);
    for (int r = 1; r < 10; r++)
        for (int j = 0; j < 8; j++) b[j] = _mm_aesenc_si128(b[j], key->k[r]);
    for (int j = 0; j < 8; j++) _mm_storeu_si128(out + j, _mm_aesenclast_si128(b[j], key->k[10]));  /* out: 8-byte aligned */
}

AES_TARGET static inline __m128i aes_enc1(const aes_key *key, uint64_t block) {
    __m128i b = _mm_xor_si128(aes_counter(block), key->k[0]);
    for (int r = 1; r < 10; r++) b = _mm_aesenc_si128(b, key->k[r]);
    return _mm_aesenclast_si128(b, key->k[10]);
}

/* 16 blocks at once: with VAES (two blocks per 256-bit instruction) where the CPU has it. */
#define VAES_TARGET __attribute__((target("vaes,avx2,aes,sse4.1")))
static int aes_wide = -1;  /* VAES usable: set by aes_supported */

VAES_TARGET static void aes_enc16_vaes(const aes_key *key, const uint64_t *blocks, __m128i *out) {
    __m256i b[8];
    const __m256i k0 = _mm256_broadcastsi128_si256(key->k[0]);
    for (int j = 0; j < 8; j++)
        b[j] = _mm256_xor_si256(_mm256_set_m128i(aes_counter(blocks[2 * j + 1]), aes_counter(blocks[2 * j])), k0);
    for (int r = 1; r < 10; r++) {
        const __m256i kr = _mm256_broadcastsi128_si256(key->k[r]);
        for (int j = 0; j < 8; j++) b[j] = _mm256_aesenc_epi128(b[j], kr);
    }
    const __m256i kl = _mm256_broadcastsi128_si256(key->k[10]);
    for (int j = 0; j < 8; j++) _mm256_storeu_si256((__m256i *)(out + 2 * j), _mm256_aesenclast_epi128(b[j], kl));
}

/* Consecutive counter blocks block .. block + 16 k - 1 (k = nblocks / 16): the counters stay
 * in registers as little-endian integers in the high half of each 128-bit lane, a byte
 * shuffle makes them the big-endian counter blocks. */
VAES_TARGET static void aes_ctr16_vaes(const aes_key *key, uint64_t block, Py_ssize_t nblocks, uint64_t *out) {
    const __m256i swap = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 15, 14, 13, 12, 11, 10, 9, 8,
                                          0, 1, 2, 3, 4, 5, 6, 7, 15, 14, 13, 12, 11, 10, 9, 8);
    const __m256i step = _mm256_setr_epi64x(0, 2, 0, 2);
    __m256i rk[11];
    for (int r = 0; r < 11; r++) rk[r] = _mm256_broadcastsi128_si256(key->k[r]);
    __m256i ctr = _mm256_setr_epi64x(0, (long long)block, 0, (long long)(block + 1));
    for (Py_ssize_t i = 0; i + 16 <= nblocks; i += 16) {
        __m256i b[8];
        for (int j = 0; j < 8; j++) {
            b[j] = _mm256_xor_si256(_mm256_shuffle_epi8(ctr, swap), rk[0]);
            ctr = _mm256_add_epi64(ctr, step);
        }
        for (int r = 1; r < 10; r++)
            for (int j = 0; j < 8; j++) b[j] = _mm256_aesenc_epi128(b[j], rk[r]);
        for (int j = 0; j < 8; j++)
            _mm256_storeu_si256((__m256i *)(out + 2 * i + 4 * j), _mm256_aesenclast_epi128(b[j], rk[10]));
    }
}

AES_TARGET static inline void aes_enc16(const aes_key *key, const uint64_t *blocks, __m128i *out) {
    if (aes_wide > 0) {
        aes_enc16_vaes(key, blocks, out);
    } else {
        aes_enc8(key, blocks, out);
        aes_enc8(key, blocks + 8, out + 8);
    }
}

AES_TARGET void aes_words(const aes_key *key, uint64_t start, Py_ssize_t count, uint64_t *out) {
    uint64_t tmp[2];
    if (count <= 0) return;
    if (start & 1) {
        _mm_storeu_si128((__m128i *)tmp, aes_enc1(key, start >> 1));
        *out++ = tmp[1];
        start++;
        count--;
    }
    uint64_t block = start >> 1;
    Py_ssize_t full = count >> 1, i = 0;
    if (aes_wide > 0) {
        aes_ctr16_vaes(key, block, full, out);
        i = full & ~(Py_ssize_t)15;
    }
    for (; i + 16 <= full; i += 16) {
        uint64_t ctr[16];
        for (int j = 0; j < 16; j++) ctr[j] = block + i + j;
        aes_enc16(key, ctr, (__m128i *)(out + 2 * i));
    }
    for (; i < full; i++) _mm_storeu_si128((__m128i *)(out + 2 * i), aes_enc1(key, block + i));
    if (count & 1) {
        _mm_storeu_si128((__m128i *)tmp, aes_enc1(key, block + full));
        out[2 * full] = tmp[0];
    }
}

AES_TARGET void aes_blocks(const aes_key *key, const uint64_t *blocks, Py_ssize_t count, uint64_t *out) {
    if (count == 16) {  /* the common call: one batch */
        aes_enc16(key, blocks, (__m128i *)out);
        return;
    }
    Py_ssize_t i = 0;
    for (; i + 16 <= count; i += 16) aes_enc16(key, blocks + i, (__m128i *)(out + 2 * i));
    for (; i < count; i++) _mm_storeu_si128((__m128i *)(out + 2 * i), aes_enc1(key, blocks[i]));
}
#else
/* Without AES-NI the entry points refuse (AES_CHECK) before asking for a keystream. */
void aes_expand(const unsigned char *key, aes_key *out) { (void)key; memset(out, 0, sizeof *out); }
void aes_words(const aes_key *key, uint64_t start, Py_ssize_t count, uint64_t *out) {
    (void)key; (void)start; (void)count; (void)out;
}
void aes_blocks(const aes_key *key, const uint64_t *blocks, Py_ssize_t count, uint64_t *out) {
    (void)key; (void)blocks; (void)count; (void)out;
}
#endif

int aes_supported(void) {
#if HAVE_AESNI
    __builtin_cpu_init();
    if (aes_wide < 0) aes_wide = __builtin_cpu_supports("vaes") && __builtin_cpu_supports("avx2");
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse4.1");
#else
    return 0;
#endif
}

PyObject *aes_available(PyObject *self, PyObject *args) { return PyBool_FromLong(aes_supported()); }

/* Tests: aes_use_wide(0) forces the 128-bit AES-NI path on a VAES machine (so both paths are
 * checked where the tests run), aes_use_wide(1) restores the CPU's choice; returns whether
 * the wide path was on before. */
PyObject *aes_use_wide(PyObject *self, PyObject *args) {
    int on;
    if (!PyArg_ParseTuple(args, "p", &on)) return NULL;
#if HAVE_AESNI
    if (!aes_supported()) Py_RETURN_FALSE;
    int before = aes_wide > 0;
    aes_wide = on && __builtin_cpu_supports("vaes") && __builtin_cpu_supports("avx2");
    return PyBool_FromLong(before);
#else
    Py_RETURN_FALSE;
#endif
}

/* out[0 .. count) = keystream words start .. start + count - 1 of the key's stream. */
PyObject *aes_fill(PyObject *self, PyObject *args) {
    unsigned long long out_, start; const char *key; Py_ssize_t key_len, count;
    if (!PyArg_ParseTuple(args, "Ky#Kn", &out_, &key, &key_len, &start, &count)) return NULL;
    AES_CHECK(key_len)
    aes_key k;
    aes_expand((const unsigned char *)key, &k);
    Py_BEGIN_ALLOW_THREADS
    aes_words(&k, start, count, PTR(uint64_t, out_));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* z += sign1 * R1 + sign2 * R2 for ring tensors R drawn (as ring.random draws them: the n
 * low words, then the n high words) from key1's stream at word start1 and key2's at start2;
 * an empty key2 skips the second. lanes 1: Z_2^64, 2: Z_2^128. One pass over z. */
PyObject *aes_add_random(PyObject *self, PyObject *args) {
    unsigned long long z_, start1, start2; Py_ssize_t n, len1, len2; int lanes, sign1, sign2;
    const char *key1, *key2;
    if (!PyArg_ParseTuple(args, "Kniy#Kiy#Ki", &z_, &n, &lanes, &key1, &len1, &start1, &sign1, &key2, &len2,
                          &start2, &sign2)) return NULL;
    AES_CHECK(len1)
    if (len2 != 0 && len2 != 16) {
        PyErr_SetString(PyExc_ValueError, "AES-128 keys are 16 bytes");
        return NULL;
    }
    if ((lanes != 1 && lanes != 2) || (sign1 != 1 && sign1 != -1) || (sign2 != 1 && sign2 != -1) || n < 0) {
        PyErr_SetString(PyExc_ValueError, "aes_add_random: bad arguments");
        return NULL;
    }
    uint64_t *z = PTR(uint64_t, z_);
    aes_key k1, k2;
    int two = len2 == 16;
    aes_expand((const unsigned char *)key1, &k1);
    if (two) aes_expand((const unsigned char *)key2, &k2);
    Py_BEGIN_ALLOW_THREADS
    uint64_t a_lo[AES_PIECE], a_hi[AES_PIECE], b_lo[AES_PIECE], b_hi[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += AES_PIECE) {
        Py_ssize_t c = piece_length(n, i0);
        keystream_piece(&k1, start1, n, i0, c, a_lo, lanes == 2 ? a_hi : NULL);
        if (two) keystream_piece(&k2, start2, n, i0, c, b_lo, lanes == 2 ? b_hi : NULL);
        if (lanes == 1) {
            uint64_t *d = z + i0;
            for (Py_ssize_t i = 0; i < c; i++) {
                uint64_t v = sign1 > 0 ? a_lo[i] : -a_lo[i];
                if (two) v += sign2 > 0 ? b_lo[i] : -b_lo[i];
                d[i] += v;
            }
        } else {
            for (Py_ssize_t i = 0; i < c; i++) {
                u128 r = ((u128)a_hi[i] << 64) | a_lo[i];
                u128 v = sign1 > 0 ? r : -r;
                if (two) {
                    u128 s = ((u128)b_hi[i] << 64) | b_lo[i];
                    v += sign2 > 0 ? s : -s;
                }
                st(z, n, i0 + i, ld(z, n, i0 + i) + v);
            }
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* z ^= R1 ^ R2 (count int64 words; R from key1's stream at word start1, key2's at start2). */
PyObject *aes_xor_random(PyObject *self, PyObject *args) {
    unsigned long long z_, start1, start2; Py_ssize_t count, len1, len2; const char *key1, *key2;
    if (!PyArg_ParseTuple(args, "Kny#Ky#K", &z_, &count, &key1, &len1, &start1, &key2, &len2, &start2))
        return NULL;
    AES_CHECK(len1)
    if (len2 != 16) {
        PyErr_SetString(PyExc_ValueError, "AES-128 keys are 16 bytes");
        return NULL;
    }
    uint64_t *z = PTR(uint64_t, z_);
    aes_key k1, k2;
    aes_expand((const unsigned char *)key1, &k1);
    aes_expand((const unsigned char *)key2, &k2);
    Py_BEGIN_ALLOW_THREADS
    uint64_t a[AES_PIECE], b[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < count; i0 += AES_PIECE) {
        Py_ssize_t c = piece_length(count, i0);
        keystream_piece(&k1, start1, count, i0, c, a, NULL);
        keystream_piece(&k2, start2, count, i0, c, b, NULL);
        for (Py_ssize_t i = 0; i < c; i++) z[i0 + i] ^= a[i] ^ b[i];
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}
