/* The sequence readers' per-byte loops: the FASTA and FASTQ record walks that index a chunk
 * (record offsets, headers, base counts, flags for non-ACGT bytes), the copies that normalise
 * bases (upper case, IUPAC codes as N), the FASTA 2-bit encoding done during the walk, and
 * the `lbl|class|tax|` header parser.
 *
 * fastx.py and labels.py keep the logic (error messages, skipping, batching); these loops only
 * index, copy and count, into buffers the caller allocates. Which bytes are bases comes from
 * tables.h, generated from readtax/bases.py.
 */
#include "readtax.h"
#include "tables.h"
#include "twobit.h"

/* Index of the first byte of s[0:n] that is not upper-case A, C, G or T (n when none). On
 * clean data this is the line's '\n', so one SIMD pass both checks the bases and finds the end
 * of the line. */
#if defined(__SSE2__)
#include <emmintrin.h>
static inline Py_ssize_t first_non_acgt(const uint8_t *s, Py_ssize_t n) {
    const __m128i a = _mm_set1_epi8('A'), c = _mm_set1_epi8('C'), g = _mm_set1_epi8('G'),
                  t = _mm_set1_epi8('T');
    Py_ssize_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, a), _mm_cmpeq_epi8(x, c)),
                                 _mm_or_si128(_mm_cmpeq_epi8(x, g), _mm_cmpeq_epi8(x, t)));
        unsigned miss = (unsigned)_mm_movemask_epi8(m) ^ 0xFFFFu;
        if (miss)
            return i + __builtin_ctz(miss);
    }
    for (; i < n; i++) {
        uint8_t b = s[i];
        if (b != 'A' && b != 'C' && b != 'G' && b != 'T')
            return i;
    }
    return n;
}
#else
static inline Py_ssize_t first_non_acgt(const uint8_t *s, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t b = s[i];
        if (b != 'A' && b != 'C' && b != 'G' && b != 'T')
            return i;
    }
    return n;
}
#endif

/* End of the line starting at pos (offset of its '\n', or len when the data ends first), and
 * the end of its content (without '\r'). */
static inline Py_ssize_t line_end(const uint8_t *p, Py_ssize_t pos, Py_ssize_t len,
                                  Py_ssize_t *content_end) {
    const uint8_t *nl = pos < len ? memchr(p + pos, '\n', (size_t)(len - pos)) : NULL;
    Py_ssize_t e = nl ? (Py_ssize_t)(nl - p) : len;
    *content_end = (e > pos && p[e - 1] == '\r') ? e - 1 : e;
    return e;
}

/* Copies s[0:n] to o upper-cased with IUPAC codes as N; returns the index of the first byte
 * that is not a sequence character (copying stops there), or -1. */
static inline Py_ssize_t normalise(const uint8_t *s, Py_ssize_t n, uint8_t *o) {
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t c = BASE_NORM[s[i]];
        if (!c)
            return i;
        o[i] = c;
    }
    return -1;
}
/* fasta_index(data, cut, rec_start, hdr_off, seq_off, flags, hdr_buf[, packed])
 *
 * Indexes the FASTA records in data[:cut]. Per record i: rec_start[i] (offset of its '>'),
 * its header (without '>' and line end) copied to hdr_buf[hdr_off[i]:hdr_off[i+1]], its base
 * count as seq_off[i+1] - seq_off[i] (line ends and blank lines excluded), and flags[i]:
 * bit 0 a byte that is not a sequence character, bit 1 a base that is not upper-case ACGT.
 * Arrays must hold one entry per '>' in data[:cut] (+1 for the offsets).
 *
 * With packed (at least cut / 4 + cut / 2 + 8 bytes), each record's bases are also 2-bit
 * encoded in the same pass, while the line is in cache: record i's row (as fasta_pack writes
 * it) at the sum of the earlier rows' (length + 3) // 4 bytes. Rows of records with flags
 * hold arbitrary codes and must be packed again (fasta_pack normalises them).
 *
 * Returns (records, lines, has_cr, non_acgt, err, packed_bytes) where non_acgt counts bases
 * stored as N and err is the offset of a line before the first header (-1 when the data
 * starts with one).
 */
PyObject *fasta_index(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"data", "cut", "rec_start", "hdr_off", "seq_off", "flags", "hdr_buf",
                             "packed", NULL};
    Py_buffer data, rs, ho, so, fl, hb, pb = {0};
    Py_ssize_t cut;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*nw*w*w*w*w*|w*", kwlist, &data, &cut, &rs, &ho,
                                     &so, &fl, &hb, &pb))
        return NULL;
    PyObject *result = NULL;
    if (cut < 0 || cut > data.len) {
        PyErr_SetString(PyExc_ValueError, "cut outside the data");
        goto done;
    }
    int packing = pb.buf != NULL && pb.len > 0;
    if (packing && pb.len < cut / 4 + cut / 2 + 8) {
        PyErr_SetString(PyExc_ValueError, "fasta_index: packed buffer too small");
        goto done;
    }
    packer pk = {packing ? (uint8_t *)pb.buf : NULL, 0, 0};
    const uint8_t *p = (const uint8_t *)data.buf;
    Py_ssize_t cap = rs.len / 8;
    if (check_buffer(&ho, cap + 1, 8, "hdr_off") || check_buffer(&so, cap + 1, 8, "seq_off") ||
        check_buffer(&fl, cap, 1, "flags"))
        goto done;
    int64_t *rec_start = (int64_t *)rs.buf, *hdr_off = (int64_t *)ho.buf,
            *seq_off = (int64_t *)so.buf;
    uint8_t *flags = (uint8_t *)fl.buf, *hdr = (uint8_t *)hb.buf;
    Py_ssize_t n = 0, lines = 0, hpos = 0, err = -1, pos = 0;
    long long non_acgt = 0;
    int has_cr = 0;
    hdr_off[0] = 0;
    seq_off[0] = 0;
    while (pos < cut) {
        /* A sequence line of clean bases ends at the first byte that is not ACGT. */
        Py_ssize_t e = pos + first_non_acgt(p + pos, cut - pos);
        int clean = e == cut || p[e] == '\n' || (p[e] == '\r' && e + 1 < cut && p[e + 1] == '\n');
        if (!clean || e == pos) {
            const uint8_t *nl = memchr(p + e, '\n', (size_t)(cut - e));
            e = nl ? (Py_ssize_t)(nl - p) : cut;
            clean = 0;
        } else if (p[e] == '\r') {
            e++;
        }
        Py_ssize_t le = e;
        if (le > pos && p[le - 1] == '\r') {
            le--;
            has_cr = 1;
        }
        lines++;
        if (le > pos && p[pos] == '>') {
            Py_ssize_t hl = le - pos - 1;
            if (n >= cap || hpos + hl > hb.len) {
                PyErr_SetString(PyExc_ValueError, "fasta_index: output arrays too small");
                goto done;
            }
            if (pk.t) { /* the previous record's last, partial byte */
                *pk.o++ = pk.acc;
                pk.acc = 0;
                pk.t = 0;
            }
            rec_start[n] = pos;
            memcpy(hdr + hpos, p + pos + 1, (size_t)hl);
            hpos += hl;
            hdr_off[n + 1] = hpos;
            seq_off[n + 1] = seq_off[n];
            flags[n] = 0;
            n++;
        } else if (n == 0) {
            err = pos;
            break;
        } else if (le > pos) {
            seq_off[n] += le - pos;
            if (packing) /* rows take at most a quarter of the bytes plus one per record */
                pack_piece(&pk, p + pos, le - pos);
            if (!clean) {
                uint8_t f = 0;
                for (Py_ssize_t i = pos; i < le; i++) {
                    uint8_t k = BASE_CLASS[p[i]];
                    if (k == 3)
                        f |= 1;
                    else if (k) {
                        f |= 2;
                        non_acgt += (k == 2);
                    }
                }
                flags[n - 1] |= f;
            }
        }
        pos = e + 1;
    }
    if (pk.t)
        *pk.o++ = pk.acc;
    result = Py_BuildValue("nniLnn", n, lines, has_cr, non_acgt, err,
                           packing ? (Py_ssize_t)(pk.o - (uint8_t *)pb.buf) : (Py_ssize_t)0);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&rs);
    PyBuffer_Release(&ho);
    PyBuffer_Release(&so);
    PyBuffer_Release(&fl);
    PyBuffer_Release(&hb);
    if (pb.buf)
        PyBuffer_Release(&pb);
    return result;
}

/* Classify the bases s[0:n]: flags bit 0 for a byte that is not a sequence character, bit 1
 * for a base that is not upper-case ACGT; adds the bases stored as N to *non_acgt. */
static inline uint8_t classify(const uint8_t *s, Py_ssize_t n, long long *non_acgt) {
    if (first_non_acgt(s, n) == n)
        return 0;
    uint8_t f = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint8_t k = BASE_CLASS[s[i]];
        if (k == 3)
            f |= 1;
        else if (k) {
            f |= 2;
            *non_acgt += (k == 2);
        }
    }
    return f;
}

/* fastq_index(data, length, eof, limit, skip, rec_start, hdr_off, seq_start, seq_len,
 *             qual_start, flags, hdr_buf)
 *
 * Indexes the complete 4-line FASTQ records of data[:length] that start before `limit`.
 * Per record: rec_start (offset of '@'), header copied to hdr_buf[hdr_off[i]:hdr_off[i+1]],
 * the offsets of its sequence and quality lines and the sequence length, and flags as in
 * fasta_index plus bit 2: drop the record (no bases, or a quality line of another length;
 * only with `skip`, else those are errors). A record whose last line is not complete is left
 * for the next call unless `eof`. Arrays need one entry per '@' in the data (+1 for hdr_off).
 *
 * Blank lines between records are skipped.
 *
 * Returns (records, consumed, non_acgt, error, error_offset, quality_length, sequence_length):
 * error 0 none,
 * 1 header not starting with '@', 2 no sequence, 3 separator not starting with '+',
 * 4 quality length differs (quality_length says how long), 5 truncated record at the end.
 */
PyObject *fastq_index(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"data", "length", "eof", "limit", "skip", "rec_start", "hdr_off",
                             "seq_start", "seq_len", "qual_start", "flags", "hdr_buf", NULL};
    Py_buffer data, rs, ho, ss, sl, qs, fl, hb;
    Py_ssize_t length, limit;
    int eof, skip;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*npnpw*w*w*w*w*w*w*", kwlist, &data, &length, &eof,
                                     &limit, &skip, &rs, &ho, &ss, &sl, &qs, &fl, &hb))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t cap = rs.len / 8;
    if (length < 0 || length > data.len || check_buffer(&ho, cap + 1, 8, "hdr_off") ||
        check_buffer(&ss, cap, 8, "seq_start") || check_buffer(&sl, cap, 8, "seq_len") ||
        check_buffer(&qs, cap, 8, "qual_start") || check_buffer(&fl, cap, 1, "flags"))
        goto done;
    const uint8_t *p = (const uint8_t *)data.buf;
    int64_t *rec_start = (int64_t *)rs.buf, *hdr_off = (int64_t *)ho.buf,
            *seq_start = (int64_t *)ss.buf, *seq_len = (int64_t *)sl.buf,
            *qual_start = (int64_t *)qs.buf;
    uint8_t *flags = (uint8_t *)fl.buf, *hdr = (uint8_t *)hb.buf;
    Py_ssize_t n = 0, pos = 0, hpos = 0, err_pos = -1, qlen_bad = 0, slen_bad = 0;
    int err = 0;
    long long non_acgt = 0;
    hdr_off[0] = 0;
    while (pos < length && pos < limit) {
        if (p[pos] == '\n' || (p[pos] == '\r' && pos + 1 < length && p[pos + 1] == '\n')) {
            pos += p[pos] == '\n' ? 1 : 2; /* a blank line between records */
            continue;
        }
        Py_ssize_t ends[4], cends[4], at = pos;
        int lines = 0;
        for (; lines < 4 && at < length; lines++) {
            ends[lines] = line_end(p, at, length, &cends[lines]);
            if (ends[lines] == length && !eof)
                break; /* this line may go on in the next chunk */
            at = ends[lines] + 1;
        }
        if (lines < 4 || (ends[3] == length && !eof)) {
            if (eof) {
                err = 5;
                err_pos = pos;
            }
            break;
        }
        Py_ssize_t h = pos, s = ends[0] + 1, pl = ends[1] + 1, q = ends[2] + 1;
        Py_ssize_t slen = cends[1] - s, qlen = cends[3] - q;
        uint8_t f = 0;
        if (cends[0] <= h || p[h] != '@') {
            err = 1;
            err_pos = h;
            break;
        }
        if (cends[2] <= pl || p[pl] != '+') {
            err = 3;
            err_pos = pl;
            break;
        }
        if (slen <= 0 || qlen != slen) {
            if (!skip) {
                err = slen <= 0 ? 2 : 4;
                err_pos = slen <= 0 ? h : q;
                qlen_bad = qlen;
                slen_bad = slen;
                break;
            }
            f = 4;
        }
        Py_ssize_t hl = cends[0] - h - 1;
        if (n >= cap || hpos + hl > hb.len) {
            PyErr_SetString(PyExc_ValueError, "fastq_index: output arrays too small");
            goto done;
        }
        if (!f)
            f = classify(p + s, slen, &non_acgt);
        rec_start[n] = h;
        memcpy(hdr + hpos, p + h + 1, (size_t)hl);
        hpos += hl;
        hdr_off[n + 1] = hpos;
        seq_start[n] = s;
        seq_len[n] = slen > 0 ? slen : 0;
        qual_start[n] = q;
        flags[n] = f;
        n++;
        pos = ends[3] + 1;
    }
    if (pos > length)
        pos = length;
    result = Py_BuildValue("nnLinnn", n, pos, non_acgt, err, err_pos, qlen_bad, slen_bad);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&rs);
    PyBuffer_Release(&ho);
    PyBuffer_Release(&ss);
    PyBuffer_Release(&sl);
    PyBuffer_Release(&qs);
    PyBuffer_Release(&fl);
    PyBuffer_Release(&hb);
    return result;
}

/* copy_bases(data, starts, lengths, flags, out) -> data offset of a bad byte or -1
 *
 * Concatenates data[starts[i]:starts[i]+lengths[i]] into out, upper-cased with IUPAC codes as
 * N for reads whose flags are set (single-line sequences, as in FASTQ).
 */
PyObject *copy_bases(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"data", "starts", "lengths", "flags", "out", NULL};
    Py_buffer data, st, ln, fl, out;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*y*y*w*", kwlist, &data, &st, &ln, &fl, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = st.len / 8, w = 0, bad = -1;
    if (check_buffer(&ln, n, 8, "lengths") || check_buffer(&fl, n, 1, "flags"))
        goto done;
    const uint8_t *p = (const uint8_t *)data.buf;
    const int64_t *start = (const int64_t *)st.buf, *len = (const int64_t *)ln.buf;
    const uint8_t *flags = (const uint8_t *)fl.buf;
    uint8_t *o = (uint8_t *)out.buf;
    for (Py_ssize_t i = 0; i < n && bad < 0; i++) {
        if (start[i] < 0 || len[i] < 0 || start[i] + len[i] > data.len || w + len[i] > out.len) {
            PyErr_SetString(PyExc_ValueError, "copy_bases: read outside the buffers");
            goto done;
        }
        const uint8_t *s = p + start[i];
        if (!flags[i]) {
            memcpy(o + w, s, (size_t)len[i]);
        } else {
            Py_ssize_t at = normalise(s, len[i], o + w);
            if (at >= 0)
                bad = start[i] + at;
        }
        w += len[i];
    }
    result = PyLong_FromSsize_t(bad);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&st);
    PyBuffer_Release(&ln);
    PyBuffer_Release(&fl);
    PyBuffer_Release(&out);
    return result;
}

/* The arguments fasta_bases and fasta_pack share: the data, its records' start and end
 * offsets and flags, one output offset per record + 1 (seq_off or row_off), and the output. */
typedef struct {
    Py_buffer data, rs, re, fl, off, out;
    Py_ssize_t n; /* records */
} fasta_records;

static void fasta_records_release(fasta_records *a) {
    PyBuffer_Release(&a->data);
    PyBuffer_Release(&a->rs);
    PyBuffer_Release(&a->re);
    PyBuffer_Release(&a->fl);
    PyBuffer_Release(&a->off);
    PyBuffer_Release(&a->out);
}

/* Parses and size-checks the arguments (the offsets' name is off_name in errors); 0, or -1
 * with an exception set and nothing held. */
static int fasta_records_get(PyObject *args, PyObject *kw, char **kwlist, const char *off_name,
                             fasta_records *a) {
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*y*y*y*w*", kwlist, &a->data, &a->rs, &a->re,
                                     &a->fl, &a->off, &a->out))
        return -1;
    a->n = a->rs.len / 8;
    if (check_buffer(&a->re, a->n, 8, "rec_end") || check_buffer(&a->fl, a->n, 1, "flags") ||
        check_buffer(&a->off, a->n + 1, 8, off_name)) {
        fasta_records_release(a);
        return -1;
    }
    return 0;
}

/* fasta_bases(data, rec_start, rec_end, flags, seq_off, out)
 *
 * Copies the bases of the records data[rec_start[i]:rec_end[i]] (header line skipped, line
 * ends and blank lines dropped) to out[seq_off[i]:seq_off[i+1]], upper-cased with IUPAC codes
 * as N for records whose flags are set. Returns the data offset of the first byte that is not
 * a sequence character, or -1.
 */
PyObject *fasta_bases(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"data", "rec_start", "rec_end", "flags", "seq_off", "out", NULL};
    fasta_records rec;
    if (fasta_records_get(args, kw, kwlist, "seq_off", &rec) < 0)
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = rec.n;
    const uint8_t *p = (const uint8_t *)rec.data.buf;
    const int64_t *rec_start = (const int64_t *)rec.rs.buf, *rec_end = (const int64_t *)rec.re.buf,
                  *seq_off = (const int64_t *)rec.off.buf;
    const uint8_t *flags = (const uint8_t *)rec.fl.buf;
    uint8_t *o = (uint8_t *)rec.out.buf;
    Py_ssize_t bad = -1;
    for (Py_ssize_t r = 0; r < n && bad < 0; r++) {
        Py_ssize_t pos = rec_start[r], end = rec_end[r];
        Py_ssize_t w = seq_off[r], stop = seq_off[r + 1];
        if (pos < 0 || end > rec.data.len || pos > end || w < 0 || stop > rec.out.len || w > stop) {
            PyErr_SetString(PyExc_ValueError, "fasta_bases: record outside the buffers");
            goto done;
        }
        Py_ssize_t le;
        pos = line_end(p, pos, end, &le) + 1; /* past the header line */
        while (pos < end) {
            Py_ssize_t e = line_end(p, pos, end, &le);
            Py_ssize_t len = le - pos;
            if (w + len > stop) {
                PyErr_SetString(PyExc_ValueError, "fasta_bases: record longer than its offsets");
                goto done;
            }
            if (flags[r]) {
                Py_ssize_t at = normalise(p + pos, len, o + w);
                if (at >= 0) {
                    bad = pos + at;
                    break;
                }
            } else {
                memcpy(o + w, p + pos, (size_t)len);
            }
            w += len;
            pos = e + 1;
        }
        if (bad < 0 && w != stop) {
            PyErr_SetString(PyExc_ValueError, "fasta_bases: record shorter than its offsets");
            goto done;
        }
    }
    result = PyLong_FromSsize_t(bad);
done:
    fasta_records_release(&rec);
    return result;
}

/* fasta_pack(data, rec_start, rec_end, flags, row_off, out) -> data offset of a bad byte or -1
 *
 * The 2-bit rows of pack_2bit, straight from the FASTA records (as fasta_bases reads them):
 * record i's row goes to out[row_off[i]:row_off[i+1]]. Skips building the ASCII bases.
 */
PyObject *fasta_pack(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"data", "rec_start", "rec_end", "flags", "row_off", "out", NULL};
    fasta_records rec;
    if (fasta_records_get(args, kw, kwlist, "row_off", &rec) < 0)
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = rec.n;
    const uint8_t *p = (const uint8_t *)rec.data.buf;
    const int64_t *rec_start = (const int64_t *)rec.rs.buf, *rec_end = (const int64_t *)rec.re.buf,
                  *row_off = (const int64_t *)rec.off.buf;
    const uint8_t *flags = (const uint8_t *)rec.fl.buf;
    uint8_t *o = (uint8_t *)rec.out.buf;
    uint8_t tmp[256];
    Py_ssize_t bad = -1;
    for (Py_ssize_t r = 0; r < n && bad < 0; r++) {
        Py_ssize_t pos = rec_start[r], end = rec_end[r];
        if (pos < 0 || end > rec.data.len || pos > end || row_off[r] < 0 ||
            row_off[r + 1] > rec.out.len || row_off[r] > row_off[r + 1]) {
            PyErr_SetString(PyExc_ValueError, "fasta_pack: record outside the buffers");
            goto done;
        }
        /* Bases are counted against the row: 4 per byte, so a row holds at most that many. */
        Py_ssize_t room = 4 * (row_off[r + 1] - row_off[r]), seen = 0;
        packer pk = {o + row_off[r], 0, 0};
        Py_ssize_t le;
        pos = line_end(p, pos, end, &le) + 1; /* past the header line */
        while (pos < end) {
            Py_ssize_t e = line_end(p, pos, end, &le);
            seen += le - pos;
            if (seen > room) {
                PyErr_SetString(PyExc_ValueError, "fasta_pack: record longer than its row");
                goto done;
            }
            if (!flags[r]) {
                pack_piece(&pk, p + pos, le - pos);
            } else {
                for (Py_ssize_t a = pos; a < le && bad < 0; a += 256) {
                    Py_ssize_t k = le - a < 256 ? le - a : 256;
                    Py_ssize_t at = normalise(p + a, k, tmp);
                    if (at >= 0)
                        bad = a + at;
                    else
                        pack_piece(&pk, tmp, k);
                }
            }
            pos = e + 1;
        }
        if (pk.t)
            *pk.o++ = pk.acc;
        if (bad < 0 && pk.o != o + row_off[r + 1]) {
            PyErr_SetString(PyExc_ValueError, "fasta_pack: record shorter than its row");
            goto done;
        }
    }
    result = PyLong_FromSsize_t(bad);
done:
    fasta_records_release(&rec);
    return result;
}

/* Decimal digits of s[0:n] as a non-negative integer; -1 when empty, not all digits, or more
 * than 18 digits. */
static inline int64_t parse_uint(const uint8_t *s, Py_ssize_t n) {
    if (n <= 0 || n > 18)
        return -1;
    int64_t v = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned d = (unsigned)s[i] - '0';
        if (d > 9)
            return -1;
        v = v * 10 + d;
    }
    return v;
}

/* lbl_fields(headers, hdr_off, class_out, tax_out, status_out)
 *
 * Parses `lbl|<class_id>|<tax_id>|...` headers. status per read: 0 ok, 1 not of that shape
 * (prefix or fewer than three '|'), 2 class_id not a non-negative integer, 3 tax_id not one.
 * Values are -1 where they do not parse. Returns the number of reads with status 0.
 */
PyObject *lbl_fields(PyObject *Py_UNUSED(self), PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"headers", "hdr_off", "class_out", "tax_out", "status_out", NULL};
    Py_buffer hb, ho, co, to, st;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*y*w*w*w*", kwlist, &hb, &ho, &co, &to, &st))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = ho.len / 8 - 1;
    if (n < 0)
        n = 0;
    if (check_buffer(&co, n, 8, "class_out") || check_buffer(&to, n, 8, "tax_out") ||
        check_buffer(&st, n, 1, "status_out"))
        goto done;
    const uint8_t *h = (const uint8_t *)hb.buf;
    const int64_t *off = (const int64_t *)ho.buf;
    int64_t *cls = (int64_t *)co.buf, *tax = (int64_t *)to.buf;
    uint8_t *status = (uint8_t *)st.buf;
    Py_ssize_t good = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t s = off[i], e = off[i + 1];
        cls[i] = tax[i] = -1;
        if (s < 0 || e > hb.len || s > e) {
            PyErr_SetString(PyExc_ValueError, "lbl_fields: offsets outside the headers");
            goto done;
        }
        if (e - s < 4 || memcmp(h + s, "lbl|", 4) != 0) {
            status[i] = 1;
            continue;
        }
        {   /* The usual header: two runs of at most 18 digits, each ended by '|'. */
            Py_ssize_t q = s + 4, q0 = q;
            int64_t c = 0, t = 0;
            while (q < e && q - q0 < 18 && (unsigned)(h[q] - '0') <= 9)
                c = c * 10 + (h[q++] - '0');
            if (q > q0 && q < e && h[q] == '|') {
                Py_ssize_t r0 = ++q;
                while (q < e && q - r0 < 18 && (unsigned)(h[q] - '0') <= 9)
                    t = t * 10 + (h[q++] - '0');
                if (q > r0 && q < e && h[q] == '|') {
                    cls[i] = c;
                    tax[i] = t;
                    status[i] = 0;
                    good++;
                    continue;
                }
            }
        }
        const uint8_t *p1 = memchr(h + s + 4, '|', (size_t)(e - s - 4));
        const uint8_t *p2 = p1 ? memchr(p1 + 1, '|', (size_t)(h + e - p1 - 1)) : NULL;
        if (!p2) {
            status[i] = 1;
            continue;
        }
        int64_t c = parse_uint(h + s + 4, (Py_ssize_t)(p1 - h - s - 4));
        int64_t t = parse_uint(p1 + 1, (Py_ssize_t)(p2 - p1 - 1));
        cls[i] = c;  /* kept when only the tax id is bad: callers may not need it */
        if (c < 0) {
            status[i] = 2;
        } else if (t < 0) {
            status[i] = 3;
        } else {
            status[i] = 0;
            tax[i] = t;
            good++;
        }
    }
    result = PyLong_FromSsize_t(good);
done:
    PyBuffer_Release(&hb);
    PyBuffer_Release(&ho);
    PyBuffer_Release(&co);
    PyBuffer_Release(&to);
    PyBuffer_Release(&st);
    return result;
}

