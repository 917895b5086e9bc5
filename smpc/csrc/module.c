/* The method table of smpc._ringkernels: the entry points of ring.c, aes_ctr.c and rss_terms.c. */
#include "kernels.h"

static PyMethodDef methods[] = {
    {"add128", add128, METH_VARARGS, "out = a + b mod 2^128"},
    {"sub128", sub128, METH_VARARGS, "out = a - b mod 2^128"},
    {"mul128", mul128, METH_VARARGS, "out = a * b mod 2^128"},
    {"neg128", neg128, METH_VARARGS, "out = -a mod 2^128"},
    {"sum128", sum128, METH_VARARGS, "(low, high) of the sum of all elements mod 2^128"},
    {"rss_product128", rss_product128, METH_VARARGS, "out = x1*(y1+y2) + x2*y1 mod 2^128"},
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
