/* Elementwise Z_2^64 / Z_2^128 kernels, exact small-inner-dimension matmuls, and the limb
 * conversions of the float64-BLAS matmul, over torch int64 lane buffers.
 *
 * Why C: Z_2^128 products need 64x64->128 multiplies, which torch lacks; emulating them
 * with 32-bit halves costs ~25 tensor passes. Here one pass with unsigned __int128 does it.
 * Likewise a fused kernel makes one pass where torch makes several, each allocating its
 * result (on this class of machine an int64 pass over 1e6 elements costs ~1 ms in place and
 * several ms when it has to allocate). smpc/ring.py keeps a pure-torch path with identical
 * results for when this module is not built; the tests compare the two.
 *
 * Layout: a contiguous ring128 tensor of n elements is n low words followed by n high words;
 * a ring64 tensor is n words. Arguments are raw addresses (from tensor.data_ptr()) and
 * element counts; ring.py checks shapes, dtypes and contiguity before calling. The GIL is
 * released around every loop so the parties' threads run in parallel.
 */
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

#define ARGS3 unsigned long long out_, a_, b_; Py_ssize_t n; \
    if (!PyArg_ParseTuple(args, "KKKn", &out_, &a_, &b_, &n)) return NULL; \
    uint64_t *out = PTR(uint64_t, out_); const uint64_t *a = PTR(const uint64_t, a_), *b = PTR(const uint64_t, b_);

/* ----- elementwise Z_2^128 ------------------------------------------------------------ */

static PyObject *add128(PyObject *self, PyObject *args) {
    ARGS3
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, ld(a, n, i) + ld(b, n, i));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *sub128(PyObject *self, PyObject *args) {
    ARGS3
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, ld(a, n, i) - ld(b, n, i));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *mul128(PyObject *self, PyObject *args) {
    ARGS3
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, ld(a, n, i) * ld(b, n, i));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *neg128(PyObject *self, PyObject *args) {
    unsigned long long out_, a_; Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "KKn", &out_, &a_, &n)) return NULL;
    uint64_t *out = PTR(uint64_t, out_); const uint64_t *a = PTR(const uint64_t, a_);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, -ld(a, n, i));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* z = x1 * (y1 + y2) + x2 * y1: a party's term of the replicated-sharing product. */
static PyObject *rss_product128(PyObject *self, PyObject *args) {
    unsigned long long out_, x1_, x2_, y1_, y2_; Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "KKKKKn", &out_, &x1_, &x2_, &y1_, &y2_, &n)) return NULL;
    uint64_t *out = PTR(uint64_t, out_);
    const uint64_t *x1 = PTR(const uint64_t, x1_), *x2 = PTR(const uint64_t, x2_);
    const uint64_t *y1 = PTR(const uint64_t, y1_), *y2 = PTR(const uint64_t, y2_);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        u128 a = ld(x1, n, i), b = ld(y1, n, i);
        st(out, n, i, a * (b + ld(y2, n, i)) + ld(x2, n, i) * b);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Shifts by 0 <= d < 128. kind: 0 left, 1 logical right, 2 arithmetic right,
 * 3 negated logical right of the negation, -((-a) >>> d), the second half of a truncation. */
static PyObject *shift128(PyObject *self, PyObject *args) {
    unsigned long long out_, a_; Py_ssize_t n; int d, kind;
    if (!PyArg_ParseTuple(args, "KKnii", &out_, &a_, &n, &d, &kind)) return NULL;
    uint64_t *out = PTR(uint64_t, out_); const uint64_t *a = PTR(const uint64_t, a_);
    if (d < 0 || d > 127 || kind < 0 || kind > 3) {
        PyErr_SetString(PyExc_ValueError, "shift128: bad shift");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    switch (kind) {  /* the switch outside the loop lets each loop be a tight one */
    case 0: for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, ld(a, n, i) << d); break;
    case 1: for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, ld(a, n, i) >> d); break;
    case 2: for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, (u128)((s128)ld(a, n, i) >> d)); break;
    default: for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, -((-ld(a, n, i)) >> d)); break;
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* The sum of all n elements mod 2^128, returned as (low, high) unsigned words. */
static PyObject *sum128(PyObject *self, PyObject *args) {
    unsigned long long a_; Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "Kn", &a_, &n)) return NULL;
    const uint64_t *a = PTR(const uint64_t, a_);
    u128 acc = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) acc += ld(a, n, i);
    Py_END_ALLOW_THREADS
    return Py_BuildValue("(KK)", (unsigned long long)(uint64_t)acc, (unsigned long long)(uint64_t)(acc >> 64));
}

/* ----- elementwise Z_2^64 ------------------------------------------------------------- */

static PyObject *rss_product64(PyObject *self, PyObject *args) {
    unsigned long long out_, x1_, x2_, y1_, y2_; Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "KKKKKn", &out_, &x1_, &x2_, &y1_, &y2_, &n)) return NULL;
    uint64_t *out = PTR(uint64_t, out_);
    const uint64_t *x1 = PTR(const uint64_t, x1_), *x2 = PTR(const uint64_t, x2_);
    const uint64_t *y1 = PTR(const uint64_t, y1_), *y2 = PTR(const uint64_t, y2_);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) out[i] = x1[i] * (y1[i] + y2[i]) + x2[i] * y1[i];
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* kind: 1 logical right, 3 -((-a) >>> d); 0 <= d < 64. */
static PyObject *shift64(PyObject *self, PyObject *args) {
    unsigned long long out_, a_; Py_ssize_t n; int d, kind;
    if (!PyArg_ParseTuple(args, "KKnii", &out_, &a_, &n, &d, &kind)) return NULL;
    uint64_t *out = PTR(uint64_t, out_); const uint64_t *a = PTR(const uint64_t, a_);
    if (d < 0 || d > 63 || (kind != 1 && kind != 3)) {
        PyErr_SetString(PyExc_ValueError, "shift64: bad shift");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (kind == 1)
        for (Py_ssize_t i = 0; i < n; i++) out[i] = a[i] >> d;
    else
        for (Py_ssize_t i = 0; i < n; i++) out[i] = -((-a[i]) >> d);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ----- adding a keystream chunk into a ring tensor ---------------------------------------
 * A ring tensor drawn from a PRG takes its words in stream order: for ring128 the n low
 * words, then the n high words. add_stream(z, n, lanes, r, start, count, sign) adds
 * (sign = +1) or subtracts (-1) stream words start .. start+count-1 (given in r) into z at
 * their positions. A low word carries (borrows) into the high word of its element; as
 * addition mod 2^64 commutes, the high lane may receive its own words earlier or later
 * and the sum is the same as adding the whole drawn tensor at once. */
static PyObject *add_stream(PyObject *self, PyObject *args) {
    unsigned long long z_, r_; Py_ssize_t n, start, count; int lanes, sign;
    if (!PyArg_ParseTuple(args, "KniKnni", &z_, &n, &lanes, &r_, &start, &count, &sign)) return NULL;
    uint64_t *z = PTR(uint64_t, z_); const uint64_t *r = PTR(const uint64_t, r_);
    if ((lanes != 1 && lanes != 2) || (sign != 1 && sign != -1) || start < 0 || count < 0 ||
        start + count > lanes * n) {
        PyErr_SetString(PyExc_ValueError, "add_stream: bad arguments");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (lanes == 1 || start >= n) {  /* single lane, or only high words: plain adds */
        uint64_t *dst = z + start;
        if (sign > 0) for (Py_ssize_t i = 0; i < count; i++) dst[i] += r[i];
        else for (Py_ssize_t i = 0; i < count; i++) dst[i] -= r[i];
    } else {
        Py_ssize_t low = start + count <= n ? count : n - start;
        uint64_t *lo = z + start, *hi = z + n + start;
        if (sign > 0) {
            for (Py_ssize_t i = 0; i < low; i++) {
                uint64_t v = lo[i] + r[i];
                hi[i] += v < r[i];
                lo[i] = v;
            }
        } else {
            for (Py_ssize_t i = 0; i < low; i++) {
                uint64_t v = lo[i];
                hi[i] -= v < r[i];
                lo[i] = v - r[i];
            }
        }
        uint64_t *dst = z + n;  /* the rest of the chunk (if any) starts at high word 0 */
        const uint64_t *rest = r + low;
        if (sign > 0) for (Py_ssize_t i = 0; i < count - low; i++) dst[i] += rest[i];
        else for (Py_ssize_t i = 0; i < count - low; i++) dst[i] -= rest[i];
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ----- exact matmul for a small inner dimension ------------------------------------------
 * out (n x m) = a (n x k) @ b (k x m) mod 2^64 or 2^128, row-major contiguous lanes. One
 * multiply-add per term, no limbs: for k up to a few dozen this beats the float64-BLAS limb
 * decomposition, whose cost there is the limb conversions of the n x m output, not flops. */
MULTIVERSION
static void matmul64_loop(uint64_t *out, const uint64_t *a, const uint64_t *b, Py_ssize_t n, Py_ssize_t k,
                          Py_ssize_t m) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t *o = out + i * m;
        const uint64_t *ai = a + i * k;
        memset(o, 0, (size_t)m * sizeof(uint64_t));
        for (Py_ssize_t p = 0; p < k; p++) {
            uint64_t v = ai[p];
            const uint64_t *bp = b + p * m;
            for (Py_ssize_t j = 0; j < m; j++) o[j] += v * bp[j];
        }
    }
}

static PyObject *matmul64(PyObject *self, PyObject *args) {
    unsigned long long out_, a_, b_; Py_ssize_t n, k, m;
    if (!PyArg_ParseTuple(args, "KKKnnn", &out_, &a_, &b_, &n, &k, &m)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    matmul64_loop(PTR(uint64_t, out_), PTR(const uint64_t, a_), PTR(const uint64_t, b_), n, k, m);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *matmul128(PyObject *self, PyObject *args) {
    unsigned long long out_, a_, b_; Py_ssize_t n, k, m;
    if (!PyArg_ParseTuple(args, "KKKnnn", &out_, &a_, &b_, &n, &k, &m)) return NULL;
    uint64_t *out = PTR(uint64_t, out_);
    const uint64_t *a = PTR(const uint64_t, a_), *b = PTR(const uint64_t, b_);
    Py_ssize_t na = n * k, nb = k * m, no = n * m;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        for (Py_ssize_t j0 = 0; j0 < m; j0 += 32) {  /* a block of the output row in registers/L1 */
            Py_ssize_t jn = m - j0 < 32 ? m - j0 : 32;
            u128 acc[32] = {0};
            for (Py_ssize_t p = 0; p < k; p++) {
                u128 v = ld(a, na, i * k + p);
                Py_ssize_t base = p * m + j0;
                for (Py_ssize_t j = 0; j < jn; j++) acc[j] += v * ld(b, nb, base + j);
            }
            for (Py_ssize_t j = 0; j < jn; j++) st(out, no, i * m + j0 + j, acc[j]);
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ----- limbs for the float64-BLAS matmul -------------------------------------------------
 * to_limbs writes L-bit signed limbs of each element: v = sum_i alpha_i 2^(L i) mod 2^bits,
 * alpha_i in [-2^(L-1), 2^(L-1)) (the top limb has bits - L (count-1) bits), as float64
 * planes out[i * n + e]. Balanced limbs come from one addition: w = v + H with
 * H = sum_i 2^(w_i - 1) 2^(L i), then alpha_i = ((w >> L i) & (2^w_i - 1)) - 2^(w_i - 1).
 * Signed limbs are one bit shorter than unsigned ones for the same exactness bound, which
 * saves a limb (and a third of the BLAS calls) at inner dimensions such as 1000. */
static PyObject *to_limbs(PyObject *self, PyObject *args) {
    unsigned long long out_, a_; Py_ssize_t n; int lanes, L, count;
    if (!PyArg_ParseTuple(args, "KKniii", &out_, &a_, &n, &lanes, &L, &count)) return NULL;
    double *out = PTR(double, out_); const uint64_t *a = PTR(const uint64_t, a_);
    int bits = 64 * lanes;
    if ((lanes != 1 && lanes != 2) || L < 1 || L > 52 || count < 1 || L * (count - 1) >= bits ||
        L * count < bits) {
        PyErr_SetString(PyExc_ValueError, "to_limbs: bad limb layout");
        return NULL;
    }
    u128 offset = 0;
    int width[8];
    if (count > 8) {
        PyErr_SetString(PyExc_ValueError, "to_limbs: at most 8 limbs");
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        width[i] = i < count - 1 ? L : bits - L * (count - 1);
        offset += (u128)1 << (L * i + width[i] - 1);
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t e = 0; e < n; e++) {
        u128 w = (lanes == 2 ? ld(a, n, e) : (u128)a[e]) + offset;
        for (int i = 0; i < count; i++) {
            int64_t u = (int64_t)((uint64_t)(w >> (L * i)) & ((UINT64_C(1) << width[i]) - 1));
            out[(Py_ssize_t)i * n + e] = (double)(u - (INT64_C(1) << (width[i] - 1)));
        }
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* z += round(p) * 2^shift mod 2^bits for float64 p holding exact integers, |p| < 2^63. */
static PyObject *add_limb_product(PyObject *self, PyObject *args) {
    unsigned long long z_, p_; Py_ssize_t n; int lanes, shift;
    if (!PyArg_ParseTuple(args, "KKnii", &z_, &p_, &n, &lanes, &shift)) return NULL;
    uint64_t *z = PTR(uint64_t, z_); const double *p = PTR(const double, p_);
    if ((lanes != 1 && lanes != 2) || shift < 0 || shift >= 64 * lanes) {
        PyErr_SetString(PyExc_ValueError, "add_limb_product: bad arguments");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    if (lanes == 1) {
        for (Py_ssize_t e = 0; e < n; e++) z[e] += (uint64_t)(int64_t)p[e] << shift;
    } else {
        for (Py_ssize_t e = 0; e < n; e++) st(z, n, e, ld(z, n, e) + ((u128)(s128)(int64_t)p[e] << shift));
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ----- the carry tree of boolean.msb (natural bit order) ---------------------------------
 * One level works on w-bit fields (h = w/2; mlo has the low h bits of every field set):
 * x = [p_hi | p_hi] and y = [p_lo | g_lo] per field, so one AND yields p_hi & g_lo (low
 * half) and p_hi & p_lo (high half). carry_terms writes this party's 3-out-of-3 term of
 * x & y, x1 & (y1 ^ y2) ^ x2 & y1 (the caller XORs the zero-sharing in); carry_update forms
 * g' = g_hi ^ (p_hi & g_lo) and p' = p_hi & p_lo in the low halves and, with compact,
 * interleaves words 2j and 2j+1 into word j (the odd one shifted up by h). */

static PyObject *carry_terms(PyObject *self, PyObject *args) {
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

static PyObject *carry_update(PyObject *self, PyObject *args) {
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
static PyObject *fold_terms(PyObject *self, PyObject *args) {
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
static PyObject *msb_prepare(PyObject *self, PyObject *args) {
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

static PyObject *sklansky_terms(PyObject *self, PyObject *args) {
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

static PyObject *sklansky_update(PyObject *self, PyObject *args) {
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

/* ----- AES-128-CTR keystreams (AES-NI) ------------------------------------------------------
 * The stream of smpc.prg.PRG: AES-128 in counter mode, the counter a 128-bit big-endian
 * block number starting at 0, the keystream read as little-endian int64 words (word w is
 * half w & 1 of block w >> 1). Computing it here, where it is consumed, saves the pass that
 * writes it to memory and the pass that reads it back (a 1e5-element ring128 tensor is
 * larger than L2), and lets a receiver of a table compute only the blocks it needs. Only
 * used where the CPU has AES-NI (aes_available) and ring.aes_kernels() found the known
 * answer of `cryptography`'s stream at first use. */
#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#include <immintrin.h>
#define AES_TARGET __attribute__((target("aes,sse4.1")))
#define HAVE_AESNI 1
#else
#define HAVE_AESNI 0
#endif

#if HAVE_AESNI
typedef struct { __m128i k[11]; } aes_key;

AES_TARGET static inline __m128i aes_expand_step(__m128i key, __m128i assist) {
    assist = _mm_shuffle_epi32(assist, 0xff);
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    return _mm_xor_si128(key, assist);
}

AES_TARGET static void aes_expand(const unsigned char *key, aes_key *out) {
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

/* Keystream words start .. start + count - 1 into out. */
AES_TARGET static void aes_words(const aes_key *key, uint64_t start, Py_ssize_t count, uint64_t *out) {
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
#endif

static int aes_supported(void) {
#if HAVE_AESNI
    __builtin_cpu_init();
    if (aes_wide < 0) aes_wide = __builtin_cpu_supports("vaes") && __builtin_cpu_supports("avx2");
    return __builtin_cpu_supports("aes") && __builtin_cpu_supports("sse4.1");
#else
    return 0;
#endif
}

static PyObject *aes_available(PyObject *self, PyObject *args) { return PyBool_FromLong(aes_supported()); }

/* Tests: aes_use_wide(0) forces the 128-bit AES-NI path on a VAES machine (so both paths are
 * checked where the tests run), aes_use_wide(1) restores the CPU's choice; returns whether
 * the wide path was on before. */
static PyObject *aes_use_wide(PyObject *self, PyObject *args) {
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

#define AES_CHECK(key_len)                                                                    \
    if (!aes_supported()) {                                                                   \
        PyErr_SetString(PyExc_RuntimeError, "AES-NI is not available on this CPU");           \
        return NULL;                                                                          \
    }                                                                                         \
    if ((key_len) != 16) {                                                                    \
        PyErr_SetString(PyExc_ValueError, "AES-128 keys are 16 bytes");                       \
        return NULL;                                                                          \
    }

/* out[0 .. count) = keystream words start .. start + count - 1 of the key's stream. */
static PyObject *aes_fill(PyObject *self, PyObject *args) {
    unsigned long long out_, start; const char *key; Py_ssize_t key_len, count;
    if (!PyArg_ParseTuple(args, "Ky#Kn", &out_, &key, &key_len, &start, &count)) return NULL;
    AES_CHECK(key_len)
#if HAVE_AESNI
    aes_key k;
    aes_expand((const unsigned char *)key, &k);
    Py_BEGIN_ALLOW_THREADS
    aes_words(&k, start, count, PTR(uint64_t, out_));
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

#define AES_PIECE 256  /* words per keystream piece: several pieces stay in L1 */

/* z += sign1 * R1 + sign2 * R2 for ring tensors R drawn (as ring.random draws them: the n
 * low words, then the n high words) from key1's stream at word start1 and key2's at start2;
 * an empty key2 skips the second. lanes 1: Z_2^64, 2: Z_2^128. One pass over z. */
static PyObject *aes_add_random(PyObject *self, PyObject *args) {
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
#if HAVE_AESNI
    uint64_t *z = PTR(uint64_t, z_);
    aes_key k1, k2;
    int two = len2 == 16;
    aes_expand((const unsigned char *)key1, &k1);
    if (two) aes_expand((const unsigned char *)key2, &k2);
    Py_BEGIN_ALLOW_THREADS
    uint64_t a_lo[AES_PIECE], a_hi[AES_PIECE], b_lo[AES_PIECE], b_hi[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += AES_PIECE) {
        Py_ssize_t c = n - i0 < AES_PIECE ? n - i0 : AES_PIECE;
        aes_words(&k1, start1 + i0, c, a_lo);
        if (lanes == 2) aes_words(&k1, start1 + n + i0, c, a_hi);
        if (two) {
            aes_words(&k2, start2 + i0, c, b_lo);
            if (lanes == 2) aes_words(&k2, start2 + n + i0, c, b_hi);
        }
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
#endif
    Py_RETURN_NONE;
}

/* z ^= R1 ^ R2 (count int64 words; R from key1's stream at word start1, key2's at start2). */
static PyObject *aes_xor_random(PyObject *self, PyObject *args) {
    unsigned long long z_, start1, start2; Py_ssize_t count, len1, len2; const char *key1, *key2;
    if (!PyArg_ParseTuple(args, "Kny#Ky#K", &z_, &count, &key1, &len1, &start1, &key2, &len2, &start2))
        return NULL;
    AES_CHECK(len1)
    if (len2 != 16) {
        PyErr_SetString(PyExc_ValueError, "AES-128 keys are 16 bytes");
        return NULL;
    }
#if HAVE_AESNI
    uint64_t *z = PTR(uint64_t, z_);
    aes_key k1, k2;
    aes_expand((const unsigned char *)key1, &k1);
    aes_expand((const unsigned char *)key2, &k2);
    Py_BEGIN_ALLOW_THREADS
    uint64_t a[AES_PIECE], b[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < count; i0 += AES_PIECE) {
        Py_ssize_t c = count - i0 < AES_PIECE ? count - i0 : AES_PIECE;
        aes_words(&k1, start1 + i0, c, a);
        aes_words(&k2, start2 + i0, c, b);
        for (Py_ssize_t i = 0; i < c; i++) z[i0 + i] ^= a[i] ^ b[i];
    }
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

/* ----- table B2A (division.Table) over AES-CTR ------------------------------------------------
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
static PyObject *table_send128(PyObject *self, PyObject *args) {
    unsigned long long m_, c_, values_, r0_, r1_; Py_ssize_t n_out, n, size, la, lb;
    const char *ka, *kb;
    if (!PyArg_ParseTuple(args, "KKKKKnnny#y#", &m_, &c_, &values_, &r0_, &r1_, &n_out, &n, &size, &ka, &la, &kb,
                          &lb)) return NULL;
    AES_CHECK(la)
    if (lb != 16 || size < 1 || size > 256 || (size & (size - 1)) || n_out < 1 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "table_send128: bad arguments");
        return NULL;
    }
#if HAVE_AESNI
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
#endif
    Py_RETURN_NONE;
}

/* A receiver's message to the other receiver: block (t n + i) size + d_i of key's stream,
 * as ring128 tensors (n_out, 2, n). */
static PyObject *table_keys128(PyObject *self, PyObject *args) {
    unsigned long long out_, d_; Py_ssize_t n_out, n, size, len;
    const char *key;
    if (!PyArg_ParseTuple(args, "KKnnny#", &out_, &d_, &n_out, &n, &size, &key, &len)) return NULL;
    AES_CHECK(len)
    if (size < 1 || size > 256 || (size & (size - 1)) || n_out < 1 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "table_keys128: bad arguments");
        return NULL;
    }
#if HAVE_AESNI
    uint64_t *out = PTR(uint64_t, out_);
    const int64_t *d = PTR(const int64_t, d_);
    aes_key k;
    aes_expand((const unsigned char *)key, &k);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t t = 0; t < n_out; t++) {
        uint64_t *o = out + 2 * t * n;
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16) {
            uint64_t ctr[16], w[32];
            for (int j = 0; j < 16; j++)
                ctr[j] = (uint64_t)(t * n + i + j) * size + ((uint64_t)d[i + j] & (uint64_t)(size - 1));
            aes_enc16(&k, ctr, (__m128i *)w);
            for (int j = 0; j < 16; j++) {
                o[i + j] = w[2 * j];
                o[n + i + j] = w[2 * j + 1];
            }
        }
        for (; i < n; i++) {
            uint64_t w[2];
            _mm_storeu_si128((__m128i *)w,
                             aes_enc1(&k, (uint64_t)(t * n + i) * size + ((uint64_t)d[i] & (uint64_t)(size - 1))));
            o[i] = w[0];
            o[n + i] = w[1];
        }
    }
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

/* A receiver's share: out(t, i) = msg block (t n + i) size + d_i XOR own(t, i) XOR other(t, i)
 * (own, other, out: ring128 tensors (n_out, 2, n)). No AES: available everywhere. */
static PyObject *table_pick128(PyObject *self, PyObject *args) {
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
static PyObject *rss_product_random128(PyObject *self, PyObject *args) {
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
#if HAVE_AESNI
    aes_key k1, k2;
    if (len1) aes_expand((const unsigned char *)key1, &k1);
    if (len2) aes_expand((const unsigned char *)key2, &k2);
#endif
    Py_BEGIN_ALLOW_THREADS
    uint64_t r_lo[AES_PIECE], r_hi[AES_PIECE], s_lo[AES_PIECE], s_hi[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += AES_PIECE) {
        Py_ssize_t c = n - i0 < AES_PIECE ? n - i0 : AES_PIECE;
#if HAVE_AESNI
        if (len1) {
            aes_words(&k1, start1 + i0, c, r_lo);
            aes_words(&k1, start1 + n + i0, c, r_hi);
        }
        if (len2) {
            aes_words(&k2, start2 + i0, c, s_lo);
            aes_words(&k2, start2 + n + i0, c, s_hi);
        }
#endif
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
static PyObject *por_terms(PyObject *self, PyObject *args) {
    unsigned long long z_, a1_, a2_, start1, start2; Py_ssize_t n, len1, len2; int s, ones;
    const char *key1, *key2;
    if (!PyArg_ParseTuple(args, "KKKniiy#Ky#K", &z_, &a1_, &a2_, &n, &s, &ones, &key1, &len1, &start1, &key2, &len2,
                          &start2)) return NULL;
    AES_CHECK(len1)
    if (len2 != 16 || s < 1 || s > 63 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "por_terms: bad arguments");
        return NULL;
    }
#if HAVE_AESNI
    uint64_t *z = PTR(uint64_t, z_);
    const int64_t *a1 = PTR(const int64_t, a1_), *a2 = PTR(const int64_t, a2_);
    aes_key k1, k2;
    aes_expand((const unsigned char *)key1, &k1);
    aes_expand((const unsigned char *)key2, &k2);
    Py_BEGIN_ALLOW_THREADS
    uint64_t r1[AES_PIECE], r2[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += AES_PIECE) {
        Py_ssize_t c = n - i0 < AES_PIECE ? n - i0 : AES_PIECE;
        aes_words(&k1, start1 + i0, c, r1);
        aes_words(&k2, start2 + i0, c, r2);
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
#endif
    Py_RETURN_NONE;
}

/* Party 0's half of a truncated product (division.Mul): v = x1 * (y1 + y2) + x2 * y1 + R1 + R2
 * (its term and masks), mask = R3, message = (v >>> d) - mask; R_k ring128 keystream tensors
 * of key_k at word start_k. One pass; v is not kept. */
static PyObject *rss_product_trunc128(PyObject *self, PyObject *args) {
    unsigned long long msg_, mask_, x1_, x2_, y1_, y2_, s1, s2, s3; Py_ssize_t n, l1, l2, l3; int d;
    const char *k1_, *k2_, *k3_;
    if (!PyArg_ParseTuple(args, "KKKKKKniy#Ky#Ky#K", &msg_, &mask_, &x1_, &x2_, &y1_, &y2_, &n, &d, &k1_, &l1, &s1,
                          &k2_, &l2, &s2, &k3_, &l3, &s3)) return NULL;
    AES_CHECK(l1)
    if (l2 != 16 || l3 != 16 || d < 0 || d > 127 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "rss_product_trunc128: bad arguments");
        return NULL;
    }
#if HAVE_AESNI
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
        Py_ssize_t c = n - i0 < AES_PIECE ? n - i0 : AES_PIECE;
        aes_words(&k1, s1 + i0, c, a_lo);
        aes_words(&k1, s1 + n + i0, c, a_hi);
        aes_words(&k2, s2 + i0, c, b_lo);
        aes_words(&k2, s2 + n + i0, c, b_hi);
        aes_words(&k3, s3 + i0, c, mask + i0);  /* the mask straight into its tensor */
        aes_words(&k3, s3 + n + i0, c, mask + n + i0);
        for (Py_ssize_t e = 0; e < c; e++) {
            Py_ssize_t i = i0 + e;
            u128 a = ld(x1, n, i), b = ld(y1, n, i);
            u128 v = a * (b + ld(y2, n, i)) + ld(x2, n, i) * b;
            v += (((u128)a_hi[e] << 64) | a_lo[e]) + (((u128)b_hi[e] << 64) | b_lo[e]);
            st(msg, n, i, (v >> d) - ld(mask, n, i));
        }
    }
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

/* out = -((-(a + b)) >>> d) mod 2^128: parties 1 and 2 finishing a truncated product. */
static PyObject *add_truncate_negated128(PyObject *self, PyObject *args) {
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
 * leading, else v = w: division._onehot_position (XOR-linear, so it runs per share). Bit k
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

static PyObject *xor_positions(PyObject *self, PyObject *args) {
    unsigned long long out_, w_; Py_ssize_t n; int leading;
    if (!PyArg_ParseTuple(args, "KKni", &out_, &w_, &n, &leading)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    xor_positions_loop(PTR(uint64_t, out_), PTR(const int64_t, w_), n, leading);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* z = x1 & (y1 ^ y2) ^ x2 & y1 ^ R1 ^ R2 on n words: a party's masked term of a boolean AND
 * (division.And), R from key1's stream at word start1 and key2's at start2. */
static PyObject *and_terms(PyObject *self, PyObject *args) {
    unsigned long long z_, x1_, x2_, y1_, y2_, start1, start2; Py_ssize_t n, len1, len2;
    const char *key1, *key2;
    if (!PyArg_ParseTuple(args, "KKKKKny#Ky#K", &z_, &x1_, &x2_, &y1_, &y2_, &n, &key1, &len1, &start1, &key2, &len2,
                          &start2)) return NULL;
    AES_CHECK(len1)
    if (len2 != 16 || n < 0) {
        PyErr_SetString(PyExc_ValueError, "and_terms: bad arguments");
        return NULL;
    }
#if HAVE_AESNI
    uint64_t *z = PTR(uint64_t, z_);
    const uint64_t *x1 = PTR(const uint64_t, x1_), *x2 = PTR(const uint64_t, x2_);
    const uint64_t *y1 = PTR(const uint64_t, y1_), *y2 = PTR(const uint64_t, y2_);
    aes_key k1, k2;
    aes_expand((const unsigned char *)key1, &k1);
    aes_expand((const unsigned char *)key2, &k2);
    Py_BEGIN_ALLOW_THREADS
    uint64_t r1[AES_PIECE], r2[AES_PIECE];
    for (Py_ssize_t i0 = 0; i0 < n; i0 += AES_PIECE) {
        Py_ssize_t c = n - i0 < AES_PIECE ? n - i0 : AES_PIECE;
        aes_words(&k1, start1 + i0, c, r1);
        aes_words(&k2, start2 + i0, c, r2);
        for (Py_ssize_t e = 0; e < c; e++) {
            Py_ssize_t i = i0 + e;
            z[i] = (x1[i] & (y1[i] ^ y2[i])) ^ (x2[i] & y1[i]) ^ r1[e] ^ r2[e];
        }
    }
    Py_END_ALLOW_THREADS
#endif
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"add128", add128, METH_VARARGS, "out = a + b mod 2^128"},
    {"sub128", sub128, METH_VARARGS, "out = a - b mod 2^128"},
    {"mul128", mul128, METH_VARARGS, "out = a * b mod 2^128"},
    {"neg128", neg128, METH_VARARGS, "out = -a mod 2^128"},
    {"sum128", sum128, METH_VARARGS, "(low, high) of the sum of all elements mod 2^128"},
    {"rss_product128", rss_product128, METH_VARARGS, "out = x1*(y1+y2) + x2*y1 mod 2^128"},
    {"rss_product64", rss_product64, METH_VARARGS, "out = x1*(y1+y2) + x2*y1 mod 2^64"},
    {"shift128", shift128, METH_VARARGS, "shifts mod 2^128"},
    {"shift64", shift64, METH_VARARGS, "logical / negated logical right shifts mod 2^64"},
    {"add_stream", add_stream, METH_VARARGS, "add or subtract PRG stream words into a ring tensor"},
    {"matmul64", matmul64, METH_VARARGS, "out = a @ b mod 2^64 (direct, small inner dimension)"},
    {"matmul128", matmul128, METH_VARARGS, "out = a @ b mod 2^128 (direct, small inner dimension)"},
    {"to_limbs", to_limbs, METH_VARARGS, "balanced signed limbs as float64 planes"},
    {"add_limb_product", add_limb_product, METH_VARARGS, "z += p * 2^shift mod 2^bits"},
    {"carry_terms", carry_terms, METH_VARARGS, "AND terms of one carry-tree level"},
    {"carry_update", carry_update, METH_VARARGS, "g, p after one carry-tree level, compacted"},
    {"fold_terms", fold_terms, METH_VARARGS, "AND terms of one equality-tree level"},
    {"msb_prepare", msb_prepare, METH_VARARGS, "g term, p and top bits of boolean.msb"},
    {"sklansky_terms", sklansky_terms, METH_VARARGS, "AND terms of one Sklansky adder level"},
    {"sklansky_update", sklansky_update, METH_VARARGS, "g, p after one Sklansky adder level, in place"},
    {"aes_available", aes_available, METH_NOARGS, "whether the AES-NI kernels can run here"},
    {"aes_use_wide", aes_use_wide, METH_VARARGS, "tests: switch the VAES path off (0) or back on (1)"},
    {"aes_fill", aes_fill, METH_VARARGS, "AES-128-CTR keystream words into a buffer"},
    {"aes_add_random", aes_add_random, METH_VARARGS, "z += +-R1 +- R2 for keystream ring tensors"},
    {"aes_xor_random", aes_xor_random, METH_VARARGS, "z ^= R1 ^ R2 for keystream words"},
    {"table_send128", table_send128, METH_VARARGS, "the table sender's encrypted message"},
    {"table_keys128", table_keys128, METH_VARARGS, "a table receiver's keystream blocks for the other"},
    {"table_pick128", table_pick128, METH_VARARGS, "a table receiver's share from the two messages"},
    {"rss_product_random128", rss_product_random128, METH_VARARGS, "a product term plus keystream masks"},
    {"por_terms", por_terms, METH_VARARGS, "a prefix-OR level's masked AND term"},
    {"rss_product_trunc128", rss_product_trunc128, METH_VARARGS, "party 0's truncated product message"},
    {"add_truncate_negated128", add_truncate_negated128, METH_VARARGS, "-((-(a + b)) >>> d) mod 2^128"},
    {"xor_positions", xor_positions, METH_VARARGS, "XOR of the positions of set bits, per word"},
    {"and_terms", and_terms, METH_VARARGS, "a party's masked term of a boolean AND"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ringkernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__ringkernels(void) { return PyModule_Create(&module); }
