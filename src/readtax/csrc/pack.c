/* The packer's bulk kernels and the store's file I/O: split_batch spreads a batch over the
 * shuffle buckets (bucket hash, counting sorts, gathers and the statistics pack keeps, in one
 * pass), bucket_layout orders a bucket by class and through the layout permutation,
 * write_parts writes a bucket-major run file with gathered writes, and pread_ranges reads the
 * byte ranges of a batch back from a store.
 *
 * Outputs go to caller-allocated buffers, but split_batch, bucket_layout and write_parts
 * allocate their scratch arrays (PyMem) and free them before returning. write_parts and
 * pread_ranges release the GIL while in the kernel.
 */
#include "readtax.h"
#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

/* Stable counting sort: out lists the records of `in` (0, 1, ..., n-1 when in is NULL) by
 * key[record], each in [0, bins); count holds bins + 1 zeros and is left dirty. */
static void counting_sort(const int64_t *key, const int64_t *in, Py_ssize_t n, Py_ssize_t bins,
                          int64_t *count, int64_t *out) {
    for (Py_ssize_t i = 0; i < n; i++)
        count[key[i] + 1]++;
    for (Py_ssize_t k = 0; k < bins; k++)
        count[k + 1] += count[k];
    for (Py_ssize_t j = 0; j < n; j++) {
        int64_t r = in ? in[j] : j;
        out[count[key[r]]++] = r;
    }
}

/* split_batch(h0, k0, n_buckets, cls, rank, lengths, packed, hdr, hdr_off,
 *             order, out_cls, out_len, out_hlen, out_packed, out_hdr, bounds,
 *             class_counts, length_hist) -> (shortest, longest)
 *
 * One pack batch spread over the shuffle buckets. Read i (i = 0..n-1, the k0 + i-th of its
 * unit) goes to bucket splitmix64(h0 ^ (k0 + i)) % n_buckets, exactly as
 * hashing.hash64(seed, TAG_BUCKET, unit, k) % n_buckets with h0 = hash64(seed, TAG_BUCKET,
 * unit); within a bucket reads are sorted by rank[cls[i]] (by cls[i] when rank is empty),
 * ties in input order. With one bucket the order is the input order.
 *
 * Outputs, in that order: order[j] (int64) the input index of output read j; its class key,
 * length and header length (uint32); its 2-bit row ((length + 3) // 4 bytes of packed, rows
 * back to back) and header (hdr[hdr_off[i]:hdr_off[i+1]]) concatenated; and bounds
 * (int64, 4 x (n_buckets + 1)): where each bucket starts in reads, row bytes, header bytes
 * and bases. Replaces an argsort and a dozen gathers per batch with two counting passes.
 * Also adds each read to class_counts[cls[i]] and length_hist[min(length, len(hist) - 1)]
 * (int64) and returns the shortest and longest length (0, -1 for no reads): the statistics
 * pack keeps, in the same pass.
 */
PyObject *split_batch(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"h0", "k0", "n_buckets", "cls", "rank", "lengths", "packed", "hdr",
                             "hdr_off", "order", "out_cls", "out_len", "out_hlen", "out_packed",
                             "out_hdr", "bounds", "class_counts", "length_hist", NULL};
    unsigned long long h0;
    long long k0;
    Py_ssize_t nbk;
    Py_buffer cb, rb, lb, pb, hb, hob, ob, ocb, olb, ohb, opb, ohdb, bb, ccb, lhb;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "KLny*y*y*y*y*y*w*w*w*w*w*w*w*w*w*", kwlist, &h0,
                                     &k0, &nbk, &cb, &rb, &lb, &pb, &hb, &hob, &ob, &ocb, &olb,
                                     &ohb, &opb, &ohdb, &bb, &ccb, &lhb))
        return NULL;
    PyObject *result = NULL;
    int64_t *bucket = NULL, *key = NULL, *tmp = NULL, *count = NULL, *row_start = NULL;
    Py_ssize_t n = cb.len / 8, nrank = rb.len / 8;
    if (nbk < 1 || check_buffer(&lb, n, 8, "lengths") || check_buffer(&hob, n + 1, 8, "hdr_off") ||
        check_buffer(&ob, n, 8, "order") || check_buffer(&ocb, n, 4, "out_cls") ||
        check_buffer(&olb, n, 4, "out_len") || check_buffer(&ohb, n, 4, "out_hlen") ||
        check_buffer(&bb, 4 * (nbk + 1), 8, "bounds") || check_buffer(&lhb, 1, 8, "length_hist"))
        goto done;
    int64_t *class_counts = (int64_t *)ccb.buf, *hist = (int64_t *)lhb.buf;
    Py_ssize_t n_counts = ccb.len / 8, hist_top = lhb.len / 8 - 1;
    int64_t shortest = 0, longest = -1;
    const int64_t *cls = (const int64_t *)cb.buf, *rank = (const int64_t *)rb.buf,
                  *len = (const int64_t *)lb.buf, *hoff = (const int64_t *)hob.buf;
    int64_t *order = (int64_t *)ob.buf, *bounds = (int64_t *)bb.buf;
    /* Keys and row offsets, checked. */
    int64_t nkey = 0, rows = 0;
    row_start = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
    bucket = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
    key = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
    if (!row_start || !bucket || !key) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t c = cls[i];
        if (c < 0 || c >= n_counts || (nrank && c >= nrank) || len[i] < 0 || len[i] > UINT32_MAX ||
            hoff[i] < 0 || hoff[i + 1] < hoff[i] || hoff[i + 1] > hb.len ||
            hoff[i + 1] - hoff[i] > UINT32_MAX || c > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "split_batch: read fields out of range");
            goto done;
        }
        int64_t k = key[i] = nrank ? rank[c] : c;
        if (k < 0) {
            PyErr_SetString(PyExc_ValueError, "split_batch: negative class rank");
            goto done;
        }
        if (k + 1 > nkey)
            nkey = k + 1;
        row_start[i] = rows;
        rows += (len[i] + 3) >> 2;
        class_counts[c]++;
        hist[len[i] < hist_top ? len[i] : hist_top]++;
        if (i == 0 || len[i] < shortest)
            shortest = len[i];
        if (len[i] > longest)
            longest = len[i];
        bucket[i] = (int64_t)(splitmix64(h0 ^ (uint64_t)(k0 + i)) % (uint64_t)nbk);
    }
    row_start[n] = rows;
    if (nkey > (1 << 28)) { /* counting bins; class keys are indices into a label map */
        PyErr_SetString(PyExc_ValueError, "split_batch: class keys too large");
        goto done;
    }
    if (rows > pb.len || rows > opb.len || hoff[n] > ohdb.len) {
        PyErr_SetString(PyExc_ValueError, "split_batch: row or header buffers too small");
        goto done;
    }
    /* Counting sorts, least significant key first: by class rank, then (stably) by bucket. */
    if (nbk == 1) {
        for (Py_ssize_t i = 0; i < n; i++)
            order[i] = i;
    } else {
        Py_ssize_t bins = nkey > nbk ? nkey : nbk;
        tmp = PyMem_Malloc((size_t)(n + 1) * sizeof(int64_t));
        count = PyMem_Calloc((size_t)bins + 1, sizeof(int64_t));
        if (!tmp || !count) {
            PyErr_NoMemory();
            goto done;
        }
        counting_sort(key, NULL, n, nkey, count, tmp);
        memset(count, 0, ((size_t)bins + 1) * sizeof(int64_t));
        counting_sort(bucket, tmp, n, nbk, count, order);
    }
    /* Gather in the new order; bucket starts along the way. */
    const uint8_t *src = (const uint8_t *)pb.buf, *hsrc = (const uint8_t *)hb.buf;
    uint8_t *dst = (uint8_t *)opb.buf, *hdst = (uint8_t *)ohdb.buf;
    uint32_t *ocls = (uint32_t *)ocb.buf, *olen = (uint32_t *)olb.buf, *ohl = (uint32_t *)ohb.buf;
    int64_t *b_reads = bounds, *b_rows = bounds + (nbk + 1), *b_hdr = bounds + 2 * (nbk + 1),
            *b_bases = bounds + 3 * (nbk + 1);
    int64_t w = 0, hw = 0, bases = 0;
    Py_ssize_t cur = 0; /* buckets whose start is recorded */
    for (Py_ssize_t j = 0; j < n; j++) {
        int64_t i = order[j];
        for (; cur <= (Py_ssize_t)bucket[i]; cur++) {
            b_reads[cur] = j;
            b_rows[cur] = w;
            b_hdr[cur] = hw;
            b_bases[cur] = bases;
        }
        if (j + PREFETCH < n) {
            int64_t a = order[j + PREFETCH];
            __builtin_prefetch(src + row_start[a]);
            __builtin_prefetch(hsrc + hoff[a]);
        }
        int64_t nb = row_start[i + 1] - row_start[i], hl = hoff[i + 1] - hoff[i];
        memcpy(dst + w, src + row_start[i], (size_t)nb);
        memcpy(hdst + hw, hsrc + hoff[i], (size_t)hl);
        w += nb;
        hw += hl;
        bases += len[i];
        ocls[j] = (uint32_t)cls[i];
        olen[j] = (uint32_t)len[i];
        ohl[j] = (uint32_t)hl;
    }
    for (; cur <= nbk; cur++) {
        b_reads[cur] = n;
        b_rows[cur] = w;
        b_hdr[cur] = hw;
        b_bases[cur] = bases;
    }
    result = Py_BuildValue("LL", (long long)shortest, (long long)longest);
done:
    PyMem_Free(bucket);
    PyMem_Free(key);
    PyMem_Free(tmp);
    PyMem_Free(count);
    PyMem_Free(row_start);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&rb);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&pb);
    PyBuffer_Release(&hb);
    PyBuffer_Release(&hob);
    PyBuffer_Release(&ob);
    PyBuffer_Release(&ocb);
    PyBuffer_Release(&olb);
    PyBuffer_Release(&ohb);
    PyBuffer_Release(&opb);
    PyBuffer_Release(&ohdb);
    PyBuffer_Release(&bb);
    PyBuffer_Release(&ccb);
    PyBuffer_Release(&lhb);
    return result;
}

/* bucket_layout(cls, n_classes, keys, a, b, lengths, by_class, src, phys_len, phys_cls)
 *
 * The two orders of a pack bucket of m reads with class indices cls (int64): by_class (int64)
 * lists the reads by class, ties in input order (a counting sort), and src[s] (int64) is
 * the read at physical slot s: the read of class-order rank feistel^-1(s) (keys, a, b as
 * sampler.permute; its inverse with cycle-walking). No keys: src is the input order.
 * Also the reads' lengths (int64) and classes (uint16, or uint32 when phys_cls holds 4 bytes
 * per read) in physical order.
 */
PyObject *bucket_layout(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"cls", "n_classes", "keys", "a", "b", "lengths", "by_class", "src",
                             "phys_len", "phys_cls", NULL};
    Py_buffer cb, kb, lb, bcb, sb, plb, pcb;
    Py_ssize_t n_classes;
    unsigned long long a, b;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*ny*KKy*w*w*w*w*", kwlist, &cb, &n_classes, &kb,
                                     &a, &b, &lb, &bcb, &sb, &plb, &pcb))
        return NULL;
    PyObject *result = NULL;
    int64_t *count = NULL;
    Py_ssize_t m = cb.len / 8;
    int rounds = (int)(kb.len / 8);
    if (check_buffer(&bcb, m, 8, "by_class") || check_buffer(&sb, m, 8, "src") ||
        check_buffer(&lb, m, 8, "lengths") || check_buffer(&plb, m, 8, "phys_len") ||
        check_buffer(&pcb, m, 2, "phys_cls"))
        goto done;
    int wide = m > 0 && pcb.len >= 4 * m;
    if (n_classes > (wide ? (Py_ssize_t)UINT32_MAX : 65535) + 1) {
        PyErr_SetString(PyExc_ValueError, "bucket_layout: classes too many for phys_cls");
        goto done;
    }
    if (n_classes < 0 || (rounds && (a == 0 || b == 0 || a * b < (unsigned long long)m))) {
        PyErr_SetString(PyExc_ValueError, "bucket_layout: bad classes or radices");
        goto done;
    }
    const int64_t *cls = (const int64_t *)cb.buf;
    const uint64_t *keys = (const uint64_t *)kb.buf;
    int64_t *by_class = (int64_t *)bcb.buf, *src = (int64_t *)sb.buf;
    count = PyMem_Calloc((size_t)n_classes + 1, sizeof(int64_t));
    if (!count) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < m; i++)
        if (cls[i] < 0 || cls[i] >= n_classes) {
            PyErr_SetString(PyExc_ValueError, "bucket_layout: class index out of range");
            goto done;
        }
    counting_sort(cls, NULL, m, n_classes, count, by_class);
    if (!rounds) {
        for (Py_ssize_t s = 0; s < m; s++)
            src[s] = s;
    } else {
        /* src holds the slots, then their class-order ranks, then the reads. */
        for (Py_ssize_t s = 0; s < m; s++)
            src[s] = s;
        feistel_all((const uint64_t *)src, m, (uint64_t)m, a, b, keys, rounds, 1,
                    (uint64_t *)src);
        for (Py_ssize_t s = 0; s < m; s++)
            src[s] = by_class[src[s]];
    }
    const int64_t *len = (const int64_t *)lb.buf;
    int64_t *plen = (int64_t *)plb.buf;
    for (Py_ssize_t s = 0; s < m; s++) {
        plen[s] = len[src[s]];
        if (wide)
            ((uint32_t *)pcb.buf)[s] = (uint32_t)cls[src[s]];
        else
            ((uint16_t *)pcb.buf)[s] = (uint16_t)cls[src[s]];
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyMem_Free(count);
    PyBuffer_Release(&cb);
    PyBuffer_Release(&kb);
    PyBuffer_Release(&lb);
    PyBuffer_Release(&bcb);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&plb);
    PyBuffer_Release(&pcb);
    return result;
}

/* write_parts(fd, pieces, bounds, n_buckets) -> bytes written
 *
 * Writes a bucket-major pack run file, the last bucket first: pieces[f][k] is field f's data
 * from batch k and bounds[f][k] (int64, one entry per bucket + 1) the byte offsets of each
 * bucket's part in it. For each bucket, each field in order, each batch in order, the parts
 * go out with gathered writes (writev, up to 1,024 parts per call), straight from the
 * pieces: no copy through a staging buffer. The GIL is released while writing; a failed
 * write raises OSError.
 */
static int write_all_iov(int fd, struct iovec *iov, int cnt) {
    while (cnt > 0) {
        ssize_t done;
        Py_BEGIN_ALLOW_THREADS
        done = writev(fd, iov, cnt);
        Py_END_ALLOW_THREADS
        if (done < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return -1;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        while (cnt > 0 && (size_t)done >= iov->iov_len) { /* a short write: skip what went */
            done -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= (size_t)done;
        }
    }
    return 0;
}

#define SMALL_PART 4096
#define STAGE_BYTES (1 << 20)

PyObject *write_parts(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"fd", "pieces", "bounds", "n_buckets", NULL};
    int fd;
    PyObject *pieces, *bounds;
    Py_ssize_t nbk;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iOOn", kwlist, &fd, &pieces, &bounds, &nbk))
        return NULL;
    PyObject *result = NULL, *pf = NULL, *bf = NULL;
    Py_buffer *data = NULL, *bnd = NULL;
    Py_ssize_t nf = 0, nk = 0, held = 0;
    struct iovec iov[1024];
    char *stage = NULL;
    pf = PySequence_Fast(pieces, "pieces must be a sequence");
    bf = pf ? PySequence_Fast(bounds, "bounds must be a sequence") : NULL;
    if (!bf)
        goto done;
    nf = PySequence_Fast_GET_SIZE(pf);
    if (nf != PySequence_Fast_GET_SIZE(bf) || nf == 0 || nbk < 0) {
        PyErr_SetString(PyExc_ValueError, "write_parts: pieces and bounds differ in fields");
        goto done;
    }
    nk = PySequence_Size(PySequence_Fast_GET_ITEM(pf, 0));
    if (nk < 0)
        goto done;
    data = PyMem_Calloc((size_t)(nf * nk + 1), sizeof(Py_buffer));
    bnd = PyMem_Calloc((size_t)(nf * nk + 1), sizeof(Py_buffer));
    if (!data || !bnd) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t f = 0; f < nf; f++) {
        PyObject *pr = PySequence_Fast_GET_ITEM(pf, f), *br = PySequence_Fast_GET_ITEM(bf, f);
        if (PySequence_Size(pr) != nk || PySequence_Size(br) != nk) {
            PyErr_SetString(PyExc_ValueError, "write_parts: every field needs one piece per batch");
            goto done;
        }
        for (Py_ssize_t k = 0; k < nk; k++) {
            PyObject *a = PySequence_GetItem(pr, k), *b = PySequence_GetItem(br, k);
            int bad = !a || !b || PyObject_GetBuffer(a, &data[held], PyBUF_SIMPLE) < 0;
            if (!bad && PyObject_GetBuffer(b, &bnd[held], PyBUF_SIMPLE) < 0) {
                PyBuffer_Release(&data[held]);
                bad = 1;
            }
            Py_XDECREF(a);
            Py_XDECREF(b);
            if (bad)
                goto done;
            held++;
            const int64_t *o = (const int64_t *)bnd[held - 1].buf;
            if (bnd[held - 1].len / 8 < nbk + 1) {
                PyErr_SetString(PyExc_ValueError, "write_parts: bounds shorter than the buckets");
                goto done;
            }
            for (Py_ssize_t j = 0; j < nbk; j++)
                if (o[j] < 0 || o[j] > o[j + 1] || o[j + 1] > data[held - 1].len) {
                    PyErr_SetString(PyExc_ValueError, "write_parts: bounds outside their piece");
                    goto done;
                }
        }
    }
    /* Parts under SMALL_PART bytes (with many buckets, most of them) are copied together
     * into a staging buffer, which goes out as one segment: the kernel's cost per segment
     * would otherwise exceed the copy. */
    stage = PyMem_Malloc(STAGE_BYTES);
    if (!stage) {
        PyErr_NoMemory();
        goto done;
    }
    long long total = 0;
    int cnt = 0;
    size_t used = 0;
    for (Py_ssize_t j = nbk - 1; j >= 0; j--) /* the last bucket first */
        for (Py_ssize_t i = 0; i < nf * nk; i++) {
            const int64_t *o = (const int64_t *)bnd[i].buf;
            size_t len = (size_t)(o[j + 1] - o[j]);
            if (!len)
                continue;
            const char *from = (const char *)data[i].buf + o[j];
            total += (long long)len;
            if (len < SMALL_PART && used + len > STAGE_BYTES) { /* staging full: send all */
                if (write_all_iov(fd, iov, cnt) < 0)
                    goto done;
                cnt = 0;
                used = 0;
            }
            if (len < SMALL_PART) {
                memcpy(stage + used, from, len);
                char *last = cnt ? (char *)iov[cnt - 1].iov_base : NULL;
                if (last >= stage && last < stage + STAGE_BYTES &&
                    last + iov[cnt - 1].iov_len == stage + used) {
                    iov[cnt - 1].iov_len += len; /* extends the staged segment before it */
                    used += len;
                    continue;
                }
                from = stage + used;
                used += len;
            }
            iov[cnt].iov_base = (char *)from;
            iov[cnt].iov_len = len;
            if (++cnt == (int)(sizeof(iov) / sizeof(iov[0]))) {
                if (write_all_iov(fd, iov, cnt) < 0)
                    goto done;
                cnt = 0;
                used = 0;
            }
        }
    if (cnt && write_all_iov(fd, iov, cnt) < 0)
        goto done;
    result = PyLong_FromLongLong(total);
done:
    for (Py_ssize_t i = 0; i < held; i++) {
        PyBuffer_Release(&data[i]);
        PyBuffer_Release(&bnd[i]);
    }
    PyMem_Free(stage);
    PyMem_Free(data);
    PyMem_Free(bnd);
    Py_XDECREF(pf);
    Py_XDECREF(bf);
    return result;
}

/* pread_ranges(fd, offsets, sizes, out, out_offsets)
 *
 * For every i, read sizes[i] bytes at byte offsets[i] of the file fd into out at
 * out_offsets[i] (all int64 arrays of one length); bytes past the end of the file are zero.
 * The store's batch gather reads this way instead of through a mapping: a shuffled epoch
 * touches every page of the store, and mapped pages stay in the process's RSS until unmapped,
 * so a mapping grows it to the store's size (page cache counted as the process's memory).
 * One pread per range, without the GIL. Returns None; OSError on a failed read.
 */
PyObject *pread_ranges(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"fd", "offsets", "sizes", "out", "out_offsets", NULL};
    int fd;
    Py_buffer ob, sb, out, oob;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "iy*y*w*y*", kwlist, &fd, &ob, &sb, &out, &oob))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ob.len / 8;
    if (check_buffer(&sb, n, 8, "sizes") || check_buffer(&oob, n, 8, "out_offsets"))
        goto done;
    const int64_t *off = (const int64_t *)ob.buf, *size = (const int64_t *)sb.buf;
    const int64_t *at = (const int64_t *)oob.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (off[i] < 0 || size[i] < 0 || at[i] < 0 || at[i] + size[i] > out.len) {
            PyErr_Format(PyExc_IndexError, "pread_ranges: range %zd outside the output", i);
            goto done;
        }
    }
    uint8_t *o = (uint8_t *)out.buf;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n && !err; i++) {
        int64_t got = 0;
        while (got < size[i]) {
            ssize_t r = pread(fd, o + at[i] + got, (size_t)(size[i] - got), (off_t)(off[i] + got));
            if (r < 0) {
                if (errno == EINTR)
                    continue;
                err = errno;
                break;
            }
            if (r == 0) { /* end of file */
                memset(o + at[i] + got, 0, (size_t)(size[i] - got));
                break;
            }
            got += r;
        }
    }
    Py_END_ALLOW_THREADS
    if (err) {
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&ob);
    PyBuffer_Release(&sb);
    PyBuffer_Release(&out);
    PyBuffer_Release(&oob);
    return result;
}

