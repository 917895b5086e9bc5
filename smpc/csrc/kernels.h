/* What the sources of the C kernels share. They build into one extension, smpc._ringkernels
 * (setup.py): ring.c the ring arithmetic, aes_ctr.c the AES-128-CTR keystream of smpc.prg,
 * rss_terms.c the fused protocol terms (a party's share of an AND, a product, a table B2A,
 * with its keystream masks), module.c the method table.
 *
 * Why C: Z_2^128 products need 64x64->128 multiplies, which torch lacks; emulating them
 * with 32-bit halves costs ~25 tensor passes. Here one pass with unsigned __int128 does it.
 * Likewise a fused kernel makes one pass where torch makes several, each allocating its
 * result (on this class of machine an int64 pass over 1e6 elements costs ~1 ms in place and
 * several ms when it has to allocate). smpc/ring.py and smpc/protocols keep a pure-torch
 * path with identical results for when this module is not built; the tests compare the two.
 *
 * Layout: a contiguous ring128 tensor of n elements is n low words followed by n high words;
 * a ring64 tensor is n words. Arguments are raw addresses (from tensor.data_ptr()) and
 * element counts; the Python side checks shapes, dtypes and contiguity before calling. The
 * GIL is released around every loop so the parties' threads run in parallel.
 */
#ifndef SMPC_KERNELS_H
#define SMPC_KERNELS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef unsigned __int128 u128;
typedef __int128 s128;

static inline u128 ld(const uint64_t *p, Py_ssize_t n, Py_ssize_t i) {
    return ((u128)p[n + i] << 64) | p[i];
}
static inline void st(uint64_t *p, Py_ssize_t n, Py_ssize_t i, u128 v) {
    p[i] = (uint64_t)v;
    p[n + i] = (uint64_t)(v >> 64);
}

#define PTR(T, x) ((T *)(uintptr_t)(x))

/* Loops that vectorise well get an AVX2 clone chosen at load time (gcc/clang ifunc); the
 * build stays portable: the default clone runs on any x86-64. Measured: the 1e6x8 @ 8x8
 * Z_2^64 matmul takes 40 ms with the AVX2 clone and 103 ms without. */
#if defined(__x86_64__) && defined(__linux__) && (defined(__clang__) || defined(__GNUC__))
#define MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define MULTIVERSION
#endif

/* ----- the AES-128-CTR keystream (aes_ctr.c) -------------------------------------------------
 * The stream of smpc.prg.PRG: word w is half w & 1 of counter block w >> 1. Only used where
 * the CPU has AES-NI (aes_supported) and smpc.protocols.fused.aes_kernels() found the known
 * answer of `cryptography`'s stream at first use; elsewhere the entry points refuse (AES_CHECK)
 * before any keystream is asked for. */
/* What the sources share stays inside the extension (hidden): calls between them bind
 * directly instead of through the PLT; only PyInit__ringkernels is exported. */
#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility push(hidden)
#endif

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define HAVE_AESNI 1
typedef struct { __m128i k[11]; } aes_key;
#else
#define HAVE_AESNI 0
typedef struct { uint64_t k[22]; } aes_key;
#endif

int aes_supported(void);
void aes_expand(const unsigned char *key, aes_key *out);
/* Keystream words start .. start + count - 1 into out. */
void aes_words(const aes_key *key, uint64_t start, Py_ssize_t count, uint64_t *out);
/* The keystream blocks of the given counters, two words each, into out. */
void aes_blocks(const aes_key *key, const uint64_t *blocks, Py_ssize_t count, uint64_t *out);

#define AES_CHECK(key_len)                                                                    \
    if (!aes_supported()) {                                                                   \
        PyErr_SetString(PyExc_RuntimeError, "AES-NI is not available on this CPU");           \
        return NULL;                                                                          \
    }                                                                                         \
    if ((key_len) != 16) {                                                                    \
        PyErr_SetString(PyExc_ValueError, "AES-128 keys are 16 bytes");                       \
        return NULL;                                                                          \
    }

/* Kernels that consume a keystream walk their elements in pieces: each piece's keystream
 * (AES_PIECE words per lane at most) is computed into small buffers that stay in L1, then
 * used. */
#define AES_PIECE 256

/* The number of elements in the piece that starts at element i0 of n. */
static inline Py_ssize_t piece_length(Py_ssize_t n, Py_ssize_t i0) { return n - i0 < AES_PIECE ? n - i0 : AES_PIECE; }

/* The keystream of the count elements from element i0 on of a ring tensor of n elements drawn
 * from key's stream at word start, as ring.random draws one (the n low words, then for
 * ring128 the n high words): the low words into lo and, where hi is not NULL, the high words
 * into hi. */
static inline void keystream_piece(const aes_key *key, uint64_t start, Py_ssize_t n, Py_ssize_t i0, Py_ssize_t count,
                                   uint64_t *lo, uint64_t *hi) {
    aes_words(key, start + (uint64_t)i0, count, lo);
    if (hi) aes_words(key, start + (uint64_t)(n + i0), count, hi);
}

/* ----- entry points (module.c lists them) ------------------------------------------------- */
PyObject *add128(PyObject *self, PyObject *args);
PyObject *sub128(PyObject *self, PyObject *args);
PyObject *mul128(PyObject *self, PyObject *args);
PyObject *neg128(PyObject *self, PyObject *args);
PyObject *sum128(PyObject *self, PyObject *args);
PyObject *rss_product128(PyObject *self, PyObject *args);
PyObject *shift128(PyObject *self, PyObject *args);
PyObject *shift64(PyObject *self, PyObject *args);
PyObject *add_stream(PyObject *self, PyObject *args);
PyObject *matmul64(PyObject *self, PyObject *args);
PyObject *matmul128(PyObject *self, PyObject *args);
PyObject *to_limbs(PyObject *self, PyObject *args);
PyObject *add_limb_product(PyObject *self, PyObject *args);
PyObject *carry_terms(PyObject *self, PyObject *args);
PyObject *carry_update(PyObject *self, PyObject *args);
PyObject *fold_terms(PyObject *self, PyObject *args);
PyObject *msb_prepare(PyObject *self, PyObject *args);
PyObject *sklansky_terms(PyObject *self, PyObject *args);
PyObject *sklansky_update(PyObject *self, PyObject *args);
PyObject *aes_available(PyObject *self, PyObject *args);
PyObject *aes_use_wide(PyObject *self, PyObject *args);
PyObject *aes_fill(PyObject *self, PyObject *args);
PyObject *aes_add_random(PyObject *self, PyObject *args);
PyObject *aes_xor_random(PyObject *self, PyObject *args);
PyObject *table_send128(PyObject *self, PyObject *args);
PyObject *table_keys128(PyObject *self, PyObject *args);
PyObject *table_pick128(PyObject *self, PyObject *args);
PyObject *rss_product_random128(PyObject *self, PyObject *args);
PyObject *por_terms(PyObject *self, PyObject *args);
PyObject *rss_product_trunc128(PyObject *self, PyObject *args);
PyObject *add_truncate_negated128(PyObject *self, PyObject *args);
PyObject *xor_positions(PyObject *self, PyObject *args);
PyObject *and_terms(PyObject *self, PyObject *args);

#if defined(__GNUC__) || defined(__clang__)
#pragma GCC visibility pop
#endif

#endif
