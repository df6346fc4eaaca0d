/* quants-inl.h — the block dequantizers as always-inline helpers, shared
 * by loader/quants.c (wk_dequantize_row) and the CPU backend's dot products
 * (cpu/dot.c), which compile them into their per-ISA clones. Private to
 * those two files: include it nowhere else. See quants.c for the formats. */
#ifndef WK_QUANTS_INL_H
#define WK_QUANTS_INL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "loader/quants.h"

/* Helpers of the hot loops are forced inline so that the per-ISA clones of
 * the dot products (WK_DOT_CLONES) compile them for their own target. */
#if defined(__GNUC__)
#define WK_INLINE static inline __attribute__((always_inline))
#else
#define WK_INLINE static inline
#endif

/* --- half / bfloat16 ----------------------------------------------------- */

WK_INLINE uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

WK_INLINE float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Branch-free half -> float, exact for every input (inlined into the loops;
 * selects are masks, not branches, so loops over f16 data vectorize).
 *   normal     : exponent rebiased 15 -> 127 by adding 112 << 23
 *   subnormal  : mantissa * 2^-24, via int -> float conversion (exact); no
 *                float subnormal is ever an operand (those cost a ~100-cycle
 *                microcode assist on x86)
 *   inf / NaN  : all-ones float exponent, payload kept (as numpy, ggml) */
WK_INLINE float half_to_f32(uint16_t h16)
{
    const uint32_t h = h16;
    const uint32_t sign = (h & 0x8000u) << 16;
    const uint32_t em = (h & 0x7fffu) << 13;
    const uint32_t exp = h & 0x7c00u;
    const uint32_t normal = em + 0x38000000u;
    const uint32_t special = em | 0x7f800000u;
    const uint32_t sub = f32_bits((float)(int32_t)(h & 0x3ffu) * 0x1p-24f);
    const uint32_t is_sub = 0u - (uint32_t)(exp == 0);
    const uint32_t is_special = 0u - (uint32_t)(exp == 0x7c00u);
    const uint32_t mag = (sub & is_sub) | (special & is_special) | (normal & ~(is_sub | is_special));
    return bits_f32(sign | mag);
}

/* --- block dequantizers --------------------------------------------------- */

/* Chunk of a row the dot products dequantize at a time: a multiple of every
 * supported block size; 256 floats = 1 KiB of stack, stays in L1. */
#define WK_CHUNK 256

/* The weights are read in place from the little-endian file. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "quants.c reads little-endian GGUF data in place: big-endian hosts are not supported"
#endif

WK_INLINE uint16_t rd16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

WK_INLINE float rdh(const uint8_t *p)
{
    return half_to_f32(rd16(p));
}

/* Each takes one block and writes block_size floats. */

WK_INLINE void deq_q4_0(const uint8_t *b, float *restrict y)
{
    const float d = rdh(b);
    const uint8_t *qs = b + 2;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((int)(qs[j] & 0x0f) - 8);
        y[j + 16] = d * (float)((int)(qs[j] >> 4) - 8);
    }
}

WK_INLINE void deq_q4_1(const uint8_t *b, float *restrict y)
{
    const float d = rdh(b), m = rdh(b + 2);
    const uint8_t *qs = b + 4;
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(qs[j] & 0x0f) + m;
        y[j + 16] = d * (float)(qs[j] >> 4) + m;
    }
}

/* Q5_0/Q5_1: the 5th bit of element j is bit j of a little-endian u32 qh;
 * the low 4 bits are qs[j] & 15 for j < 16, qs[j-16] >> 4 for j >= 16.
 * The loop runs over all 32 elements of the block (qs duplicated into t[],
 * the half picked by a constant mask, qh tested against a constant bit per
 * element), which gcc vectorizes at full AVX2 width without per-lane
 * variable shifts; measured ~20% faster than two 16-element halves. */
static const uint32_t k_bit[32] = {
    1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,
    1u << 8,  1u << 9,  1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15,
    1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21, 1u << 22, 1u << 23,
    1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31,
};
static const uint8_t k_hi_half[32] = {
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

WK_INLINE uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* the 5-bit value of element j: (qs as described above) | 16 * qh bit j */
WK_INLINE int q5_value(const uint8_t *t, uint32_t qh, int j)
{
    const int lo = ((t[j] & 0x0f) & ~k_hi_half[j]) | ((t[j] >> 4) & k_hi_half[j]);
    return lo | ((qh & k_bit[j]) ? 16 : 0);
}

WK_INLINE void deq_q5_0(const uint8_t *b, float *restrict y)
{
    const float d = rdh(b);
    const uint32_t qh = rd32(b + 2);
    uint8_t t[32]; /* qs twice */
    memcpy(t, b + 6, 16);
    memcpy(t + 16, b + 6, 16);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)(q5_value(t, qh, j) - 16);
}

WK_INLINE void deq_q5_1(const uint8_t *b, float *restrict y)
{
    const float d = rdh(b), m = rdh(b + 2);
    const uint32_t qh = rd32(b + 4);
    uint8_t t[32];
    memcpy(t, b + 8, 16);
    memcpy(t + 16, b + 8, 16);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)q5_value(t, qh, j) + m;
}

WK_INLINE void deq_q8_0(const uint8_t *b, float *restrict y)
{
    const float d = rdh(b);
    const int8_t *qs = (const int8_t *)(b + 2);
    for (int j = 0; j < 32; j++)
        y[j] = d * (float)qs[j];
}

/* Q4_K / Q5_K scales[12]: eight 6-bit scales and eight 6-bit mins.
 *   bytes 0..3 : sc[0..3] low 6 bits, top 2 bits = sc[4..7] bits 4..5
 *   bytes 4..7 : mn[0..3] low 6 bits, top 2 bits = mn[4..7] bits 4..5
 *   bytes 8..11: low nibble = sc[4..7] bits 0..3, high nibble = mn[4..7] bits 0..3 */
WK_INLINE void kq_scale_min(const uint8_t *s, int j, int *sc, int *mn)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *mn = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4);
        *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K: d, dmin, scales[12], qs[128]. Four 64-element groups, each from 32
 * bytes of qs: low nibbles are sub-block 2g, high nibbles sub-block 2g+1. */
WK_INLINE void deq_q4_k(const uint8_t *b, float *restrict y)
{
    const float d = rdh(b), dmin = rdh(b + 2);
    const uint8_t *sc = b + 4;
    const uint8_t *qs = b + 16;
    for (int g = 0; g < 4; g++) {
        int s0, m0, s1, m1;
        kq_scale_min(sc, 2 * g, &s0, &m0);
        kq_scale_min(sc, 2 * g + 1, &s1, &m1);
        const float d0 = d * (float)s0, n0 = dmin * (float)m0;
        const float d1 = d * (float)s1, n1 = dmin * (float)m1;
        const uint8_t *q = qs + 32 * g;
        float *o = y + 64 * g;
        for (int l = 0; l < 32; l++) {
            o[l] = d0 * (float)(q[l] & 0x0f) - n0;
            o[l + 32] = d1 * (float)(q[l] >> 4) - n1;
        }
    }
}

/* Q5_K: d, dmin, scales[12], qh[32], qs[128]. As Q4_K; the 5th bit of
 * element l of sub-block s is bit s of qh[l]. */
WK_INLINE void deq_q5_k(const uint8_t *b, float *restrict y)
{
    const float d = rdh(b), dmin = rdh(b + 2);
    const uint8_t *sc = b + 4;
    const uint8_t *qh = b + 16;
    const uint8_t *qs = b + 48;
    for (int g = 0; g < 4; g++) {
        int s0, m0, s1, m1;
        kq_scale_min(sc, 2 * g, &s0, &m0);
        kq_scale_min(sc, 2 * g + 1, &s1, &m1);
        const float d0 = d * (float)s0, n0 = dmin * (float)m0;
        const float d1 = d * (float)s1, n1 = dmin * (float)m1;
        const uint8_t *q = qs + 32 * g;
        float *o = y + 64 * g;
        const int b0 = 2 * g, b1 = 2 * g + 1;
        for (int l = 0; l < 32; l++) {
            int lo = (q[l] & 0x0f) | (((qh[l] >> b0) & 1) << 4);
            int hi = (q[l] >> 4) | (((qh[l] >> b1) & 1) << 4);
            o[l] = d0 * (float)lo - n0;
            o[l + 32] = d1 * (float)hi - n1;
        }
    }
}

/* Q6_K: ql[128], qh[64], int8 scales[16], d. Two 128-element halves; in a
 * half (ql += 64, qh += 32, scales += 8), for l < 32:
 *   element l      : low 4 bits ql[l] & 15,    high 2 bits qh[l] & 3
 *   element l + 32 : low 4 bits ql[l+32] & 15, high 2 bits (qh[l] >> 2) & 3
 *   element l + 64 : low 4 bits ql[l] >> 4,    high 2 bits (qh[l] >> 4) & 3
 *   element l + 96 : low 4 bits ql[l+32] >> 4, high 2 bits (qh[l] >> 6) & 3
 * q = 6-bit value - 32; x = (d * scales[element / 16]) * q. */
WK_INLINE void deq_q6_k(const uint8_t *b, float *restrict y)
{
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = rdh(b + 208);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b + 64 * h;
        const uint8_t *qh = b + 128 + 32 * h;
        const int8_t *s = sc + 8 * h;
        float *o = y + 128 * h;
        for (int p = 0; p < 2; p++) { /* l in [16p, 16p + 16): one scale each */
            const float d0 = d * (float)s[p], d1 = d * (float)s[p + 2];
            const float d2 = d * (float)s[p + 4], d3 = d * (float)s[p + 6];
            for (int l = 16 * p; l < 16 * p + 16; l++) {
                const int q0 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) - 32;
                const int q1 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q2 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q3 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                o[l] = d0 * (float)q0;
                o[l + 32] = d1 * (float)q1;
                o[l + 64] = d2 * (float)q2;
                o[l + 96] = d3 * (float)q3;
            }
        }
    }
}

/* n is WK_CHUNK (a constant after inlining, which lets gcc -O2 vectorize)
 * except in a row's last chunk. */
WK_INLINE void deq_f16(const uint8_t *b, float *restrict y, int n)
{
    for (int j = 0; j < n; j++)
        y[j] = half_to_f32(rd16(b + 2 * j));
}

WK_INLINE void deq_bf16(const uint8_t *b, float *restrict y, int n)
{
    for (int j = 0; j < n; j++)
        y[j] = bits_f32((uint32_t)rd16(b + 2 * j) << 16);
}

WK_INLINE void deq_f32(const uint8_t *b, float *restrict y, int n)
{
    memcpy(y, b, (size_t)n * 4);
}

/* Dequantize n elements (whole blocks) of `type` from src. Returns false for
 * a type we cannot dequantize. */
WK_INLINE bool deq_chunk(uint32_t type, const uint8_t *src, float *restrict y, int n)
{
    switch (type) {
    case GGML_TYPE_F32: deq_f32(src, y, n); return true;
    case GGML_TYPE_F16:
        if (n == WK_CHUNK)
            deq_f16(src, y, WK_CHUNK);
        else
            deq_f16(src, y, n);
        return true;
    case GGML_TYPE_BF16:
        if (n == WK_CHUNK)
            deq_bf16(src, y, WK_CHUNK);
        else
            deq_bf16(src, y, n);
        return true;
    case GGML_TYPE_Q4_0:
        for (int i = 0; i < n / 32; i++) deq_q4_0(src + 18 * i, y + 32 * i);
        return true;
    case GGML_TYPE_Q4_1:
        for (int i = 0; i < n / 32; i++) deq_q4_1(src + 20 * i, y + 32 * i);
        return true;
    case GGML_TYPE_Q5_0:
        for (int i = 0; i < n / 32; i++) deq_q5_0(src + 22 * i, y + 32 * i);
        return true;
    case GGML_TYPE_Q5_1:
        for (int i = 0; i < n / 32; i++) deq_q5_1(src + 24 * i, y + 32 * i);
        return true;
    case GGML_TYPE_Q8_0:
        for (int i = 0; i < n / 32; i++) deq_q8_0(src + 34 * i, y + 32 * i);
        return true;
    case GGML_TYPE_Q4_K:
        for (int i = 0; i < n / 256; i++) deq_q4_k(src + 144 * i, y + 256 * i);
        return true;
    case GGML_TYPE_Q5_K:
        for (int i = 0; i < n / 256; i++) deq_q5_k(src + 176 * i, y + 256 * i);
        return true;
    case GGML_TYPE_Q6_K:
        for (int i = 0; i < n / 256; i++) deq_q6_k(src + 210 * i, y + 256 * i);
        return true;
    default:
        return false;
    }
}

#endif
