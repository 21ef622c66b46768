/* The store's encodings: 2-bit rows of reads (pack_2bit), the join of byte-aligned rows into
 * one continuous stream in a chosen order (repack_2bit), front-coded read ids (front_code),
 * and the concatenation of byte ranges (gather: FASTQ qualities, fastx.gather_ragged).
 *
 * Every function writes into a buffer the caller allocates and checks each index and range
 * against the buffers it is given before touching memory.
 */
#include "readtax.h"
#include "twobit.h"

/* gather(src, starts, lengths, out)
 *
 * Concatenates the byte ranges src[starts[i]:starts[i]+lengths[i]] into out (which must hold
 * their total). The ranges are checked against src before anything is copied.
 */
PyObject *gather(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"src", "starts", "lengths", "out", NULL};
    Py_buffer src, st, ln, out;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*y*w*", kwlist, &src, &st, &ln, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = st.len / 8;
    if (check_buffer(&ln, n, 8, "lengths"))
        goto done;
    const int64_t *start = (const int64_t *)st.buf, *len = (const int64_t *)ln.buf;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (start[i] < 0 || len[i] < 0 || start[i] + len[i] > src.len) {
            PyErr_Format(PyExc_IndexError, "gather: range %zd outside the source", i);
            goto done;
        }
        total += len[i];
    }
    if (total > out.len) {
        PyErr_SetString(PyExc_ValueError, "gather: output too small");
        goto done;
    }
    const uint8_t *s = (const uint8_t *)src.buf;
    uint8_t *o = (uint8_t *)out.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + PREFETCH < n)
            __builtin_prefetch(s + start[i + PREFETCH]);
        memcpy(o, s + start[i], (size_t)len[i]);
        o += len[i];
    }
    result = PyLong_FromSsize_t(total);
done:
    PyBuffer_Release(&src);
    PyBuffer_Release(&st);
    PyBuffer_Release(&ln);
    PyBuffer_Release(&out);
    return result;
}

/* pack_2bit(seq, seq_off, out) -> bytes written
 *
 * Read i (bases seq[seq_off[i]:seq_off[i+1]], upper-case) becomes ceil(len / 4) bytes of out,
 * reads back to back, each starting on a byte: code (ascii >> 1) & 3 (A=0 C=1 T=2 G=3), four
 * bases per byte from the low bits up, unused bits of a read's last byte zero.
 */
PyObject *pack_2bit(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"seq", "seq_off", "out", NULL};
    Py_buffer sb, ob, out;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*w*", kwlist, &sb, &ob, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ob.len / 8 - 1;
    const uint8_t *seq = (const uint8_t *)sb.buf;
    const int64_t *off = (const int64_t *)ob.buf;
    uint8_t *o = (uint8_t *)out.buf;
    Py_ssize_t w = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t a = off[i], e = off[i + 1];
        if (a < 0 || e < a || e > sb.len || w + (e - a + 3) / 4 > out.len) {
            PyErr_SetString(PyExc_ValueError, "pack_2bit: read outside the buffers");
            goto done;
        }
        packer pk = {o + w, 0, 0};
        pack_piece(&pk, seq + a, e - a);
        if (pk.t)
            *pk.o++ = pk.acc;
        w = pk.o - o;
    }
    result = PyLong_FromSsize_t(w);
done:
    PyBuffer_Release(&sb);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&out);
    return result;
}

/* repack_2bit(src, row_off, lengths, order, lead, out[, fixed])
 *
 * Appends the byte-aligned 2-bit rows of the reads order[0], order[1], ... (row of read r at
 * src[row_off[r]], lengths[r] bases, unused bits zero) to one continuous stream that starts
 * `lead` bases (0-3) into out[0]. Every byte is written before it is read except out[0],
 * which must be zero; out needs one byte of slack at the end. With fixed >= 0 every read has
 * `fixed` bases and the rows lie back to back (row_off and lengths are not read): the random
 * order then costs one lookup per read, not three.
 */
PyObject *repack_2bit(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"src", "row_off", "lengths", "order", "lead", "out", "fixed", NULL};
    Py_buffer sb, rb, lb, ob, out;
    Py_ssize_t lead, fixed = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*y*y*nw*|n", kwlist, &sb, &rb, &lb, &ob, &lead,
                                     &out, &fixed))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t fixed_row = fixed >= 0 ? (fixed + 3) >> 2 : 0;
    Py_ssize_t n = fixed >= 0 ? (fixed_row ? sb.len / fixed_row : PY_SSIZE_T_MAX) : rb.len / 8,
               k = ob.len / 8;
    if (fixed < 0 && check_buffer(&lb, n, 8, "lengths"))
        goto done;
    const uint8_t *src = (const uint8_t *)sb.buf;
    const int64_t *row = (const int64_t *)rb.buf, *len = (const int64_t *)lb.buf,
                  *order = (const int64_t *)ob.buf;
    uint8_t *o = (uint8_t *)out.buf;
    int64_t pos = lead;
    for (Py_ssize_t i = 0; i < k; i++) {
        int64_t r = order[i];
        if (r < 0 || r >= n) {
            PyErr_SetString(PyExc_IndexError, "repack_2bit: read index out of range");
            goto done;
        }
        /* The order is random: fetch the row offsets, then the rows, ahead of their use. */
        if (fixed < 0 && i + 2 * PREFETCH < k) {
            int64_t far = order[i + 2 * PREFETCH];
            if (far >= 0 && far < n) {
                __builtin_prefetch(row + far);
                __builtin_prefetch(len + far);
            }
        }
        if (i + PREFETCH < k) {
            int64_t ahead = order[i + PREFETCH];
            if (ahead >= 0 && ahead < n)
                __builtin_prefetch(src + (fixed >= 0 ? ahead * fixed_row : row[ahead]));
        }
        int64_t bases = fixed >= 0 ? fixed : len[r], start = fixed >= 0 ? r * fixed_row : row[r];
        int64_t nb = (bases + 3) >> 2, q = pos >> 2;
        int shift = (int)(pos & 3) * 2;
        if (start < 0 || start + nb > sb.len || q + nb + (shift ? 1 : 0) > out.len) {
            PyErr_SetString(PyExc_ValueError, "repack_2bit: read outside the buffers");
            goto done;
        }
        const uint8_t *s = src + start;
        if (!shift) {
            memcpy(o + q, s, (size_t)nb);
        } else {
            /* Shift the row up by `shift` bits, 8 bytes at a time (little-endian words); the
             * bits already in o[q] (the previous read's) come in as the first carry. */
            uint64_t carry = o[q];
            int64_t j = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            for (; j + 8 <= nb; j += 8) {
                uint64_t w, v;
                memcpy(&w, s + j, 8);
                v = (w << shift) | carry;
                memcpy(o + q + j, &v, 8);
                carry = w >> (64 - shift);
            }
#endif
            for (; j < nb; j++) {
                o[q + j] = (uint8_t)((s[j] << shift) | carry);
                carry = s[j] >> (8 - shift);
            }
            o[q + nb] = (uint8_t)carry;
        }
        pos += bases;
    }
    result = PyLong_FromLongLong(pos);
done:
    PyBuffer_Release(&sb);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&out);
    return result;
}

/* Length of the common prefix of a and b, at most lim, 8 bytes at a time (the ids of a
 * species share 20-30 bytes). */
static inline int64_t common_prefix(const uint8_t *a, const uint8_t *b, int64_t lim) {
    int64_t l = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    for (; l + 8 <= lim; l += 8) {
        uint64_t x, y;
        memcpy(&x, a + l, 8);
        memcpy(&y, b + l, 8);
        if (x != y)
            return l + (__builtin_ctzll(x ^ y) >> 3);
    }
#endif
    while (l < lim && a[l] == b[l])
        l++;
    return l;
}

/* front_code(hdr, hdr_off, order, prefix_max, out) -> bytes written
 *
 * The ids hdr[hdr_off[r]:hdr_off[r+1]] for r in order, front-coded: first one byte per id with
 * the length of the prefix it shares with the previous id (at most prefix_max), then each id's
 * remaining suffix followed by a newline. out needs len(order) * 2 + the ids' total length.
 */
PyObject *front_code(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"hdr", "hdr_off", "order", "prefix_max", "out", NULL};
    Py_buffer hb, fb, ob, out;
    Py_ssize_t prefix_max;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*y*nw*", kwlist, &hb, &fb, &ob, &prefix_max,
                                     &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = fb.len / 8 - 1, k = ob.len / 8;
    const uint8_t *h = (const uint8_t *)hb.buf;
    const int64_t *off = (const int64_t *)fb.buf, *order = (const int64_t *)ob.buf;
    uint8_t *o = (uint8_t *)out.buf;
    Py_ssize_t w = k;
    const uint8_t *prev = NULL;
    int64_t prev_len = 0;
    if (k > out.len || prefix_max > 255) {
        PyErr_SetString(PyExc_ValueError, "front_code: output too small");
        goto done;
    }
    for (Py_ssize_t i = 0; i < k; i++) {
        int64_t r = order[i];
        if (r < 0 || r >= n || off[r] < 0 || off[r + 1] < off[r] || off[r + 1] > hb.len) {
            PyErr_SetString(PyExc_IndexError, "front_code: id index out of range");
            goto done;
        }
        if (i + 2 * PREFETCH < k) {
            int64_t far = order[i + 2 * PREFETCH];
            if (far >= 0 && far < n)
                __builtin_prefetch(off + far);
        }
        if (i + PREFETCH < k) {
            int64_t ahead = order[i + PREFETCH];
            if (ahead >= 0 && ahead < n)
                __builtin_prefetch(h + off[ahead]);
        }
        const uint8_t *cur = h + off[r];
        int64_t len = off[r + 1] - off[r], lim = len < prev_len ? len : prev_len, l = 0;
        if (lim > prefix_max)
            lim = prefix_max;
        if (prev)
            l = common_prefix(cur, prev, lim);
        if (w + (len - l) + 1 > out.len) {
            PyErr_SetString(PyExc_ValueError, "front_code: output too small");
            goto done;
        }
        o[i] = (uint8_t)l;
        memcpy(o + w, cur + l, (size_t)(len - l));
        w += len - l;
        o[w++] = '\n';
        prev = cur;
        prev_len = len;
    }
    result = PyLong_FromSsize_t(w);
done:
    PyBuffer_Release(&hb);
    PyBuffer_Release(&fb);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&out);
    return result;
}

