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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ringkernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__ringkernels(void) { return PyModule_Create(&module); }
