/* Keyed randomness for the sampler and subset: the Feistel permutation behind
 * sampler.permute (the epoch order and a packed store's physical layout, with cycle-walking
 * onto [0, n)), and select_reads, the exact-size two-sample selection of `readtax subset`,
 * drawn from a splitmix64 stream whose state the caller keeps.
 *
 * The permutation equals the numpy network of sampler.permute bit for bit, and the selection
 * takes exact sample sizes; tests/test_native.py checks both.
 */
#include "readtax.h"

/* The Feistel permutation of sampler.permute (one key): the same round function, radices and
 * cycle-walking, so results equal the numpy version's bit for bit. */
static inline uint64_t feistel_round(uint64_t v, uint64_t key, uint64_t modulus) {
    uint64_t h = (v ^ key) * 0xBF58476D1CE4E5B9ULL;
    h ^= h >> 32;
    h *= 0x94D049BB133111EBULL;
    h >>= 32;
    return (h * modulus) >> 32;
}

/* LANES elements through the network in lockstep. One element's rounds form a chain of
 * dependent multiplies; independent chains side by side keep the multiplier busy (about
 * twice the throughput of one element at a time). */
#define LANES 8
static inline void feistel_lanes(const uint64_t *x, uint64_t a, uint64_t b,
                                 const uint64_t *keys, int rounds, int inverse, uint64_t *y) {
    uint64_t l[LANES], r[LANES], ma = a, mb = b, t;
    for (int k = 0; k < LANES; k++) {
        if (x[k] >> 32 == 0 && b >> 32 == 0) { /* 32-bit division: several times faster */
            l[k] = (uint32_t)x[k] / (uint32_t)b;
            r[k] = (uint32_t)x[k] % (uint32_t)b;
        } else {
            l[k] = x[k] / b;
            r[k] = x[k] % b;
        }
    }
    if (!inverse) {
        for (int q = 0; q < rounds; q++) {
            for (int k = 0; k < LANES; k++) {
                uint64_t f = feistel_round(r[k], keys[q], ma) + l[k];
                if (f >= ma)
                    f -= ma;
                l[k] = r[k];
                r[k] = f;
            }
            t = ma; ma = mb; mb = t;
        }
    } else {
        for (int q = rounds - 1; q >= 0; q--) {
            /* (ma, mb) play the radices of the left and right halves, swapped every round. */
            for (int k = 0; k < LANES; k++) {
                uint64_t f = r[k] + mb - feistel_round(l[k], keys[q], mb);
                if (f >= mb)
                    f -= mb;
                r[k] = l[k];
                l[k] = f;
            }
            t = ma; ma = mb; mb = t;
        }
    }
    for (int k = 0; k < LANES; k++)
        y[k] = l[k] * b + r[k];
}

/* One element through the network (a group padded with zeros). */
static inline uint64_t feistel_one(uint64_t x, uint64_t a, uint64_t b, const uint64_t *keys,
                                   int rounds, int inverse) {
    uint64_t in[LANES] = {x}, y[LANES];
    feistel_lanes(in, a, b, keys, rounds, inverse, y);
    return y[0];
}

/* permute(x[i]) over [0, n) for i in [0, m), in place when out is x: LANES at a time; the
 * rare values that land in [n, a*b) are cycle-walked (permuted again until they land inside). */
void feistel_all(const uint64_t *x, Py_ssize_t m, uint64_t n, uint64_t a, uint64_t b,
                 const uint64_t *keys, int rounds, int inverse, uint64_t *out) {
    Py_ssize_t i = 0;
    for (; i + LANES <= m; i += LANES)
        feistel_lanes(x + i, a, b, keys, rounds, inverse, out + i);
    for (; i < m; i++)
        out[i] = feistel_one(x[i], a, b, keys, rounds, inverse);
    for (i = 0; i < m; i++)
        while (out[i] >= n)
            out[i] = feistel_one(out[i], a, b, keys, rounds, inverse);
}

/* feistel(x, n, keys, a, b, inverse, out): out[i] = permute(x[i]) over [0, n). */
PyObject *feistel(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"x", "n", "keys", "a", "b", "inverse", "out", NULL};
    Py_buffer xb, kb, ob;
    unsigned long long n, a, b;
    int inverse;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*Ky*KKpw*", kwlist, &xb, &n, &kb, &a, &b, &inverse,
                                     &ob))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t m = xb.len / 8;
    int rounds = (int)(kb.len / 8);
    if (check_buffer(&ob, m, 8, "out"))
        goto done;
    if (a == 0 || b == 0 || a * b < n) {
        PyErr_SetString(PyExc_ValueError, "feistel: radices do not cover the domain");
        goto done;
    }
    const uint64_t *x = (const uint64_t *)xb.buf, *keys = (const uint64_t *)kb.buf;
    for (Py_ssize_t i = 0; i < m; i++)
        if (x[i] >= n) {
            PyErr_SetString(PyExc_ValueError, "permute: values must lie in [0, n)");
            goto done;
        }
    feistel_all(x, m, n, a, b, keys, rounds, inverse, (uint64_t *)ob.buf);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&xb);
    PyBuffer_Release(&kb);
    PyBuffer_Release(&ob);
    return result;
}

/* The splitmix64 generator: a small, well-mixed stream whose whole state is one 64-bit word,
 * which the caller keeps between batches so that a sequence of calls draws one stream. */
static inline uint64_t splitmix64_next(uint64_t *state) {
    uint64_t z = splitmix64(*state);
    *state += 0x9E3779B97F4A7C15ULL;
    return z;
}

/* A uniform integer in [0, n), n > 0, without bias (Lemire's multiply-and-reject). */
static inline uint64_t below(uint64_t *state, uint64_t n) {
    unsigned __int128 m = (unsigned __int128)splitmix64_next(state) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t floor = -n % n;
        while (low < floor) {
            m = (unsigned __int128)splitmix64_next(state) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* select_reads(cls, left, need_a, need_b, state, out)
 *
 * Sequential selection sampling (Knuth's Algorithm S, for two disjoint samples): a read of
 * class c, with left[c] reads of c still to come (this one included), goes to sample a with
 * probability need_a[c] / left[c], else to b with probability need_b[c] / left[c]. Every
 * subset of the exact sizes is equally likely. out[i] is 0 (not chosen), 1 (a) or 2 (b);
 * reads with cls < 0 are never chosen. The counters and the generator state (a uint64[1])
 * are updated in place. Returns -1, or the index of a read whose class had no reads left
 * (the input is not the one that was counted).
 */
PyObject *select_reads(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"cls", "left", "need_a", "need_b", "state", "out", NULL};
    Py_buffer cb, lb, ab, bb, sb, ob;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*w*w*w*w*w*", kwlist, &cb, &lb, &ab, &bb, &sb,
                                     &ob))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = cb.len / 8, k = lb.len / 8;
    if (check_buffer(&ab, k, 8, "need_a") || check_buffer(&bb, k, 8, "need_b") ||
        check_buffer(&sb, 1, 8, "state") || check_buffer(&ob, n, 1, "out"))
        goto done;
    const int64_t *cls = (const int64_t *)cb.buf;
    int64_t *left = (int64_t *)lb.buf, *need_a = (int64_t *)ab.buf, *need_b = (int64_t *)bb.buf;
    uint64_t *state = (uint64_t *)sb.buf;
    uint8_t *out = (uint8_t *)ob.buf;
    uint64_t st = *state;
    Py_ssize_t bad = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t c = cls[i];
        out[i] = 0;
        if (c < 0)
            continue;
        if (c >= k || left[c] <= 0) {
            bad = i;
            break;
        }
        int64_t a = need_a[c], b = need_b[c], l = left[c];
        if (a + b > 0) {
            /* No draw when one sample takes every remaining read of the class. */
            int64_t r = a >= l ? 0 : b >= l ? a : (int64_t)below(&st, (uint64_t)l);
            if (r < a) {
                out[i] = 1;
                need_a[c] = a - 1;
            } else if (r < a + b) {
                out[i] = 2;
                need_b[c] = b - 1;
            }
        }
        left[c] = l - 1;
    }
    *state = st;
    result = PyLong_FromSsize_t(bad);
done:
    PyBuffer_Release(&cb);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&ab);
    PyBuffer_Release(&bb);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&ob);
    return result;
}

