/* Elementwise Z_2^128 (and fused Z_2^64) kernels over torch int64 lane buffers.
 *
 * Why C: Z_2^128 products need 64x64->128 multiplies, which torch lacks; emulating them
 * with 32-bit halves costs ~25 tensor passes. Here one pass with unsigned __int128 does it.
 * smpc/ring.py keeps a pure-torch path with identical results for when this module is not
 * built; the tests compare the two.
 *
 * Layout: a contiguous ring128 tensor of n elements is n low words followed by n high words.
 * Arguments are raw addresses (from tensor.data_ptr()) and the element count. The GIL is
 * released for the loop so the parties' threads run in parallel.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

typedef unsigned __int128 u128;
typedef __int128 s128;

static inline u128 ld(const uint64_t *p, Py_ssize_t n, Py_ssize_t i) {
    return ((u128)p[n + i] << 64) | p[i];
}
static inline void st(uint64_t *p, Py_ssize_t n, Py_ssize_t i, u128 v) {
    p[i] = (uint64_t)v;
    p[n + i] = (uint64_t)(v >> 64);
}

#define ARGS3 unsigned long long out_, a_, b_; Py_ssize_t n; \
    if (!PyArg_ParseTuple(args, "KKKn", &out_, &a_, &b_, &n)) return NULL; \
    uint64_t *out = (uint64_t *)out_; const uint64_t *a = (const uint64_t *)a_, *b = (const uint64_t *)b_;

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

/* z = x1 * (y1 + y2) + x2 * y1: a party's term of the replicated-sharing product. */
static PyObject *rss_product128(PyObject *self, PyObject *args) {
    unsigned long long out_, x1_, x2_, y1_, y2_; Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "KKKKKn", &out_, &x1_, &x2_, &y1_, &y2_, &n)) return NULL;
    uint64_t *out = (uint64_t *)out_;
    const uint64_t *x1 = (const uint64_t *)x1_, *x2 = (const uint64_t *)x2_;
    const uint64_t *y1 = (const uint64_t *)y1_, *y2 = (const uint64_t *)y2_;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        u128 a = ld(x1, n, i), b = ld(y1, n, i);
        st(out, n, i, a * (b + ld(y2, n, i)) + ld(x2, n, i) * b);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *rss_product64(PyObject *self, PyObject *args) {
    unsigned long long out_, x1_, x2_, y1_, y2_; Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "KKKKKn", &out_, &x1_, &x2_, &y1_, &y2_, &n)) return NULL;
    uint64_t *out = (uint64_t *)out_;
    const uint64_t *x1 = (const uint64_t *)x1_, *x2 = (const uint64_t *)x2_;
    const uint64_t *y1 = (const uint64_t *)y1_, *y2 = (const uint64_t *)y2_;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) out[i] = x1[i] * (y1[i] + y2[i]) + x2[i] * y1[i];
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Shifts by 0 <= d < 128. kind: 0 left, 1 logical right, 2 arithmetic right,
 * 3 negated logical right of the negation, -((-a) >>> d), the second half of a truncation. */
static PyObject *shift128(PyObject *self, PyObject *args) {
    unsigned long long out_, a_; Py_ssize_t n; int d, kind;
    if (!PyArg_ParseTuple(args, "KKnii", &out_, &a_, &n, &d, &kind)) return NULL;
    uint64_t *out = (uint64_t *)out_; const uint64_t *a = (const uint64_t *)a_;
    if (d < 0 || d > 127 || kind < 0 || kind > 3) {
        PyErr_SetString(PyExc_ValueError, "shift128: bad shift");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        u128 v = ld(a, n, i);
        switch (kind) {
        case 0: v <<= d; break;
        case 1: v >>= d; break;
        case 2: v = (u128)((s128)v >> d); break;
        default: v = -((-v) >> d); break;
        }
        st(out, n, i, v);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"add128", add128, METH_VARARGS, "out = a + b mod 2^128"},
    {"sub128", sub128, METH_VARARGS, "out = a - b mod 2^128"},
    {"mul128", mul128, METH_VARARGS, "out = a * b mod 2^128"},
    {"rss_product128", rss_product128, METH_VARARGS, "out = x1*(y1+y2) + x2*y1 mod 2^128"},
    {"rss_product64", rss_product64, METH_VARARGS, "out = x1*(y1+y2) + x2*y1 mod 2^64"},
    {"shift128", shift128, METH_VARARGS, "shifts mod 2^128"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ringkernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__ringkernels(void) { return PyModule_Create(&module); }
