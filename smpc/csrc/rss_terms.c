/* Fused protocol terms: one party's share of a boolean AND level (boolean.msb's carry tree,
 * the equality fold, the Sklansky adder, the prefix-OR), of a table B2A (rounds.Table), of a
 * replicated-sharing product with its masks or its truncation (rounds.Mul), each in one pass
 * with the keystream masks computed where they are added. */
#include "kernels.h"

/* ----- the carry tree of boolean.msb (natural bit order) ---------------------------------
 * One level works on w-bit fields (h = w/2; mlo has the low h bits of every field set):
 * x = [p_hi | p_hi] and y = [p_lo | g_lo] per field, so one AND yields p_hi & g_lo (low
 * half) and p_hi & p_lo (high half). carry_terms writes this party's 3-out-of-3 term of
 * x & y, x1 & (y1 ^ y2) ^ x2 & y1 (the caller XORs the zero-sharing in); carry_update forms
 * g' = g_hi ^ (p_hi & g_lo) and p' = p_hi & p_lo in the low halves and, with compact,
 * interleaves words 2j and 2j+1 into word j (the odd one shifted up by h). */

PyObject *carry_terms(PyObject *self, PyObject *args) {
    unsigned long long out_, g1_, p1_, g2_, p2_, mlo; Py_ssize_t n; int h;
    if (!PyArg_ParseTuple(args, "KKKKKnKi", &out_, &g1_, &p1_, &g2_, &p2_, &n, &mlo, &h)) return NULL;
    if (h < 1 || h > 32) {
        PyErr_SetString(PyExc_ValueError, "carry_terms: bad half width");
        return NULL;
    }
    uint64_t *out = PTR(uint64_t, out_);
    const uint64_t *g1 = PTR(const uint64_t, g1_), *p1 = PTR(const uint64_t, p1_);
    const uint64_t *g2 = PTR(const uint64_t, g2_), *p2 = PTR(const uint64_t, p2_);
    const uint64_t lo = mlo, hi = ~mlo;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t x1 = (p1[i] & hi) | ((p1[i] >> h) & lo), y1 = ((p1[i] & lo) << h) | (g1[i] & lo);
        uint64_t x2 = (p2[i] & hi) | ((p2[i] >> h) & lo), y2 = ((p2[i] & lo) << h) | (g2[i] & lo);
        out[i] = (x1 & (y1 ^ y2)) ^ (x2 & y1);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyObject *carry_update(PyObject *self, PyObject *args) {
    unsigned long long og_, op_, g_, z_, mlo; Py_ssize_t n; int h, compact;
    if (!PyArg_ParseTuple(args, "KKKKnKii", &og_, &op_, &g_, &z_, &n, &mlo, &h, &compact)) return NULL;
    if (h < 1 || h > 32 || (compact && (n % 2))) {
        PyErr_SetString(PyExc_ValueError, "carry_update: bad half width or odd word count");
        return NULL;
    }
    uint64_t *og = PTR(uint64_t, og_), *op = PTR(uint64_t, op_);
    const uint64_t *g = PTR(const uint64_t, g_), *z = PTR(const uint64_t, z_);
    const uint64_t lo = mlo;
    Py_BEGIN_ALLOW_THREADS
    if (compact) {
        for (Py_ssize_t j = 0; j < n / 2; j++) {
            Py_ssize_t a = 2 * j, b = a + 1;
            uint64_t ga = ((g[a] >> h) & lo) ^ (z[a] & lo), gb = ((g[b] >> h) & lo) ^ (z[b] & lo);
            og[j] = ga | (gb << h);
            if (op) op[j] = ((z[a] >> h) & lo) | (((z[b] >> h) & lo) << h);
        }
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            og[i] = ((g[i] >> h) & lo) ^ (z[i] & lo);
            if (op) op[i] = (z[i] >> h) & lo;
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* AND-fold of the equality tree: words 2j and 2j+1 of one level (h = w/2) become word j of
 * the next, x = [b_hi | a_hi] and y = [b_lo | a_lo] per field, so that x & y holds
 * a_hi & a_lo (low half) and b_hi & b_lo (high half); writes this party's term
 * x1 & (y1 ^ y2) ^ x2 & y1. */
PyObject *fold_terms(PyObject *self, PyObject *args) {
    unsigned long long out_, z1_, z2_, mlo; Py_ssize_t n; int h;
    if (!PyArg_ParseTuple(args, "KKKnKi", &out_, &z1_, &z2_, &n, &mlo, &h)) return NULL;
    if (h < 1 || h > 32 || (n % 2)) {
        PyErr_SetString(PyExc_ValueError, "fold_terms: bad half width or odd word count");
        return NULL;
    }
    uint64_t *out = PTR(uint64_t, out_);
    const uint64_t *z1 = PTR(const uint64_t, z1_), *z2 = PTR(const uint64_t, z2_);
    const uint64_t lo = mlo, hi = ~mlo;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t j = 0; j < n / 2; j++) {
        Py_ssize_t a = 2 * j, b = a + 1;
        uint64_t x1 = ((z1[a] >> h) & lo) | (z1[b] & hi), y1 = (z1[a] & lo) | ((z1[b] & lo) << h);
        uint64_t x2 = ((z2[a] >> h) & lo) | (z2[b] & hi), y2 = (z2[a] & lo) | ((z2[b] & lo) << h);
        out[j] = (x1 & (y1 ^ y2)) ^ (x2 & y1);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* The start of boolean.msb on one party: with t = this party's share words of x (as boolean
 * words, x = t_0 ^ t_1 ^ t_2 + carries) and m = its shares of maj(t_0, t_1, t_2), c = m << 1:
 * z = this party's term of g = t & c with bit 63 cleared, p_k = (t_k ^ c_k) with bit 63
 * cleared (and set where set63_k: component 0 carries the public 1), top_k = bit 63 of
 * t_k ^ c_k. */
PyObject *msb_prepare(PyObject *self, PyObject *args) {
    unsigned long long z_, p1_, p2_, top1_, top2_, t1_, t2_, m1_, m2_; Py_ssize_t n; int set1, set2;
    if (!PyArg_ParseTuple(args, "KKKKKKKKKnii", &z_, &p1_, &p2_, &top1_, &top2_, &t1_, &t2_, &m1_, &m2_, &n,
                          &set1, &set2)) return NULL;
    uint64_t *z = PTR(uint64_t, z_), *p1 = PTR(uint64_t, p1_), *p2 = PTR(uint64_t, p2_);
    uint64_t *top1 = PTR(uint64_t, top1_), *top2 = PTR(uint64_t, top2_);
    const uint64_t *t1 = PTR(const uint64_t, t1_), *t2 = PTR(const uint64_t, t2_);
    const uint64_t *m1 = PTR(const uint64_t, m1_), *m2 = PTR(const uint64_t, m2_);
    const uint64_t low63 = ~(1ULL << 63), s1 = set1 ? 1ULL << 63 : 0, s2 = set2 ? 1ULL << 63 : 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t c1 = m1[i] << 1, c2 = m2[i] << 1, a1 = t1[i], a2 = t2[i];
        z[i] = (((c1 ^ c2) & a1) ^ (a2 & c1)) & low63;
        uint64_t q1 = a1 ^ c1, q2 = a2 ^ c2;
        top1[i] = q1 >> 63;
        top2[i] = q2 >> 63;
        p1[i] = (q1 & low63) | s1;
        p2[i] = (q2 & low63) | s2;
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* One level l of the Sklansky prefix adder of boolean.bit_decompose (h = 2^l): bit i with bit l
 * set (mask m) takes the group (g, p) of the top bit j of the lower half of its 2h-block, so
 * x = p & m, y_g / y_p = g_j / p_j spread over the upper half (top: the j bits; a bit at j+1
 * times a run of h ones). Both products travel in one word: x' = x | x >> h, y' = y_g | y_p >> h
 * (the shifted copies land in the lower halves). sklansky_terms writes this party's term
 * x1' & (y1' ^ y2') ^ x2' & y1'; sklansky_update applies z to one component in place:
 * g ^= z & m, p = (p & ~m) | (z & ~m) << h. */
static inline void sk_operands(uint64_t g, uint64_t p, uint64_t m, uint64_t top, uint64_t run, int h,
                               uint64_t *x, uint64_t *y) {
    uint64_t xm = p & m;
    uint64_t yg = ((g & top) << 1) * run, yp = ((p & top) << 1) * run;
    *x = xm | (xm >> h);
    *y = yg | (yp >> h);
}

PyObject *sklansky_terms(PyObject *self, PyObject *args) {
    unsigned long long out_, g1_, p1_, g2_, p2_, m, top; Py_ssize_t n; int h;
    if (!PyArg_ParseTuple(args, "KKKKKnKKi", &out_, &g1_, &p1_, &g2_, &p2_, &n, &m, &top, &h)) return NULL;
    if (h < 1 || h > 32) {
        PyErr_SetString(PyExc_ValueError, "sklansky_terms: bad half width");
        return NULL;
    }
    uint64_t *out = PTR(uint64_t, out_);
    const uint64_t *g1 = PTR(const uint64_t, g1_), *p1 = PTR(const uint64_t, p1_);
    const uint64_t *g2 = PTR(const uint64_t, g2_), *p2 = PTR(const uint64_t, p2_);
    const uint64_t run = (h == 64) ? ~0ULL : ((1ULL << h) - 1);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t x1, y1, x2, y2;
        sk_operands(g1[i], p1[i], m, top, run, h, &x1, &y1);
        sk_operands(g2[i], p2[i], m, top, run, h, &x2, &y2);
        out[i] = (x1 & (y1 ^ y2)) ^ (x2 & y1);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyObject *sklansky_update(PyObject *self, PyObject *args) {
    unsigned long long g_, p_, z_, m; Py_ssize_t n; int h;
    if (!PyArg_ParseTuple(args, "KKKnKi", &g_, &p_, &z_, &n, &m, &h)) return NULL;
    if (h < 1 || h > 32) {
        PyErr_SetString(PyExc_ValueError, "sklansky_update: bad half width");
        return NULL;
    }
    uint64_t *g = PTR(uint64_t, g_), *p = PTR(uint64_t, p_);
    const uint64_t *z = PTR(const uint64_t, z_);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        g[i] ^= z[i] & m;
        p[i] = (p[i] & ~m) | ((z[i] & ~m) << h);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ----- table B2A (rounds.Table) over AES-CTR ------------------------------------------------
 * Entry j of output table t for element i is AES block b = (t n + i) size + j of a message:
 * two words (low, high) of a Z_2^128 value, so a receiver computes exactly the one block it
 * needs. Shares are ring128 tensors (n_out, 2, n): per table the n low words, then the n
 * high words. */

static inline __attribute__((always_inline)) void table_piece(uint64_t *o, const uint64_t *kb, const uint64_t *tv,
                                                              const uint64_t *a0, const uint64_t *a1, const int64_t *c,
                                                              Py_ssize_t n, Py_ssize_t i0, Py_ssize_t cnt, Py_ssize_t size) {
    for (Py_ssize_t e = 0; e < cnt; e++) {
        Py_ssize_t i = i0 + e;
        u128 base = ld(a0, n, i) + ld(a1, n, i);
        uint64_t ci = (uint64_t)c[i] & (uint64_t)(size - 1);
        uint64_t *oe = o + 2 * e * size;
        const uint64_t *ke = kb + 2 * e * size;
        for (Py_ssize_t j = 0; j < size; j++) {
            uint64_t at = ci ^ (uint64_t)j;
            u128 plain = (((u128)tv[2 * at + 1] << 64) | tv[2 * at]) - base;
            oe[2 * j] ^= (uint64_t)plain ^ ke[2 * j];
            oe[2 * j + 1] ^= (uint64_t)(plain >> 64) ^ ke[2 * j + 1];
        }
    }
}

/* The sender's message to both receivers: plain(t, i, j) = T_t[c_i ^ j] - r0_t[i] - r1_t[i]
 * XOR block b of key_a's stream XOR block b of key_b's. values: T_t[e] at words 2 (t size + e)
 * (low) and + 1 (high). */
PyObject *table_send128(PyObject *self, PyObject *args) {
    unsigned long long m_, c_, values_, r0_, r1_; Py_ssize_t n_out, n, size, la, lb;
    const char *ka, *kb;
    if (!PyArg_ParseTuple(args, "KKKKKnnny#y#", &m_, &c_, &values_, &r0_, &r1_, &n_out, &n, &size, &ka, &la, &kb,
                          &lb)) return NULL;
    AES_CHECK(la)
    if (lb != 16 || size < 1 || size > 256 || (size & (size - 1)) || n_out < 1 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "table_send128: bad arguments");
        return NULL;
    }
    uint64_t *m = PTR(uint64_t, m_);
    const int64_t *c = PTR(const int64_t, c_);
    const uint64_t *values = PTR(const uint64_t, values_), *r0 = PTR(const uint64_t, r0_), *r1 = PTR(const uint64_t, r1_);
    aes_key key_a, key_b;
    aes_expand((const unsigned char *)ka, &key_a);
    aes_expand((const unsigned char *)kb, &key_b);
    Py_BEGIN_ALLOW_THREADS
    uint64_t kb_words[AES_PIECE];
    const Py_ssize_t step = AES_PIECE / 2 / size > 0 ? AES_PIECE / 2 / size : 1;  /* elements per piece */
    for (Py_ssize_t t = 0; t < n_out; t++) {
        const uint64_t *tv = values + 2 * t * size, *a0 = r0 + 2 * t * n, *a1 = r1 + 2 * t * n;
        for (Py_ssize_t i0 = 0; i0 < n; i0 += step) {
            Py_ssize_t cnt = n - i0 < step ? n - i0 : step;
            uint64_t first = (uint64_t)(t * n + i0) * size;  /* first block of the piece */
            uint64_t *o = m + 2 * first;
            aes_words(&key_a, 2 * first, 2 * cnt * size, o);
            aes_words(&key_b, 2 * first, 2 * cnt * size, kb_words);
            switch (size) {  /* constant sizes: unrolled inner loops */
            case 2: table_piece(o, kb_words, tv, a0, a1, c, n, i0, cnt, 2); break;
            case 4: table_piece(o, kb_words, tv, a0, a1, c, n, i0, cnt, 4); break;
            case 8: table_piece(o, kb_words, tv, a0, a1, c, n, i0, cnt, 8); break;
            default: table_piece(o, kb_words, tv, a0, a1, c, n, i0, cnt, size); break;
            }
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Blocks (t n + i + j) size + d_(i+j) of key's stream for j < count <= 16 (16: what the AES
 * kernel encrypts at once) into elements i .. i + count - 1 of o, a ring128 tensor of n. */
static inline __attribute__((always_inline)) void table_key_blocks(uint64_t *o, const aes_key *key, const int64_t *d,
                                                                   Py_ssize_t t, Py_ssize_t n, Py_ssize_t size,
                                                                   Py_ssize_t i, Py_ssize_t count) {
    uint64_t ctr[16], w[32];
    for (Py_ssize_t j = 0; j < count; j++)
        ctr[j] = (uint64_t)(t * n + i + j) * size + ((uint64_t)d[i + j] & (uint64_t)(size - 1));
    aes_blocks(key, ctr, count, w);
    for (Py_ssize_t j = 0; j < count; j++) {
        o[i + j] = w[2 * j];
        o[n + i + j] = w[2 * j + 1];
    }
}

/* A receiver's message to the other receiver: block (t n + i) size + d_i of key's stream,
 * as ring128 tensors (n_out, 2, n). */
PyObject *table_keys128(PyObject *self, PyObject *args) {
    unsigned long long out_, d_; Py_ssize_t n_out, n, size, len;
    const char *key;
    if (!PyArg_ParseTuple(args, "KKnnny#", &out_, &d_, &n_out, &n, &size, &key, &len)) return NULL;
    AES_CHECK(len)
    if (size < 1 || size > 256 || (size & (size - 1)) || n_out < 1 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "table_keys128: bad arguments");
        return NULL;
    }
    uint64_t *out = PTR(uint64_t, out_);
    const int64_t *d = PTR(const int64_t, d_);
    aes_key k;
    aes_expand((const unsigned char *)key, &k);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t t = 0; t < n_out; t++) {
        uint64_t *o = out + 2 * t * n;
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16) table_key_blocks(o, &k, d, t, n, size, i, 16);  /* constant: unrolled */
        if (i < n) table_key_blocks(o, &k, d, t, n, size, i, n - i);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* A receiver's share: out(t, i) = msg block (t n + i) size + d_i XOR own(t, i) XOR other(t, i)
 * (own, other, out: ring128 tensors (n_out, 2, n)). No AES: available everywhere. */
PyObject *table_pick128(PyObject *self, PyObject *args) {
    unsigned long long out_, msg_, own_, other_, d_; Py_ssize_t n_out, n, size;
    if (!PyArg_ParseTuple(args, "KKKKKnnn", &out_, &msg_, &own_, &other_, &d_, &n_out, &n, &size)) return NULL;
    if (size < 1 || size > 256 || (size & (size - 1)) || n_out < 1 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "table_pick128: bad arguments");
        return NULL;
    }
    uint64_t *out = PTR(uint64_t, out_);
    const uint64_t *msg = PTR(const uint64_t, msg_), *own = PTR(const uint64_t, own_);
    const uint64_t *other = PTR(const uint64_t, other_);
    const int64_t *d = PTR(const int64_t, d_);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t t = 0; t < n_out; t++) {
        uint64_t *o = out + 2 * t * n;
        const uint64_t *x = other + 2 * t * n, *y = own + 2 * t * n;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t b = (t * n + i) * size + (Py_ssize_t)((uint64_t)d[i] & (uint64_t)(size - 1));
            o[i] = msg[2 * b] ^ x[i] ^ y[i];
            o[n + i] = msg[2 * b + 1] ^ x[n + i] ^ y[n + i];
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* out = [out +] x1 * (y1 + y2) + x2 * y1 + sign1 * R1 + sign2 * R2 (mod 2^128): a party's
 * term of a replicated-sharing product with its masks (as aes_add_random; empty keys skip
 * R1 / R2) in one pass. */
PyObject *rss_product_random128(PyObject *self, PyObject *args) {
    unsigned long long out_, x1_, x2_, y1_, y2_, start1, start2; Py_ssize_t n, len1, len2; int acc, sign1, sign2;
    const char *key1, *key2;
    if (!PyArg_ParseTuple(args, "KiKKKKny#Kiy#Ki", &out_, &acc, &x1_, &x2_, &y1_, &y2_, &n, &key1, &len1, &start1,
                          &sign1, &key2, &len2, &start2, &sign2)) return NULL;
    if ((len1 != 0 && len1 != 16) || (len2 != 0 && len2 != 16) || (sign1 != 1 && sign1 != -1) ||
        (sign2 != 1 && sign2 != -1) || n < 0) {
        PyErr_SetString(PyExc_ValueError, "rss_product_random128: bad arguments");
        return NULL;
    }
    if ((len1 || len2) && !aes_supported()) {
        PyErr_SetString(PyExc_RuntimeError, "AES-NI is not available on this CPU");
        return NULL;
    }
    uint64_t *out = PTR(uint64_t, out_);
    const uint64_t *x1 = PTR(const uint64_t, x1_), *x2 = PTR(const uint64_t, x2_);
    const uint64_t *y1 = PTR(const uint64_t, y1_), *y2 = PTR(const uint64_t, y2_);
    aes_key k1, k2;
    if (len1) aes_expand((const unsigned char *)key1, &k1);
    if (len2) aes_expand((const unsigned char *)key2, &k2);
    Py_BEGIN_ALLOW_THREADS
    uint64_t r_lo[AES_PIECE], r_hi[AES_PIECE], s_lo[AES_PIECE], s_hi[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += AES_PIECE) {
        Py_ssize_t c = piece_length(n, i0);
        if (len1) keystream_piece(&k1, start1, n, i0, c, r_lo, r_hi);
        if (len2) keystream_piece(&k2, start2, n, i0, c, s_lo, s_hi);
        for (Py_ssize_t e = 0; e < c; e++) {
            Py_ssize_t i = i0 + e;
            u128 a = ld(x1, n, i), b = ld(y1, n, i);
            u128 v = a * (b + ld(y2, n, i)) + ld(x2, n, i) * b;
            if (acc) v += ld(out, n, i);
            if (len1) {
                u128 r = ((u128)r_hi[e] << 64) | r_lo[e];
                v += sign1 > 0 ? r : -r;
            }
            if (len2) {
                u128 r = ((u128)s_hi[e] << 64) | s_lo[e];
                v += sign2 > 0 ? r : -r;
            }
            st(out, n, i, v);
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* One level of a prefix-OR (boolean.prefix_or) on n words: this party's term of a | b with
 * b = a >> s (arithmetic shift of each component), a1 & (b1 ^ b2) ^ a2 & b1 ^ a1 ^ b1, XORed
 * with R1 ^ R2 (keystream words of key1 at start1, key2 at start2: the zero-sharing). With
 * ones, a_k is first replaced by a_k ^ (a_k >> 63) (boolean.ones_complement_abs). */
PyObject *por_terms(PyObject *self, PyObject *args) {
    unsigned long long z_, a1_, a2_, start1, start2; Py_ssize_t n, len1, len2; int s, ones;
    const char *key1, *key2;
    if (!PyArg_ParseTuple(args, "KKKniiy#Ky#K", &z_, &a1_, &a2_, &n, &s, &ones, &key1, &len1, &start1, &key2, &len2,
                          &start2)) return NULL;
    AES_CHECK(len1)
    if (len2 != 16 || s < 1 || s > 63 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "por_terms: bad arguments");
        return NULL;
    }
    uint64_t *z = PTR(uint64_t, z_);
    const int64_t *a1 = PTR(const int64_t, a1_), *a2 = PTR(const int64_t, a2_);
    aes_key k1, k2;
    aes_expand((const unsigned char *)key1, &k1);
    aes_expand((const unsigned char *)key2, &k2);
    Py_BEGIN_ALLOW_THREADS
    uint64_t r1[AES_PIECE], r2[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += AES_PIECE) {
        Py_ssize_t c = piece_length(n, i0);
        keystream_piece(&k1, start1, n, i0, c, r1, NULL);
        keystream_piece(&k2, start2, n, i0, c, r2, NULL);
        for (Py_ssize_t e = 0; e < c; e++) {
            int64_t x1 = a1[i0 + e], x2 = a2[i0 + e];
            if (ones) {
                x1 ^= x1 >> 63;
                x2 ^= x2 >> 63;
            }
            uint64_t u1 = (uint64_t)x1, u2 = (uint64_t)x2;
            uint64_t b1 = (uint64_t)(x1 >> s), b2 = (uint64_t)(x2 >> s);
            z[i0 + e] = (u1 & (b1 ^ b2)) ^ (u2 & b1) ^ u1 ^ b1 ^ r1[e] ^ r2[e];
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Party 0's half of a truncated product (rounds.Mul): v = x1 * (y1 + y2) + x2 * y1 + R1 + R2
 * (its term and masks), mask = R3, message = (v >>> d) - mask; R_k ring128 keystream tensors
 * of key_k at word start_k. One pass; v is not kept. */
PyObject *rss_product_trunc128(PyObject *self, PyObject *args) {
    unsigned long long msg_, mask_, x1_, x2_, y1_, y2_, s1, s2, s3; Py_ssize_t n, l1, l2, l3; int d;
    const char *k1_, *k2_, *k3_;
    if (!PyArg_ParseTuple(args, "KKKKKKniy#Ky#Ky#K", &msg_, &mask_, &x1_, &x2_, &y1_, &y2_, &n, &d, &k1_, &l1, &s1,
                          &k2_, &l2, &s2, &k3_, &l3, &s3)) return NULL;
    AES_CHECK(l1)
    if (l2 != 16 || l3 != 16 || d < 0 || d > 127 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "rss_product_trunc128: bad arguments");
        return NULL;
    }
    uint64_t *msg = PTR(uint64_t, msg_), *mask = PTR(uint64_t, mask_);
    const uint64_t *x1 = PTR(const uint64_t, x1_), *x2 = PTR(const uint64_t, x2_);
    const uint64_t *y1 = PTR(const uint64_t, y1_), *y2 = PTR(const uint64_t, y2_);
    aes_key k1, k2, k3;
    aes_expand((const unsigned char *)k1_, &k1);
    aes_expand((const unsigned char *)k2_, &k2);
    aes_expand((const unsigned char *)k3_, &k3);
    Py_BEGIN_ALLOW_THREADS
    uint64_t a_lo[AES_PIECE], a_hi[AES_PIECE], b_lo[AES_PIECE], b_hi[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += AES_PIECE) {
        Py_ssize_t c = piece_length(n, i0);
        keystream_piece(&k1, s1, n, i0, c, a_lo, a_hi);
        keystream_piece(&k2, s2, n, i0, c, b_lo, b_hi);
        keystream_piece(&k3, s3, n, i0, c, mask + i0, mask + n + i0);  /* the mask straight into its tensor */
        for (Py_ssize_t e = 0; e < c; e++) {
            Py_ssize_t i = i0 + e;
            u128 a = ld(x1, n, i), b = ld(y1, n, i);
            u128 v = a * (b + ld(y2, n, i)) + ld(x2, n, i) * b;
            v += (((u128)a_hi[e] << 64) | a_lo[e]) + (((u128)b_hi[e] << 64) | b_lo[e]);
            st(msg, n, i, (v >> d) - ld(mask, n, i));
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* out = -((-(a + b)) >>> d) mod 2^128: parties 1 and 2 finishing a truncated product. */
PyObject *add_truncate_negated128(PyObject *self, PyObject *args) {
    unsigned long long out_, a_, b_; Py_ssize_t n; int d;
    if (!PyArg_ParseTuple(args, "KKKni", &out_, &a_, &b_, &n, &d)) return NULL;
    if (d < 0 || d > 127) {
        PyErr_SetString(PyExc_ValueError, "add_truncate_negated128: bad shift");
        return NULL;
    }
    uint64_t *out = PTR(uint64_t, out_);
    const uint64_t *a = PTR(const uint64_t, a_), *b = PTR(const uint64_t, b_);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, -((-(ld(a, n, i) + ld(b, n, i))) >> d));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* out = XOR of the positions of the set bits of v, v = w ^ (w >> 1) (arithmetic shift) with
 * leading, else v = w: normalise._onehot_position (XOR-linear, so it runs per share). Bit k
 * of the position XOR is the parity of the set bits whose position has bit k set. */
MULTIVERSION
static void xor_positions_loop(uint64_t *out, const int64_t *w, Py_ssize_t n, int leading) {
    static const uint64_t m[6] = {0xAAAAAAAAAAAAAAAAULL, 0xCCCCCCCCCCCCCCCCULL, 0xF0F0F0F0F0F0F0F0ULL,
                                  0xFF00FF00FF00FF00ULL, 0xFFFF0000FFFF0000ULL, 0xFFFFFFFF00000000ULL};
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t v = (uint64_t)(leading ? (w[i] ^ (w[i] >> 1)) : w[i]), r = 0;
        for (int k = 0; k < 6; k++) r |= (uint64_t)(__builtin_popcountll(v & m[k]) & 1) << k;
        out[i] = r;
    }
}

PyObject *xor_positions(PyObject *self, PyObject *args) {
    unsigned long long out_, w_; Py_ssize_t n; int leading;
    if (!PyArg_ParseTuple(args, "KKni", &out_, &w_, &n, &leading)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    xor_positions_loop(PTR(uint64_t, out_), PTR(const int64_t, w_), n, leading);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* z = x1 & (y1 ^ y2) ^ x2 & y1 ^ R1 ^ R2 on n words: a party's masked term of a boolean AND
 * (rounds.And), R from key1's stream at word start1 and key2's at start2. */
PyObject *and_terms(PyObject *self, PyObject *args) {
    unsigned long long z_, x1_, x2_, y1_, y2_, start1, start2; Py_ssize_t n, len1, len2;
    const char *key1, *key2;
    if (!PyArg_ParseTuple(args, "KKKKKny#Ky#K", &z_, &x1_, &x2_, &y1_, &y2_, &n, &key1, &len1, &start1, &key2, &len2,
                          &start2)) return NULL;
    AES_CHECK(len1)
    if (len2 != 16 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "and_terms: bad arguments");
        return NULL;
    }
    uint64_t *z = PTR(uint64_t, z_);
    const uint64_t *x1 = PTR(const uint64_t, x1_), *x2 = PTR(const uint64_t, x2_);
    const uint64_t *y1 = PTR(const uint64_t, y1_), *y2 = PTR(const uint64_t, y2_);
    aes_key k1, k2;
    aes_expand((const unsigned char *)key1, &k1);
    aes_expand((const unsigned char *)key2, &k2);
    Py_BEGIN_ALLOW_THREADS
    uint64_t r1[AES_PIECE], r2[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += AES_PIECE) {
        Py_ssize_t c = piece_length(n, i0);
        keystream_piece(&k1, start1, n, i0, c, r1, NULL);
        keystream_piece(&k2, start2, n, i0, c, r2, NULL);
        for (Py_ssize_t e = 0; e < c; e++) {
            Py_ssize_t i = i0 + e;
            z[i] = (x1[i] & (y1[i] ^ y2[i])) ^ (x2[i] & y1[i]) ^ r1[e] ^ r2[e];
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}
