/* What every source file of the compiled core (readtax._native) shares: the Python and C
 * includes, the buffer-size check, the prefetch distance, the splitmix64 finaliser and the
 * entry points that module.c lists in the method table.
 *
 * The entry points take numpy arrays or bytes through the buffer protocol (no numpy headers
 * are needed to build) and check every offset and index they are given: a bad argument raises
 * ValueError or IndexError, never a memory fault. Each takes positional or keyword arguments
 * named as in readtax/_native.pyi.
 */
#ifndef READTAX_H
#define READTAX_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* How many records ahead the gathers over a random order prefetch. */
#define PREFETCH 16

/* 0 when the buffer holds `need` items of `item` bytes; else ValueError naming it, -1. */
static inline int check_buffer(Py_buffer *b, Py_ssize_t need, Py_ssize_t item,
                               const char *name) {
    if (b->len < need * item) {
        PyErr_Format(PyExc_ValueError, "%s: buffer holds %zd bytes, need %zd", name, b->len,
                     need * item);
        return -1;
    }
    return 0;
}

/* The splitmix64 finaliser of x, as readtax.hashing.splitmix64: the pack bucket hash and the
 * subset sampler's generator both use it, so a bucket computed here equals hashing.hash64. */
static inline uint64_t splitmix64(uint64_t x) {
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* permute.c: x[i] through the keyed Feistel permutation of [0, n) (its inverse when
 * `inverse`), for i in [0, m), into out (which may be x). */
void feistel_all(const uint64_t *x, Py_ssize_t m, uint64_t n, uint64_t a, uint64_t b,
                 const uint64_t *keys, int rounds, int inverse, uint64_t *out);

/* The entry points, by source file. */
PyObject *fasta_index(PyObject *self, PyObject *args, PyObject *kw);  /* reader.c */
PyObject *fasta_bases(PyObject *self, PyObject *args, PyObject *kw);
PyObject *fasta_pack(PyObject *self, PyObject *args, PyObject *kw);
PyObject *fastq_index(PyObject *self, PyObject *args, PyObject *kw);
PyObject *copy_bases(PyObject *self, PyObject *args, PyObject *kw);
PyObject *lbl_fields(PyObject *self, PyObject *args, PyObject *kw);
PyObject *pack_2bit(PyObject *self, PyObject *args, PyObject *kw);  /* codecs.c */
PyObject *repack_2bit(PyObject *self, PyObject *args, PyObject *kw);
PyObject *front_code(PyObject *self, PyObject *args, PyObject *kw);
PyObject *gather(PyObject *self, PyObject *args, PyObject *kw);
PyObject *feistel(PyObject *self, PyObject *args, PyObject *kw);  /* permute.c */
PyObject *select_reads(PyObject *self, PyObject *args, PyObject *kw);
PyObject *split_batch(PyObject *self, PyObject *args, PyObject *kw);  /* pack.c */
PyObject *bucket_layout(PyObject *self, PyObject *args, PyObject *kw);
PyObject *write_parts(PyObject *self, PyObject *args, PyObject *kw);
PyObject *pread_ranges(PyObject *self, PyObject *args, PyObject *kw);

#endif
