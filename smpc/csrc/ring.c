/* Ring arithmetic: elementwise Z_2^64 / Z_2^128 kernels, exact small-inner-dimension
 * matmuls, the limb conversions of the float64-BLAS matmul (smpc/ring.py), and the adding of
 * smpc.prg keystream chunks into ring tensors (Ring.add_random_). */
#include "kernels.h"

#define ARGS3 unsigned long long out_, a_, b_; Py_ssize_t n; \
    if (!PyArg_ParseTuple(args, "KKKn", &out_, &a_, &b_, &n)) return NULL; \
    uint64_t *out = PTR(uint64_t, out_); const uint64_t *a = PTR(const uint64_t, a_), *b = PTR(const uint64_t, b_);

/* ----- elementwise Z_2^128 ------------------------------------------------------------ */

PyObject *add128(PyObject *self, PyObject *args) {
    ARGS3
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, ld(a, n, i) + ld(b, n, i));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyObject *sub128(PyObject *self, PyObject *args) {
    ARGS3
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, ld(a, n, i) - ld(b, n, i));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyObject *mul128(PyObject *self, PyObject *args) {
    ARGS3
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, ld(a, n, i) * ld(b, n, i));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyObject *neg128(PyObject *self, PyObject *args) {
    unsigned long long out_, a_; Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "KKn", &out_, &a_, &n)) return NULL;
    uint64_t *out = PTR(uint64_t, out_); const uint64_t *a = PTR(const uint64_t, a_);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) st(out, n, i, -ld(a, n, i));
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* z = x1 * (y1 + y2) + x2 * y1: a party's term of the replicated-sharing product. */
PyObject *rss_product128(PyObject *self, PyObject *args) {
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
PyObject *shift128(PyObject *self, PyObject *args) {
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
PyObject *sum128(PyObject *self, PyObject *args) {
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

/* kind: 1 logical right, 3 -((-a) >>> d); 0 <= d < 64. */
PyObject *shift64(PyObject *self, PyObject *args) {
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
PyObject *add_stream(PyObject *self, PyObject *args) {
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

PyObject *matmul64(PyObject *self, PyObject *args) {
    unsigned long long out_, a_, b_; Py_ssize_t n, k, m;
    if (!PyArg_ParseTuple(args, "KKKnnn", &out_, &a_, &b_, &n, &k, &m)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    matmul64_loop(PTR(uint64_t, out_), PTR(const uint64_t, a_), PTR(const uint64_t, b_), n, k, m);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyObject *matmul128(PyObject *self, PyObject *args) {
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
PyObject *to_limbs(PyObject *self, PyObject *args) {
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
PyObject *add_limb_product(PyObject *self, PyObject *args) {
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
