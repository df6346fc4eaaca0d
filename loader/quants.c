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

#include "core/status.h"
#include "loader/quants-inl.h"


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

