/* quants.c — ggml weight types: the type table, half/bfloat16 conversion,
 * dequantization of the block formats real GGUF files use, and the fp32 dot
 * products / matmul tiles of the CPU reference backend.
 *
 * Layouts are the ones quants.h sketches (checked against ggml's
 * ggml-common.h block structs and gguf-py's quants.py). Every weight is
 * rebuilt with exactly the fp32 operations ggml's dequantize_row_* performs,
 * in the same order, so dequantization is bit-exact:
 *   Q4_0/Q5_0/Q8_0  x = d * q
 *   Q4_1/Q5_1       x = d * q + m
 *   Q4_K/Q5_K       x = (d*sc) * q - (dmin*m)
 *   Q6_K            x = (d*sc) * q
 * Every product before an add is exact in fp32 (an 11-bit fp16 significand
 * times at most 6 + 5 bits of integers), so a compiler contracting a*b+c
 * into an FMA cannot change a result either.
 *
 * The dot products dequantize a chunk of the row (WK_CHUNK elements, whole
 * blocks) into a stack buffer and run a 32-lane multiply-add over it, so
 * their result equals dequantize-then-dot up to the order of the fp32
 * additions; that order is fixed in the source, so every build and both
 * ISA clones give the same bits. The dequantizers are loops over fixed
 * block sizes that gcc -O2 auto-vectorizes; no intrinsics.
 *
 * Measured single-thread on the dev VM (Sapphire Rapids, AVX2 clone), 896 x
 * 4864 matrices: see tests/test-quants.c (WK_QUANTS_BENCH=1).
 */
#include "loader/quants.h"

#include <string.h>

#include "worker/status.h"

/* Helpers of the hot loops are forced inline so that the per-ISA clones of
 * the dot products (WK_DOT_CLONES) compile them for their own target. */
#if defined(__GNUC__)
#define WK_INLINE static inline __attribute__((always_inline))
#else
#define WK_INLINE static inline
#endif

/* --- type table ---------------------------------------------------------- */

/* Every id below GGML_TYPE__COUNT that ggml defines (sizes as in
 * ggml-common.h; names as ggml's type_name). Holes stay NULL: 4, 5 (retired
 * Q4_2/Q4_3), 31..33 and 36..38 (retired repacked Q4_0_x_y / IQ4_NL_x_y).
 * Newer ggml also defines 40 (nvfp4, 64 elems / 36 B) and 41 (q1_0, 128 /
 * 18 B); they are left out so that wk_type_info(t) != NULL implies
 * t < GGML_TYPE__COUNT, which code sizing arrays by GGML_TYPE__COUNT relies
 * on. */
static const struct wk_type_info k_types[GGML_TYPE__COUNT] = {
    [0] = {"f32", 1, 4, true},
    [1] = {"f16", 1, 2, true},
    [2] = {"q4_0", 32, 18, true},
    [3] = {"q4_1", 32, 20, true},
    [6] = {"q5_0", 32, 22, true},
    [7] = {"q5_1", 32, 24, true},
    [8] = {"q8_0", 32, 34, true},
    [9] = {"q8_1", 32, 36, false},
    [10] = {"q2_K", 256, 84, false},
    [11] = {"q3_K", 256, 110, false},
    [12] = {"q4_K", 256, 144, true},
    [13] = {"q5_K", 256, 176, true},
    [14] = {"q6_K", 256, 210, true},
    [15] = {"q8_K", 256, 292, false},
    [16] = {"iq2_xxs", 256, 66, false},
    [17] = {"iq2_xs", 256, 74, false},
    [18] = {"iq3_xxs", 256, 98, false},
    [19] = {"iq1_s", 256, 50, false},
    [20] = {"iq4_nl", 32, 18, false},
    [21] = {"iq3_s", 256, 110, false},
    [22] = {"iq2_s", 256, 82, false},
    [23] = {"iq4_xs", 256, 136, false},
    [24] = {"i8", 1, 1, false},
    [25] = {"i16", 1, 2, false},
    [26] = {"i32", 1, 4, false},
    [27] = {"i64", 1, 8, false},
    [28] = {"f64", 1, 8, false},
    [29] = {"iq1_m", 256, 56, false},
    [30] = {"bf16", 1, 2, true},
    [34] = {"tq1_0", 256, 54, false},
    [35] = {"tq2_0", 256, 66, false},
    [39] = {"mxfp4", 32, 17, false},
};

const struct wk_type_info *wk_type_info(uint32_t type)
{
    if (type >= GGML_TYPE__COUNT || k_types[type].name == NULL)
        return NULL;
    return &k_types[type];
}

size_t wk_row_bytes(uint32_t type, int64_t n)
{
    const struct wk_type_info *ti = wk_type_info(type);
    if (ti == NULL || n < 0)
        return 0;
    return (size_t)(n / ti->block_size) * ti->type_size;
}

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

float wk_fp16_to_f32(uint16_t h)
{
    return half_to_f32(h);
}

/* Round to nearest, ties to even, in integer arithmetic (independent of the
 * FPU rounding mode). NaN stays NaN (quiet bit set, top payload bits kept);
 * overflow gives inf; magnitudes up to half the smallest subnormal give 0.
 * (The NaN result is what x86 F16C's vcvtps2ph gives.) */
uint16_t wk_f32_to_fp16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((x >> 13) & 0x3ffu));
    if (x >= 0x477ff000u) /* >= 65520 = 65504 + half an ulp: inf (tie -> even) */
        return (uint16_t)(sign | 0x7c00u);
    if (x >= 0x38800000u) { /* >= 2^-14: normal half */
        x -= 0x38000000u;   /* rebias exponent 127 -> 15 (112 << 23) */
        x += 0xfffu + ((x >> 13) & 1u);
        return (uint16_t)(sign | (x >> 13));
    }
    if (x <= 0x33000000u) /* <= 2^-25: rounds to zero (2^-25 is a tie -> 0) */
        return sign;
    /* subnormal half, counted in units of 2^-24: the float is
     * M * 2^(e - 150) (M its 24-bit significand, e its biased exponent,
     * 102..112 here), so the count is M * 2^(e - 126) = M >> (126 - e),
     * rounded by the bits shifted out */
    uint32_t e = x >> 23;
    uint32_t m = (x & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++; /* may carry into 0x400: the smallest normal, correct */
    return (uint16_t)(sign | q);
}

float wk_bf16_to_f32(uint16_t h)
{
    return bits_f32((uint32_t)h << 16);
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

void wk_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const struct wk_type_info *ti = wk_type_info(type);
    WK_ASSERT(ti != NULL && ti->supported);
    WK_ASSERT(n >= 0 && n % ti->block_size == 0);
    /* in pieces so the per-call count stays an int */
    const int64_t step = 1 << 20; /* a multiple of every block size */
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i += step) {
        int cnt = (int)(n - i < step ? n - i : step);
        deq_chunk(type, s + (size_t)(i / ti->block_size) * ti->type_size, dst + i, cnt);
    }
}

/* --- dot products ---------------------------------------------------------- */

/* Elements in the chunk that starts at element `done` of n. */
WK_INLINE int chunk_len(int64_t n, int64_t done)
{
    int64_t left = n - done;
    return left < WK_CHUNK ? (int)left : WK_CHUNK;
}

/* On x86-64 with gcc, the dot products are compiled twice, for the baseline
 * (SSE2) and for x86-64-v3 (AVX2), and the dynamic loader picks one at
 * start-up (ifunc). The C is the same, and so are the results: the lane
 * layout is fixed in the source, and -std=c11 (the project's c_std) keeps
 * gcc from contracting the dot's a*b+c into an FMA. Build with
 * -DWK_NO_CLONES to get the baseline only (the test passes both ways). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(WK_NO_CLONES)
#define WK_DOT_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define WK_DOT_CLONES
#endif

/* Independent accumulators: 32 lanes = 4 AVX2 / 8 SSE registers, enough to
 * hide the add latency (one 8-lane accumulator caps a core at ~2 elements
 * per cycle). Lane l accumulates the elements i with i % 32 == l; the lanes
 * are summed in a fixed order, so every build gives the same result.
 *
 * gcc keeps an accumulator *array* in memory (a store-forward per add), so
 * with GNU C the kernels are written with vector types (GNU vector
 * extensions: plain C operators, no intrinsics; gcc lowers them to whatever
 * the target has). The #else branches are the same computation in plain C. */
#define WK_LANES 32

#if defined(__GNUC__) && !defined(WK_NO_VEC)
#define WK_VEC 1
typedef float wk_v8 __attribute__((vector_size(32)));
/* ld8 is always inlined, so the ABI note for 32-byte vector returns in the
 * SSE2 build does not apply */
#pragma GCC diagnostic ignored "-Wpsabi"

WK_INLINE wk_v8 ld8(const float *p)
{
    wk_v8 v;
    memcpy(&v, p, sizeof v); /* unaligned load */
    return v;
}
#endif

/* acc[l] += a[i] * x[i] for i % WK_LANES == l; n % WK_LANES == 0. */
WK_INLINE void fma_lanes(float *restrict acc, const float *restrict a,
                         const float *restrict x, int n)
{
#ifdef WK_VEC
    wk_v8 c0 = ld8(acc), c1 = ld8(acc + 8), c2 = ld8(acc + 16), c3 = ld8(acc + 24);
    for (int i = 0; i < n; i += WK_LANES) {
        c0 += ld8(a + i) * ld8(x + i);
        c1 += ld8(a + i + 8) * ld8(x + i + 8);
        c2 += ld8(a + i + 16) * ld8(x + i + 16);
        c3 += ld8(a + i + 24) * ld8(x + i + 24);
    }
    memcpy(acc, &c0, 32);
    memcpy(acc + 8, &c1, 32);
    memcpy(acc + 16, &c2, 32);
    memcpy(acc + 24, &c3, 32);
#else
    for (int i = 0; i < n; i += WK_LANES)
        for (int l = 0; l < WK_LANES; l++)
            acc[l] += a[i + l] * x[i + l];
#endif
}

WK_INLINE float sum_lanes(const float *acc)
{
    /* fixed order: fold 32 -> 8 lane-wise, then pairwise */
    float a[8];
    for (int l = 0; l < 8; l++)
        a[l] = (acc[l] + acc[l + 16]) + (acc[l + 8] + acc[l + 24]);
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* One dot product, `type` known supported, n % block_size == 0. Every block
 * size divides WK_CHUNK, so each chunk holds whole blocks. Elements past the
 * last multiple of WK_LANES (1-element types only) are added in order at the
 * end. f32 rows are copied to an aligned buffer (the row pointer may be
 * unaligned). */
WK_INLINE float dot_row_impl(uint32_t type, const struct wk_type_info *ti,
                             const uint8_t *row, const float *restrict x, int64_t n)
{
    float acc[WK_LANES] = {0};
    _Alignas(64) float buf[WK_CHUNK];
    float tail = 0.0f;
    if (type == GGML_TYPE_F32) {
        _Alignas(64) float wa[WK_CHUNK];
        for (int64_t i = 0; i < n; i += WK_CHUNK) {
            int c = chunk_len(n, i);
            int c8 = c & ~(WK_LANES - 1);
            memcpy(wa, row + 4 * (size_t)i, (size_t)c * 4);
            fma_lanes(acc, wa, x + i, c8);
            for (int j = c8; j < c; j++)
                tail += wa[j] * x[i + j];
        }
        return sum_lanes(acc) + tail;
    }
    const size_t bpc = (size_t)(WK_CHUNK / ti->block_size) * ti->type_size; /* bytes per full chunk */
    for (int64_t i = 0, k = 0; i < n; i += WK_CHUNK, k++) {
        int c = chunk_len(n, i);
        int c8 = c & ~(WK_LANES - 1);
        deq_chunk(type, row + (size_t)k * bpc, buf, c);
        fma_lanes(acc, buf, x + i, c8);
        for (int j = c8; j < c; j++)
            tail += buf[j] * x[i + j];
    }
    return sum_lanes(acc) + tail;
}

WK_DOT_CLONES
float wk_dot_row(uint32_t type, const void *row, const float *x, int64_t n)
{
    const struct wk_type_info *ti = wk_type_info(type);
    WK_ASSERT(ti != NULL && ti->supported);
    WK_ASSERT(n >= 0 && n % ti->block_size == 0);
    return dot_row_impl(type, ti, row, x, n);
}

WK_DOT_CLONES
void wk_dot_rows(uint32_t type, const void *w, size_t row_stride_bytes, int n_rows,
                 const float *x, int64_t n, float *y)
{
    const struct wk_type_info *ti = wk_type_info(type);
    WK_ASSERT(ti != NULL && ti->supported);
    WK_ASSERT(n >= 0 && n % ti->block_size == 0);
    const uint8_t *p = w;
    for (int r = 0; r < n_rows; r++)
        y[r] = dot_row_impl(type, ti, p + (size_t)r * row_stride_bytes, x, n);
}

/* --- batched matmul tile ------------------------------------------------- */

/* Blocking of wk_matmul_rows: WK_BLOCK_R rows × WK_TILE_K columns are
 * dequantized at a time (16 × 512 floats = 32 KiB: stays in L1/L2), then
 * every token's x chunk (2 KiB, in L1) is dotted with them, WK_TILE_R rows
 * per kernel call so each x load feeds 4 multiply-adds. */
#define WK_TILE_R 4
#define WK_BLOCK_R 16
#define WK_TILE_K 512

/* Lanes per row in the tile kernel: 4 rows x 16 lanes = 8 AVX2 registers of
 * independent accumulators. */
#define WK_MM_LANES 16

WK_INLINE float sum16(const float *a)
{
    float b[8];
    for (int l = 0; l < 8; l++)
        b[l] = a[l] + a[l + 8];
    return ((b[0] + b[4]) + (b[2] + b[6])) + ((b[1] + b[5]) + (b[3] + b[7]));
}

/* out[r] = sum over i < c of wt[r][i] * x[i] for the WK_TILE_R rows of the
 * tile (row stride WK_TILE_K); c % WK_MM_LANES == 0. The rows share each
 * load of x. */
WK_INLINE void dot4_lanes(float *restrict out, const float *restrict wt,
                          const float *restrict x, int c)
{
    const float *w0 = wt, *w1 = wt + WK_TILE_K, *w2 = wt + 2 * WK_TILE_K, *w3 = wt + 3 * WK_TILE_K;
    float a0[WK_MM_LANES] = {0}, a1[WK_MM_LANES] = {0};
    float a2[WK_MM_LANES] = {0}, a3[WK_MM_LANES] = {0};
#ifdef WK_VEC
    wk_v8 p0 = {0}, q0 = {0}, p1 = {0}, q1 = {0}, p2 = {0}, q2 = {0}, p3 = {0}, q3 = {0};
    for (int i = 0; i < c; i += WK_MM_LANES) {
        const wk_v8 xa = ld8(x + i), xb = ld8(x + i + 8);
        p0 += ld8(w0 + i) * xa;
        q0 += ld8(w0 + i + 8) * xb;
        p1 += ld8(w1 + i) * xa;
        q1 += ld8(w1 + i + 8) * xb;
        p2 += ld8(w2 + i) * xa;
        q2 += ld8(w2 + i + 8) * xb;
        p3 += ld8(w3 + i) * xa;
        q3 += ld8(w3 + i + 8) * xb;
    }
    memcpy(a0, &p0, 32), memcpy(a0 + 8, &q0, 32);
    memcpy(a1, &p1, 32), memcpy(a1 + 8, &q1, 32);
    memcpy(a2, &p2, 32), memcpy(a2 + 8, &q2, 32);
    memcpy(a3, &p3, 32), memcpy(a3 + 8, &q3, 32);
#else
    for (int i = 0; i < c; i += WK_MM_LANES) {
        for (int l = 0; l < WK_MM_LANES; l++) {
            const float xv = x[i + l];
            a0[l] += w0[i + l] * xv;
            a1[l] += w1[i + l] * xv;
            a2[l] += w2[i + l] * xv;
            a3[l] += w3[i + l] * xv;
        }
    }
#endif
    out[0] = sum16(a0);
    out[1] = sum16(a1);
    out[2] = sum16(a2);
    out[3] = sum16(a3);
}

WK_DOT_CLONES
void wk_matmul_rows(uint32_t type, const void *w, size_t row_stride_bytes, int64_t n,
                    int r0, int r1, const float *x, int n_tok, float *y, int n_out)
{
    const struct wk_type_info *ti = wk_type_info(type);
    WK_ASSERT(ti != NULL && ti->supported);
    WK_ASSERT(n >= 0 && n % ti->block_size == 0);
    WK_ASSERT(0 <= r0 && r0 <= r1 && r1 <= n_out && n_tok >= 0);
    const uint8_t *base = w;
    _Alignas(64) float wt[WK_BLOCK_R * WK_TILE_K]; /* (WK_BLOCK_R, WK_TILE_K) */
    const int64_t n16 = n & ~(int64_t)(WK_MM_LANES - 1);

    for (int t = 0; t < n_tok; t++)
        for (int r = r0; r < r1; r++)
            y[(size_t)t * n_out + r] = 0.0f;

    for (int r = r0; r < r1; r += WK_BLOCK_R) {
        const int nr = r1 - r < WK_BLOCK_R ? r1 - r : WK_BLOCK_R;
        const int ntile = (nr + WK_TILE_R - 1) / WK_TILE_R;
        for (int64_t k0 = 0; k0 < n16; k0 += WK_TILE_K) {
            /* c is a whole number of blocks: WK_TILE_K is a multiple of every
             * block size, and only 1-element types have n16 < n */
            const int c = (int)(n16 - k0 < WK_TILE_K ? n16 - k0 : WK_TILE_K);
            for (int i = 0; i < ntile * WK_TILE_R; i++) {
                float *dst = wt + (size_t)i * WK_TILE_K;
                if (i >= nr) { /* padding rows of the last tile */
                    memset(dst, 0, (size_t)c * 4);
                    continue;
                }
                const uint8_t *row = base + (size_t)(r + i) * row_stride_bytes;
                deq_chunk(type, row + (size_t)(k0 / ti->block_size) * ti->type_size, dst, c);
            }
            for (int t = 0; t < n_tok; t++) {
                const float *xt = x + (size_t)t * n + k0;
                float *yt = y + (size_t)t * n_out + r;
                for (int g = 0; g < ntile; g++) {
                    float part[WK_TILE_R];
                    dot4_lanes(part, wt + (size_t)g * WK_TILE_R * WK_TILE_K, xt, c);
                    const int lim = nr - g * WK_TILE_R < WK_TILE_R ? nr - g * WK_TILE_R : WK_TILE_R;
                    for (int i = 0; i < lim; i++)
                        yt[g * WK_TILE_R + i] += part[i];
                }
            }
        }
        /* n % WK_MM_LANES tail (only 1-element types can have one) */
        for (int64_t k = n16; k < n; k++) {
            for (int i = 0; i < nr; i++) {
                const uint8_t *row = base + (size_t)(r + i) * row_stride_bytes;
                float v;
                deq_chunk(type, row + (size_t)k * ti->type_size, &v, 1);
                for (int t = 0; t < n_tok; t++)
                    y[(size_t)t * n_out + r + i] += v * x[(size_t)t * n + k];
            }
        }
    }
}
