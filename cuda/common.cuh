/* common.cuh — shared by the CUDA backend's .cu files: the in-kernel
 * dequantizer of every supported weight type, the warp/block reductions, and
 * the device view of a weight matrix.
 *
 * Dequantization works on "chunks" of 8 consecutive elements of one row
 * (wk_deq8: element 8c .. 8c+7). Every quantized type's block is a whole
 * number of chunks (32 or 256 elements), so a chunk never straddles two
 * blocks; the block layouts are those of loader/quants.h (ggml's). Rows of
 * the float types whose length is not a multiple of 8 use wk_deq1 for the
 * tail.
 */
#ifndef WK_CUDA_COMMON_CUH
#define WK_CUDA_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <string.h>

#include "cuda/check.h"
#include "loader/quants.h"
#include "core/status.h"

static inline int wk_cdiv(int a, int b) { return (a + b - 1) / b; }
static inline size_t wk_al256(size_t x) { return (x + 255) & ~(size_t)255; }

// --- Q8_0, Q5_0, Q4_0 on the device -------------------------------------------

/* GGUF blocks of 32 elements: Q8_0 (f16 d, 32 int8), Q5_0 (f16 d, u32 qh,
 * 16 nibble bytes), Q4_0 (f16 d, 16 nibble bytes) — 34, 22, 18 bytes, so a
 * block's quants sit at 2-byte alignment and a chunk of 8 elements took 5-7
 * two-byte loads. On the device every run of four blocks is stored field by
 * field: the four scales (8 bytes), the four qh words (Q5_0: 16 bytes), the
 * four quant arrays — 136 / 88 / 72 bytes, as in the file — the last run of
 * a row padded with zero blocks. A chunk is then one 8-byte load of quants,
 * one 2-byte load of its scale (and one 4-byte load of its qh). The values
 * are the file's, untouched. */
__host__ __device__ constexpr bool wk_grouped(int type) {
    return type == GGML_TYPE_Q8_0 || type == GGML_TYPE_Q5_0 || type == GGML_TYPE_Q4_0;
}
__host__ __device__ constexpr int wk_grp_qh(int type) { return type == GGML_TYPE_Q5_0 ? 4 : 0; }   /* qh bytes a block */
__host__ __device__ constexpr int wk_grp_qs(int type) { return type == GGML_TYPE_Q8_0 ? 32 : 16; } /* quant bytes a block */
__host__ __device__ constexpr int wk_grp_bytes(int type) { return 4 * (2 + wk_grp_qh(type) + wk_grp_qs(type)); }

static inline size_t wk_grouped_row_bytes(int type, int64_t n) {
    return (size_t)wk_grp_bytes(type) * (size_t)((n / 32 + 3) / 4);
}

/* One row of n elements of a grouped type from the file's layout (src) to
 * the device's (dst, wk_grouped_row_bytes(type, n) bytes). */
static inline void wk_grouped_to_dev(int type, const uint8_t *src, uint8_t *dst, int64_t n) {
    const int qh = wk_grp_qh(type), qs = wk_grp_qs(type), bb = 2 + qh + qs;
    memset(dst, 0, wk_grouped_row_bytes(type, n));
    for (int64_t b = 0; b < n / 32; b++) {
        uint8_t *g = dst + wk_grp_bytes(type) * (b / 4);
        const int j = (int)(b % 4);
        memcpy(g + 2 * j, src + bb * b, 2);
        if (qh) memcpy(g + 8 + qh * j, src + bb * b + 2, qh);
        memcpy(g + 8 + 4 * qh + qs * j, src + bb * b + 2 + qh, qs);
    }
}

/* Chunk c (elements 8c..8c+7) of a device row of grouped type T: its
 * block's scale, qh word (Q5_0) and quant array. The chunk's 8 quant bytes
 * start at quants + 8 (c & 3) for Q8_0; for Q5_0 / Q4_0 the 8 bytes at
 * quants + 8 (c & 1) hold it in their low (chunks 0, 1 of a block) or high
 * (chunks 2, 3) nibbles. */
template <int T> __device__ __forceinline__ const uint8_t *wk_grp_of(const uint8_t *row, int c) {
    return row + wk_grp_bytes(T) * (c >> 4);
}
template <int T> __device__ __forceinline__ const __half *wk_grp_scale(const uint8_t *row, int c) {
    return reinterpret_cast<const __half *>(wk_grp_of<T>(row, c) + 2 * ((c >> 2) & 3));
}
template <int T> __device__ __forceinline__ uint32_t wk_grp_qh_word(const uint8_t *row, int c) {
    return *reinterpret_cast<const uint32_t *>(wk_grp_of<T>(row, c) + 8 + 4 * ((c >> 2) & 3));
}
template <int T> __device__ __forceinline__ const uint8_t *wk_grp_quants(const uint8_t *row, int c) {
    return wk_grp_of<T>(row, c) + 8 + 4 * wk_grp_qh(T) + wk_grp_qs(T) * ((c >> 2) & 3);
}

// --- dequantization -----------------------------------------------------------

__device__ __forceinline__ float wk_h2f(const uint8_t *p) {
    /* p may be only 2-byte aligned */
    return __half2float(*reinterpret_cast<const __half *>(p));
}

__device__ __forceinline__ float wk_bf2f(uint16_t v) { return __uint_as_float((uint32_t)v << 16); }

/* (float)q for 0 <= q < 2^23 without the (quarter-rate) int → float
 * conversion: q under the exponent of 2^23, minus 2^23 (and minus `bias`,
 * exact too for the small integers here). The same value as (float)q - bias. */
__device__ __forceinline__ float wk_u2f(uint32_t q, float bias = 0.0f) {
    return __uint_as_float(0x4B000000u | q) - (8388608.0f + bias);
}

__device__ __forceinline__ void wk_scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* v[0..7] = elements 8c .. 8c+7 of `row` (8 lanes of a warp take 8
 * consecutive chunks, so each load instruction touches one stretch of a row). */
template <int T> __device__ __forceinline__ void wk_deq8(const uint8_t *row, int c, float v[8]);

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_F32>(const uint8_t *row, int c, float v[8]) {
    const float4 *p = reinterpret_cast<const float4 *>(row) + 2 * c;
    float4 a = __ldg(p), b = __ldg(p + 1);
    v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w; v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_F16>(const uint8_t *row, int c, float v[8]) {
    uint4 u = __ldg(reinterpret_cast<const uint4 *>(row) + c);
    const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        float2 f = __half22float2(h[k]);
        v[2 * k] = f.x; v[2 * k + 1] = f.y;
    }
}

/* 8 bf16 values (16 bytes) as f32 */
__device__ __forceinline__ void wk_bf16x8_to_f32(uint4 u, float v[8]) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v[2 * k] = __uint_as_float(w[k] << 16);
        v[2 * k + 1] = __uint_as_float(w[k] & 0xFFFF0000u);
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_BF16>(const uint8_t *row, int c, float v[8]) {
    wk_bf16x8_to_f32(__ldg(reinterpret_cast<const uint4 *>(row) + c), v);
}

/* (Q8_0, Q5_0, Q4_0: the device layout above) */
template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q8_0>(const uint8_t *row, int c, float v[8]) {
    const float d = __half2float(*wk_grp_scale<GGML_TYPE_Q8_0>(row, c));
    const uint2 q = *reinterpret_cast<const uint2 *>(wk_grp_quants<GGML_TYPE_Q8_0>(row, c) + 8 * (c & 3));
#pragma unroll
    for (int i = 0; i < 4; i++) {
        v[i] = d * (float)(int8_t)(q.x >> (8 * i));
        v[4 + i] = d * (float)(int8_t)(q.y >> (8 * i));
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q4_0>(const uint8_t *row, int c, float v[8]) {
    const int q = c & 3, sh = 4 * (q >> 1);
    const float d = __half2float(*wk_grp_scale<GGML_TYPE_Q4_0>(row, c));
    const uint2 w = *reinterpret_cast<const uint2 *>(wk_grp_quants<GGML_TYPE_Q4_0>(row, c) + 8 * (q & 1));
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t u = (i < 2 ? w.x : w.y) >> (16 * (i & 1));
        v[2 * i] = d * (float)((int)((u >> sh) & 0xF) - 8);
        v[2 * i + 1] = d * (float)((int)((u >> (8 + sh)) & 0xF) - 8);
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q4_1>(const uint8_t *row, int c, float v[8]) {
    const uint8_t *b = row + 20 * (c >> 2);
    const int q = c & 3, sh = 4 * (q >> 1);
    const float d = wk_h2f(b), m = wk_h2f(b + 2);
    const uint32_t *qs = reinterpret_cast<const uint32_t *>(b + 4 + 8 * (q & 1));
#pragma unroll
    for (int i = 0; i < 2; i++) {
        uint32_t u = qs[i];
#pragma unroll
        for (int k = 0; k < 4; k++) v[4 * i + k] = __fmaf_rn(d, wk_u2f((u >> (8 * k + sh)) & 0xF), m);
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q5_0>(const uint8_t *row, int c, float v[8]) {
    const int q = c & 3, sh = 4 * (q >> 1), e0 = 8 * q;
    const float d = __half2float(*wk_grp_scale<GGML_TYPE_Q5_0>(row, c));
    const uint32_t qh = wk_grp_qh_word<GGML_TYPE_Q5_0>(row, c);
    const uint2 w = *reinterpret_cast<const uint2 *>(wk_grp_quants<GGML_TYPE_Q5_0>(row, c) + 8 * (q & 1));
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t u = (i < 2 ? w.x : w.y) >> (16 * (i & 1));
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const int e = e0 + 2 * i + k;
            const int x = (int)(((u >> (8 * k + sh)) & 0xF) | (((qh >> e) & 1) << 4));
            v[2 * i + k] = d * (float)(x - 16);
        }
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q5_1>(const uint8_t *row, int c, float v[8]) {
    const uint8_t *b = row + 24 * (c >> 2);
    const int q = c & 3, sh = 4 * (q >> 1), e0 = 8 * q;
    const float d = wk_h2f(b), m = wk_h2f(b + 2);
    const uint32_t qh = *reinterpret_cast<const uint32_t *>(b + 4);
    const uint32_t *qs = reinterpret_cast<const uint32_t *>(b + 8 + 8 * (q & 1));
#pragma unroll
    for (int i = 0; i < 2; i++) {
        uint32_t u = qs[i];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int e = e0 + 4 * i + k;
            const uint32_t x = ((u >> (8 * k + sh)) & 0xF) | (((qh >> e) & 1) << 4);
            v[4 * i + k] = __fmaf_rn(d, wk_u2f(x), m);
        }
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q4_K>(const uint8_t *row, int c, float v[8]) {
    const uint8_t *b = row + 144 * (c >> 5);
    const int e0 = 8 * (c & 31), s = e0 >> 5;
    const float d = wk_h2f(b), dmin = wk_h2f(b + 2);
    int sc, m;
    wk_scale_min_k4(s, b + 4, &sc, &m);
    const float d1 = d * (float)sc, m1 = dmin * (float)m;
    const uint2 u = *reinterpret_cast<const uint2 *>(b + 16 + 32 * (s >> 1) + (e0 & 31));
    const int sh = 4 * (s & 1);
    const uint32_t w[2] = {u.x, u.y};
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = __fmaf_rn(d1, wk_u2f((w[k >> 2] >> (8 * (k & 3) + sh)) & 0xF), -m1);
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q5_K>(const uint8_t *row, int c, float v[8]) {
    const uint8_t *b = row + 176 * (c >> 5);
    const int e0 = 8 * (c & 31), s = e0 >> 5;
    const float d = wk_h2f(b), dmin = wk_h2f(b + 2);
    int sc, m;
    wk_scale_min_k4(s, b + 4, &sc, &m);
    const float d1 = d * (float)sc, m1 = dmin * (float)m;
    const uint2 hq = *reinterpret_cast<const uint2 *>(b + 16 + (e0 & 31));
    const uint2 u = *reinterpret_cast<const uint2 *>(b + 48 + 32 * (s >> 1) + (e0 & 31));
    const int sh = 4 * (s & 1);
    const uint32_t w[2] = {u.x, u.y}, hw[2] = {hq.x, hq.y};
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const uint32_t lo = (w[k >> 2] >> (8 * (k & 3) + sh)) & 0xF;
        const uint32_t hb = (hw[k >> 2] >> (8 * (k & 3) + s)) & 1;
        v[k] = __fmaf_rn(d1, wk_u2f(lo | (hb << 4)), -m1);
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q6_K>(const uint8_t *row, int c, float v[8]) {
    const uint8_t *b = row + 210 * (c >> 5);
    const int e0 = 8 * (c & 31), half = e0 >> 7, k = (e0 >> 5) & 3, l0 = e0 & 31;
    const uint16_t *ql = reinterpret_cast<const uint16_t *>(b + 64 * half + 32 * (k & 1) + l0);
    const uint16_t *qh = reinterpret_cast<const uint16_t *>(b + 128 + 32 * half + l0);
    const float d = wk_h2f(b + 208) * (float)(reinterpret_cast<const int8_t *>(b + 192))[8 * half + 2 * k + (l0 >> 4)];
    const int lsh = 4 * (k >> 1), hsh = 2 * k;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t l2 = ql[i], h2 = qh[i];
#pragma unroll
        for (int t = 0; t < 2; t++) {
            const uint32_t q = ((l2 >> (8 * t + lsh)) & 0xF) | (((h2 >> (8 * t + hsh)) & 3) << 4);
            v[2 * i + t] = d * wk_u2f(q, 32.0f);
        }
    }
}

/* One element of a float-type row (the tail of rows whose length is not a
 * multiple of 8; quantized rows always are whole blocks). */
__device__ __forceinline__ float wk_deq1(int type, const uint8_t *row, int i) {
    switch (type) {
    case GGML_TYPE_F32: return reinterpret_cast<const float *>(row)[i];
    case GGML_TYPE_F16: return __half2float(reinterpret_cast<const __half *>(row)[i]);
    default: return wk_bf2f(reinterpret_cast<const uint16_t *>(row)[i]);
    }
}

// --- f16 chunks without a detour through f32 ---------------------------------------

/* For the types whose element is d * (integer) with |integer| <= 128 (Q8_0,
 * Q5_0, Q4_0), the product of two f16 values d and q is exact in f32 and
 * rounds once either way, so multiplying in f16 gives the very bits of
 * __float2half_rn(wk_deq8's value) — without the int → float conversions
 * (a quarter-rate instruction) and f32 → f16 packs. An integer 0..255 in the
 * low byte of a 16-bit half becomes the f16 1024 + byte under the exponent
 * 0x64 (1024 <= x < 2048 has a spacing of 1), so two elements take one byte
 * permute and one f16x2 subtract. */
__device__ __forceinline__ uint32_t wk_h2_bits(__half2 h) { return *reinterpret_cast<uint32_t *>(&h); }
__device__ __forceinline__ __half2 wk_bits_h2(uint32_t u) { return *reinterpret_cast<__half2 *>(&u); }

/* {d * (lo - off), d * (hi - off)} from v = (1024 + lo) | (1024 + hi) << 16 as f16 bits. */
__device__ __forceinline__ uint32_t wk_h2_scaled(uint32_t v, __half2 off, __half2 d) {
    return wk_h2_bits(__hmul2(__hsub2(wk_bits_h2(v), off), d));
}

/* Q8_0 chunk c (device layout) as f16: int8 q biased to 0..255 (xor 0x80), offset 1024 + 128. */
__device__ __forceinline__ uint4 wk_deq8_h_q8_0(const uint8_t *row, int c) {
    const __half2 d = __half2half2(*wk_grp_scale<GGML_TYPE_Q8_0>(row, c));
    const __half2 off = __float2half2_rn(1152.0f);
    const uint2 q = *reinterpret_cast<const uint2 *>(wk_grp_quants<GGML_TYPE_Q8_0>(row, c) + 8 * (c & 3));
    const uint32_t w0 = q.x ^ 0x80808080u, w1 = q.y ^ 0x80808080u;
    uint4 u;
    u.x = wk_h2_scaled(__byte_perm(w0, 0x64646464u, 0x4140), off, d);
    u.y = wk_h2_scaled(__byte_perm(w0, 0x64646464u, 0x4342), off, d);
    u.z = wk_h2_scaled(__byte_perm(w1, 0x64646464u, 0x4140), off, d);
    u.w = wk_h2_scaled(__byte_perm(w1, 0x64646464u, 0x4342), off, d);
    return u;
}

/* Q4_0 / Q5_0 chunk c as f16: the chunk's nibbles (low or high half of the
 * bytes), Q5_0's fifth bits moved to bit 4 of each half, offset 1024 + 8 / 16. */
template <bool Q5>
__device__ __forceinline__ uint4 wk_deq8_h_q4q5(const uint8_t *row, int c) {
    constexpr int T = Q5 ? GGML_TYPE_Q5_0 : GGML_TYPE_Q4_0;
    const int q = c & 3, sh = 4 * (q >> 1);
    const __half2 d = __half2half2(*wk_grp_scale<T>(row, c));
    const __half2 off = __float2half2_rn(Q5 ? 1040.0f : 1032.0f);
    const uint2 w = *reinterpret_cast<const uint2 *>(wk_grp_quants<T>(row, c) + 8 * (q & 1));
    const uint32_t w0 = (w.x >> sh) & 0x0F0F0F0Fu, w1 = (w.y >> sh) & 0x0F0F0F0Fu;
    const uint32_t hq = Q5 ? wk_grp_qh_word<T>(row, c) >> (8 * q) : 0u;
    uint32_t v[4] = {__byte_perm(w0, 0, 0x4140), __byte_perm(w0, 0, 0x4342), __byte_perm(w1, 0, 0x4140),
                     __byte_perm(w1, 0, 0x4342)};
    uint4 u;
    uint32_t *o = &u.x;
#pragma unroll
    for (int p = 0; p < 4; p++) {
        /* bits 2p, 2p+1 of hq to bits 4 and 20 */
        const uint32_t hp = Q5 ? (((hq >> (2 * p)) & 3u) * 0x80010u) & 0x00100010u : 0u;
        o[p] = wk_h2_scaled(v[p] | hp | 0x64006400u, off, d);
    }
    return u;
}

/* Runtime switch over the types: the statement is instantiated for each T_. */
#define WK_TYPE_SWITCH(type, ...)                                                          \
    switch (type) {                                                                        \
    case GGML_TYPE_F32:  { constexpr int T_ = GGML_TYPE_F32;  __VA_ARGS__; } break;        \
    case GGML_TYPE_F16:  { constexpr int T_ = GGML_TYPE_F16;  __VA_ARGS__; } break;        \
    case GGML_TYPE_BF16: { constexpr int T_ = GGML_TYPE_BF16; __VA_ARGS__; } break;        \
    case GGML_TYPE_Q4_0: { constexpr int T_ = GGML_TYPE_Q4_0; __VA_ARGS__; } break;        \
    case GGML_TYPE_Q4_1: { constexpr int T_ = GGML_TYPE_Q4_1; __VA_ARGS__; } break;        \
    case GGML_TYPE_Q5_0: { constexpr int T_ = GGML_TYPE_Q5_0; __VA_ARGS__; } break;        \
    case GGML_TYPE_Q5_1: { constexpr int T_ = GGML_TYPE_Q5_1; __VA_ARGS__; } break;        \
    case GGML_TYPE_Q8_0: { constexpr int T_ = GGML_TYPE_Q8_0; __VA_ARGS__; } break;        \
    case GGML_TYPE_Q4_K: { constexpr int T_ = GGML_TYPE_Q4_K; __VA_ARGS__; } break;        \
    case GGML_TYPE_Q5_K: { constexpr int T_ = GGML_TYPE_Q5_K; __VA_ARGS__; } break;        \
    case GGML_TYPE_Q6_K: { constexpr int T_ = GGML_TYPE_Q6_K; __VA_ARGS__; } break;        \
    default: break;                                                                        \
    }

static inline bool wk_cuda_type_ok(uint32_t t) {
    switch (t) {
    case GGML_TYPE_F32: case GGML_TYPE_F16: case GGML_TYPE_BF16: case GGML_TYPE_Q4_0:
    case GGML_TYPE_Q4_1: case GGML_TYPE_Q5_0: case GGML_TYPE_Q5_1: case GGML_TYPE_Q8_0:
    case GGML_TYPE_Q4_K: case GGML_TYPE_Q5_K: case GGML_TYPE_Q6_K: return true;
    default: return false;
    }
}

// --- reductions ---------------------------------------------------------------

struct wk_op_add {
    __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
struct wk_op_max {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/* Warp xor-tree over the 32 lanes (every lane gets the result). */
template <class Op>
__device__ __forceinline__ float wk_warp_reduce(float v, Op op) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float wk_warp_sum(float v) { return wk_warp_reduce(v, wk_op_add()); }
__device__ __forceinline__ float wk_warp_max(float v) { return wk_warp_reduce(v, wk_op_max()); }

/* Fixed-order block reduction over blockDim.x threads (a multiple of 32, at
 * most 1024): warp xor-trees, then warp 0 folds the warp results in warp
 * order (lanes past the warp count hold `identity`). Every thread gets the
 * result. sh: 32 floats of shared memory. The order depends only on
 * blockDim.x, never on the data or the grid. */
template <class Op>
__device__ __forceinline__ float wk_block_reduce(float v, float *sh, Op op, float identity) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = wk_warp_reduce(v, op);
    __syncthreads();
    if (lane == 0) sh[w] = v;
    __syncthreads();
    if (w == 0) {
        float s = wk_warp_reduce(lane < nw ? sh[lane] : identity, op);
        if (lane == 0) sh[0] = s;
    }
    __syncthreads();
    return sh[0];
}

__device__ __forceinline__ float wk_block_sum(float v, float *sh) { return wk_block_reduce(v, sh, wk_op_add(), 0.0f); }
__device__ __forceinline__ float wk_block_max(float v, float *sh) {
    return wk_block_reduce(v, sh, wk_op_max(), -INFINITY);
}

// --- programmatic dependent launch -----------------------------------------------

/* The kernels of steps of few rows are launched with programmatic stream
 * serialization (wk_launch_pdl, ops.cuh): a kernel may start while the one
 * before it runs. Each such kernel calls wk_dep_wait() before it reads
 * anything a kernel of the step writes (activations, K/V) and before any
 * write of its own — what it reads before is constant for the step: weights
 * (the GEMMs' L2 prefetch and first loads, norm weights, biases, rope rows)
 * and the step's metadata (copied in before the step's first kernel, which
 * every later one starts after) — and wk_dep_launch() as soon as it starts,
 * so the next kernels are resident and asking for their weights while this
 * one runs. wait returns only when the kernel before has completed and its
 * writes are visible, and every kernel waits, so the order of the chain is
 * that of plain launches whenever launch is called. Both are no-ops for a
 * kernel launched plainly. */
__device__ __forceinline__ void wk_dep_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void wk_dep_launch() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
/* Let the next kernel launch, then wait for the one before: the start of
 * every step kernel, after whatever constant data it reads first. */
__device__ __forceinline__ void wk_dep_enter() {
    wk_dep_launch();
    wk_dep_wait();
}

// --- weights ------------------------------------------------------------------

/* One weight matrix in VRAM: n_rows rows of n_in elements of `type`. */
struct wk_cu_mat {
    const uint8_t *w;
    size_t row_bytes;
    int type;
    int n_rows;
    int n_in;
};

#endif
