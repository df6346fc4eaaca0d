/* quants.h — ggml weight types: block layouts, sizes, dequantization, and the
 * the half/bfloat16 conversions (the CPU dot products are in cpu/dot.h).
 *
 * Block layouts (ggml, little-endian; d/m are fp16 unless noted):
 *   F32   4 bytes/elem          F16  2 bytes (IEEE half)   BF16 2 bytes
 *   Q4_0  32 elems, 18 B: d; qs[16] (lo nibble = elem j, hi = elem j+16); x = d*(q-8)
 *   Q4_1  32 elems, 20 B: d, m; qs[16]; x = d*q + m
 *   Q5_0  32 elems, 22 B: d; qh[4] (bit j = 5th bit of elem j); qs[16]; x = d*(q-16)
 *   Q5_1  32 elems, 24 B: d, m; qh[4]; qs[16]; x = d*q + m
 *   Q8_0  32 elems, 34 B: d; int8 qs[32]; x = d*q
 *   Q4_K  256 elems, 144 B: d, dmin; scales[12] (8 × 6-bit scale + 6-bit min);
 *         qs[128]; x = d*sc*q - dmin*m
 *   Q5_K  256 elems, 176 B: d, dmin; scales[12]; qh[32]; qs[128]
 *   Q6_K  256 elems, 210 B: ql[128]; qh[64]; int8 scales[16]; d; x = d*sc*(q-32)
 */
#ifndef WK_QUANTS_H
#define WK_QUANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum ggml_type {
    GGML_TYPE_F32 = 0,
    GGML_TYPE_F16 = 1,
    GGML_TYPE_Q4_0 = 2,
    GGML_TYPE_Q4_1 = 3,
    GGML_TYPE_Q5_0 = 6,
    GGML_TYPE_Q5_1 = 7,
    GGML_TYPE_Q8_0 = 8,
    GGML_TYPE_Q8_1 = 9,
    GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11,
    GGML_TYPE_Q4_K = 12,
    GGML_TYPE_Q5_K = 13,
    GGML_TYPE_Q6_K = 14,
    GGML_TYPE_Q8_K = 15,
    GGML_TYPE_BF16 = 30,
    GGML_TYPE__COUNT = 40
};

struct wk_type_info {
    const char *name;  /* "q4_K" (ggml's spelling) */
    int block_size;    /* elements per block */
    size_t type_size;  /* bytes per block */
    bool supported;    /* we can dequantize it */
};

/* NULL for an id ggml does not define. Ids ggml defines but we cannot compute
 * with (Q2_K, ...) return an entry with supported = false, so the loader can
 * name them. */
const struct wk_type_info *wk_type_info(uint32_t type);

/* Bytes for n elements of a row of `type` (n % block_size == 0 assumed). */
size_t wk_row_bytes(uint32_t type, int64_t n);

/* Half / bfloat16 <-> float. */
float wk_fp16_to_f32(uint16_t h);
uint16_t wk_f32_to_fp16(float f);
float wk_bf16_to_f32(uint16_t h);

/* Dequantize n elements (n % block_size == 0) starting at a block boundary. */
void wk_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);

/* Note on wk_type_info: it returns non-NULL only for ids < GGML_TYPE__COUNT,
 * so arrays sized GGML_TYPE__COUNT can be indexed by any type it knows.
 * (Newer ggml ids 40 nvfp4 and 41 q1_0 are therefore reported as unknown.) */

#ifdef __cplusplus
}
#endif

#endif
