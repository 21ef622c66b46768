/* The 2-bit encoder shared by the FASTA walk (reader.c) and pack_2bit (codecs.c): code
 * (ascii >> 1) & 3 (A=0 C=1 T=2 G=3), four bases per byte from the low bits up. Inline, so
 * the walk packs a line while it is in cache.
 */
#ifndef READTAX_TWOBIT_H
#define READTAX_TWOBIT_H

#include "readtax.h"
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* 2-bit packing state of one read whose bases arrive in pieces (lines). */
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


#endif
