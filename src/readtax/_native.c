/* The compiled core: the per-byte loops of the FASTA reader, the `lbl` header parser and the
 * 2-bit encoder, which numpy can only do in several whole-buffer passes.
 *
 * Every function works on caller-allocated buffers (numpy arrays or bytes, through the buffer
 * protocol), so no numpy headers are needed to build it and no memory is allocated here. The
 * Python side (fastx.py, labels.py, store.py) keeps the logic: error messages, skipping, and
 * the batch structure; these loops only index, copy and count.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <sys/uio.h>
#include <unistd.h>

/* Byte classes of sequence characters: 0 upper-case ACGT, 1 lower-case acgt (upper-cased),
 * 2 other letters and '-', '*' (stored as N), 3 anything else (invalid). */
static uint8_t BASE_CLASS[256];
/* Normalised base of each byte (0 for invalid), as fastx.BASE_LUT. */
static uint8_t BASE_NORM[256];

static void init_tables(void) {
    for (int c = 0; c < 256; c++) {
        BASE_CLASS[c] = 3;
        BASE_NORM[c] = 0;
    }
    for (int c = 'A'; c <= 'Z'; c++) {
        BASE_CLASS[c] = 2;
        BASE_CLASS[c + 32] = 2;
        BASE_NORM[c] = 'N';
        BASE_NORM[c + 32] = 'N';
    }
    const char *acgt = "ACGT";
    for (int k = 0; k < 4; k++) {
        int c = (unsigned char)acgt[k];
        BASE_CLASS[c] = 0;
        BASE_CLASS[c + 32] = 1;
        BASE_NORM[c] = (uint8_t)c;
        BASE_NORM[c + 32] = (uint8_t)c;
    }
    BASE_CLASS['-'] = BASE_CLASS['*'] = 2;
    BASE_NORM['-'] = BASE_NORM['*'] = 'N';
}

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

/* How many records ahead the gathers over a random order prefetch. */
#define PREFETCH 16

static int check_buffer(Py_buffer *b, Py_ssize_t need, Py_ssize_t item, const char *name) {
    if (b->len < need * item) {
        PyErr_Format(PyExc_ValueError, "%s: buffer holds %zd bytes, need %zd", name, b->len,
                     need * item);
        return -1;
    }
    return 0;
}

typedef struct {
    uint8_t *o;
    uint8_t acc;
    int t;
} packer;

static inline uint8_t code4(const uint8_t *s) {
    return (uint8_t)(((s[0] >> 1) & 3) | (((s[1] >> 1) & 3) << 2) | (((s[2] >> 1) & 3) << 4) |
                     (((s[3] >> 1) & 3) << 6));
}

static inline void pack_piece(packer *pk, const uint8_t *restrict s, Py_ssize_t len) {
    /* Locals, not pk's fields, in the loops: stores through o could alias *pk otherwise. */
    uint8_t *restrict o = pk->o;
    uint8_t acc = pk->acc;
    int t = pk->t;
    Py_ssize_t i = 0;
    for (; t && i < len; i++) {
        acc |= (uint8_t)(((s[i] >> 1) & 3) << (2 * t));
        if (++t == 4) {
            *o++ = acc;
            acc = 0;
            t = 0;
        }
    }
#if defined(__SSE2__)
    /* Sixteen bases per step: the word trick below on four 32-bit lanes, then the lanes'
     * low bytes packed together. */
    const __m128i m3 = _mm_set1_epi8(3), m15 = _mm_set1_epi16(0x0F),
                  m255 = _mm_set1_epi32(0xFF);
    for (; i + 16 <= len; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(s + i));
        x = _mm_and_si128(_mm_srli_epi16(x, 1), m3);
        x = _mm_and_si128(_mm_or_si128(x, _mm_srli_epi16(x, 6)), m15);
        x = _mm_and_si128(_mm_or_si128(x, _mm_srli_epi32(x, 12)), m255);
        x = _mm_packus_epi16(_mm_packs_epi32(x, x), x);
        int32_t v = _mm_cvtsi128_si32(x);
        memcpy(o, &v, 4);
        o += 4;
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* Eight bases per step as one 64-bit word: codes into bits 0-1 of each byte, then pairs
     * of bytes and pairs of pairs merged into bytes 0 and 4. */
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        w = (w >> 1) & 0x0303030303030303ULL;
        w = (w | (w >> 6)) & 0x000F000F000F000FULL;
        w |= w >> 12;
        o[0] = (uint8_t)w;
        o[1] = (uint8_t)(w >> 32);
        o += 2;
    }
#endif
    Py_ssize_t full = (len - i) >> 2;
    for (Py_ssize_t g = 0; g < full; g++)
        o[g] = code4(s + i + 4 * g);
    o += full;
    i += 4 * full;
    for (; i < len; i++, t++)
        acc |= (uint8_t)(((s[i] >> 1) & 3) << (2 * t));
    pk->o = o;
    pk->acc = acc;
    pk->t = t;
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
static PyObject *fasta_index(PyObject *self, PyObject *args) {
    Py_buffer data, rs, ho, so, fl, hb, pb = {0};
    Py_ssize_t cut;
    if (!PyArg_ParseTuple(args, "y*nw*w*w*w*w*|w*", &data, &cut, &rs, &ho, &so, &fl, &hb, &pb))
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
static PyObject *fastq_index(PyObject *self, PyObject *args) {
    Py_buffer data, rs, ho, ss, sl, qs, fl, hb;
    Py_ssize_t length, limit;
    int eof, skip;
    if (!PyArg_ParseTuple(args, "y*npnpw*w*w*w*w*w*w*", &data, &length, &eof, &limit, &skip, &rs,
                          &ho, &ss, &sl, &qs, &fl, &hb))
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
static PyObject *copy_bases(PyObject *self, PyObject *args) {
    Py_buffer data, st, ln, fl, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &data, &st, &ln, &fl, &out))
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

/* fasta_bases(data, rec_start, rec_end, flags, seq_off, out)
 *
 * Copies the bases of the records data[rec_start[i]:rec_end[i]] (header line skipped, line
 * ends and blank lines dropped) to out[seq_off[i]:seq_off[i+1]], upper-cased with IUPAC codes
 * as N for records whose flags are set. Returns the data offset of the first byte that is not
 * a sequence character, or -1.
 */
static PyObject *fasta_bases(PyObject *self, PyObject *args) {
    Py_buffer data, rs, re, fl, so, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*", &data, &rs, &re, &fl, &so, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = rs.len / 8;
    if (check_buffer(&re, n, 8, "rec_end") || check_buffer(&fl, n, 1, "flags") ||
        check_buffer(&so, n + 1, 8, "seq_off"))
        goto done;
    const uint8_t *p = (const uint8_t *)data.buf;
    const int64_t *rec_start = (const int64_t *)rs.buf, *rec_end = (const int64_t *)re.buf,
                  *seq_off = (const int64_t *)so.buf;
    const uint8_t *flags = (const uint8_t *)fl.buf;
    uint8_t *o = (uint8_t *)out.buf;
    Py_ssize_t bad = -1;
    for (Py_ssize_t r = 0; r < n && bad < 0; r++) {
        Py_ssize_t pos = rec_start[r], end = rec_end[r];
        Py_ssize_t w = seq_off[r], stop = seq_off[r + 1];
        if (pos < 0 || end > data.len || pos > end || w < 0 || stop > out.len || w > stop) {
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
    PyBuffer_Release(&data);
    PyBuffer_Release(&rs);
    PyBuffer_Release(&re);
    PyBuffer_Release(&fl);
    PyBuffer_Release(&so);
    PyBuffer_Release(&out);
    return result;
}

/* 2-bit packing state of one read whose bases arrive in pieces (lines). */
/* fasta_pack(data, rec_start, rec_end, flags, row_off, out) -> data offset of a bad byte or -1
 *
 * The 2-bit rows of pack_2bit, straight from the FASTA records (as fasta_bases reads them):
 * record i's row goes to out[row_off[i]:row_off[i+1]]. Skips building the ASCII bases.
 */
static PyObject *fasta_pack(PyObject *self, PyObject *args) {
    Py_buffer data, rs, re, fl, ro, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*", &data, &rs, &re, &fl, &ro, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = rs.len / 8;
    if (check_buffer(&re, n, 8, "rec_end") || check_buffer(&fl, n, 1, "flags") ||
        check_buffer(&ro, n + 1, 8, "row_off"))
        goto done;
    const uint8_t *p = (const uint8_t *)data.buf;
    const int64_t *rec_start = (const int64_t *)rs.buf, *rec_end = (const int64_t *)re.buf,
                  *row_off = (const int64_t *)ro.buf;
    const uint8_t *flags = (const uint8_t *)fl.buf;
    uint8_t *o = (uint8_t *)out.buf;
    uint8_t tmp[256];
    Py_ssize_t bad = -1;
    for (Py_ssize_t r = 0; r < n && bad < 0; r++) {
        Py_ssize_t pos = rec_start[r], end = rec_end[r];
        if (pos < 0 || end > data.len || pos > end || row_off[r] < 0 ||
            row_off[r + 1] > out.len || row_off[r] > row_off[r + 1]) {
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
    PyBuffer_Release(&data);
    PyBuffer_Release(&rs);
    PyBuffer_Release(&re);
    PyBuffer_Release(&fl);
    PyBuffer_Release(&ro);
    PyBuffer_Release(&out);
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
static PyObject *lbl_fields(PyObject *self, PyObject *args) {
    Py_buffer hb, ho, co, to, st;
    if (!PyArg_ParseTuple(args, "y*y*w*w*w*", &hb, &ho, &co, &to, &st))
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

/* gather(src, starts, lengths, out)
 *
 * Concatenates the byte ranges src[starts[i]:starts[i]+lengths[i]] into out (which must hold
 * their total). The ranges are checked against src before anything is copied.
 */
static PyObject *gather(PyObject *self, PyObject *args) {
    Py_buffer src, st, ln, out;
    if (!PyArg_ParseTuple(args, "y*y*y*w*", &src, &st, &ln, &out))
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

/* splitmix64: a small, well-mixed generator; its whole state is one 64-bit word, which the
 * caller keeps between batches so that a sequence of calls draws one stream. */
static inline uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* A uniform integer in [0, n), n > 0, without bias (Lemire's multiply-and-reject). */
static inline uint64_t below(uint64_t *state, uint64_t n) {
    unsigned __int128 m = (unsigned __int128)splitmix64(state) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t floor = -n % n;
        while (low < floor) {
            m = (unsigned __int128)splitmix64(state) * n;
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
static PyObject *select_reads(PyObject *self, PyObject *args) {
    Py_buffer cb, lb, ab, bb, sb, ob;
    if (!PyArg_ParseTuple(args, "y*w*w*w*w*w*", &cb, &lb, &ab, &bb, &sb, &ob))
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

/* pack_2bit(seq, seq_off, out) -> bytes written
 *
 * Read i (bases seq[seq_off[i]:seq_off[i+1]], upper-case) becomes ceil(len / 4) bytes of out,
 * reads back to back, each starting on a byte: code (ascii >> 1) & 3 (A=0 C=1 T=2 G=3), four
 * bases per byte from the low bits up, unused bits of a read's last byte zero.
 */
static PyObject *pack_2bit(PyObject *self, PyObject *args) {
    Py_buffer sb, ob, out;
    if (!PyArg_ParseTuple(args, "y*y*w*", &sb, &ob, &out))
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
static PyObject *repack_2bit(PyObject *self, PyObject *args) {
    Py_buffer sb, rb, lb, ob, out;
    Py_ssize_t lead, fixed = -1;
    if (!PyArg_ParseTuple(args, "y*y*y*y*nw*|n", &sb, &rb, &lb, &ob, &lead, &out, &fixed))
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
static PyObject *front_code(PyObject *self, PyObject *args) {
    Py_buffer hb, fb, ob, out;
    Py_ssize_t prefix_max;
    if (!PyArg_ParseTuple(args, "y*y*y*nw*", &hb, &fb, &ob, &prefix_max, &out))
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
static void feistel_all(const uint64_t *x, Py_ssize_t m, uint64_t n, uint64_t a, uint64_t b,
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
static PyObject *feistel(PyObject *self, PyObject *args) {
    Py_buffer xb, kb, ob;
    unsigned long long n, a, b;
    int inverse;
    if (!PyArg_ParseTuple(args, "y*Ky*KKpw*", &xb, &n, &kb, &a, &b, &inverse, &ob))
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
 * sampler.hash64(seed, TAG_BUCKET, unit, k) % n_buckets with h0 = hash64(seed, TAG_BUCKET,
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
static PyObject *split_batch(PyObject *self, PyObject *args) {
    unsigned long long h0;
    long long k0;
    Py_ssize_t nbk;
    Py_buffer cb, rb, lb, pb, hb, hob, ob, ocb, olb, ohb, opb, ohdb, bb, ccb, lhb;
    if (!PyArg_ParseTuple(args, "KLny*y*y*y*y*y*w*w*w*w*w*w*w*w*w*", &h0, &k0, &nbk, &cb, &rb,
                          &lb, &pb, &hb, &hob, &ob, &ocb, &olb, &ohb, &opb, &ohdb, &bb, &ccb,
                          &lhb))
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
        uint64_t z = (h0 ^ (uint64_t)(k0 + i)) + 0x9E3779B97F4A7C15ULL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        z ^= z >> 31;
        bucket[i] = (int64_t)(z % (uint64_t)nbk);
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
static PyObject *bucket_layout(PyObject *self, PyObject *args) {
    Py_buffer cb, kb, lb, bcb, sb, plb, pcb;
    Py_ssize_t n_classes;
    unsigned long long a, b;
    if (!PyArg_ParseTuple(args, "y*ny*KKy*w*w*w*w*", &cb, &n_classes, &kb, &a, &b, &lb, &bcb,
                          &sb, &plb, &pcb))
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

/* write_parts(fd, pieces, bounds, buckets) -> bytes written
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

static PyObject *write_parts(PyObject *self, PyObject *args) {
    int fd;
    PyObject *pieces, *bounds;
    Py_ssize_t nbk;
    if (!PyArg_ParseTuple(args, "iOOn", &fd, &pieces, &bounds, &nbk))
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
static PyObject *pread_ranges(PyObject *self, PyObject *args) {
    int fd;
    Py_buffer ob, sb, out, oob;
    if (!PyArg_ParseTuple(args, "iy*y*w*y*", &fd, &ob, &sb, &out, &oob))
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

static PyMethodDef methods[] = {
    {"fasta_index", fasta_index, METH_VARARGS, "Index the FASTA records of a buffer."},
    {"fasta_bases", fasta_bases, METH_VARARGS, "Copy and normalise the bases of FASTA records."},
    {"fasta_pack", fasta_pack, METH_VARARGS, "2-bit encode FASTA records in place."},
    {"fastq_index", fastq_index, METH_VARARGS, "Index the FASTQ records of a buffer."},
    {"copy_bases", copy_bases, METH_VARARGS, "Copy and normalise single-line sequences."},
    {"lbl_fields", lbl_fields, METH_VARARGS, "Parse class and tax ids of lbl headers."},
    {"gather", gather, METH_VARARGS, "Concatenate byte ranges of a buffer."},
    {"select_reads", select_reads, METH_VARARGS, "Selection sampling of two disjoint subsets."},
    {"pack_2bit", pack_2bit, METH_VARARGS, "2-bit encode reads, each starting on a byte."},
    {"repack_2bit", repack_2bit, METH_VARARGS, "Join byte-aligned 2-bit reads into one stream."},
    {"front_code", front_code, METH_VARARGS, "Front-code a block of ids."},
    {"feistel", feistel, METH_VARARGS, "Keyed Feistel permutation with cycle-walking."},
    {"bucket_layout", bucket_layout, METH_VARARGS, "Class order and physical order of a bucket."},
    {"write_parts", write_parts, METH_VARARGS, "Write a bucket-major run file from its parts."},
    {"split_batch", split_batch, METH_VARARGS, "Spread a pack batch over the buckets."},
    {"pread_ranges", pread_ranges, METH_VARARGS, "Read file ranges into a buffer (pread)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "readtax._native", "readtax's compiled loops.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    init_tables();
    return PyModule_Create(&module);
}
