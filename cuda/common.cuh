/* common.cuh — shared by the CUDA backend's .cu files: error checks, the
 * in-kernel dequantizers of every supported weight type, warp reductions and
 * the argument blocks of the kernels (kernels.cu) that backend-cuda.cu
 * launches.
 *
 * Dequantization works on runs of consecutive elements of one row: wk_deq32
 * on "units" of 32 (element 32j .. 32j+31; prefill's f16 tiles and the
 * embedding) and wk_deq8 on "chunks" of 8 (decode matrix-vector products,
 * where 32 lanes read 32 consecutive chunks). Every quantized type's block is
 * a whole number of units (32 or 256 elements), so neither straddles two
 * blocks; the block layouts are those of loader/quants.h (ggml's).
 */
#ifndef WK_CUDA_COMMON_CUH
#define WK_CUDA_COMMON_CUH

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "loader/quants.h"
#include "core/status.h"

// --- error checks -----------------------------------------------------------

/* Recoverable: fill err with the call, file:line and CUDA's message, then
 * return WK_STATUS_CUDA from the calling function (which returns wk_status
 * and has `err`, `err_len` in scope). */
#define CUDA_TRY(x)                                                                        \
    do {                                                                                   \
        cudaError_t e_ = (x);                                                              \
        if (e_ != cudaSuccess) {                                                           \
            (void)cudaGetLastError();                                                      \
            return wk_errf(err, err_len, WK_STATUS_CUDA, "%s: %s failed at %s:%d: %s",      \
                           __func__, #x, __FILE__, __LINE__, cudaGetErrorString(e_));      \
        }                                                                                  \
    } while (0)

// --- sizes ------------------------------------------------------------------

#define WK_CU_WARPS 8           /* warps per block of the matrix-vector kernel */
#define WK_CU_ATT_CHUNK 256     /* keys per block of decode attention */
#define WK_CU_ATT_THREADS 128
#define WK_CU_MAX_HEAD_DIM 256

static inline int wk_cdiv(int a, int b) { return (a + b - 1) / b; }

// --- dequantization -----------------------------------------------------------

__device__ __forceinline__ float wk_h2f(const uint8_t *p) {
    /* p may be only 2-byte aligned */
    return __half2float(*reinterpret_cast<const __half *>(p));
}

__device__ __forceinline__ float wk_bf2f(uint16_t v) { return __uint_as_float((uint32_t)v << 16); }

__device__ __forceinline__ uint32_t wk_ld_u32_a2(const uint8_t *p) {
    /* little-endian u32 at a 2-byte aligned address */
    const uint16_t *h = reinterpret_cast<const uint16_t *>(p);
    return (uint32_t)h[0] | ((uint32_t)h[1] << 16);
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

/* Bytes per 32-element unit for the block-quantized types, and how units sit
 * in blocks. */
template <int T> struct wk_tt;
template <> struct wk_tt<GGML_TYPE_F32>  { enum { BLK = 1,   BYTES = 4 }; };
template <> struct wk_tt<GGML_TYPE_F16>  { enum { BLK = 1,   BYTES = 2 }; };
template <> struct wk_tt<GGML_TYPE_BF16> { enum { BLK = 1,   BYTES = 2 }; };
template <> struct wk_tt<GGML_TYPE_Q4_0> { enum { BLK = 32,  BYTES = 18 }; };
template <> struct wk_tt<GGML_TYPE_Q4_1> { enum { BLK = 32,  BYTES = 20 }; };
template <> struct wk_tt<GGML_TYPE_Q5_0> { enum { BLK = 32,  BYTES = 22 }; };
template <> struct wk_tt<GGML_TYPE_Q5_1> { enum { BLK = 32,  BYTES = 24 }; };
template <> struct wk_tt<GGML_TYPE_Q8_0> { enum { BLK = 32,  BYTES = 34 }; };
template <> struct wk_tt<GGML_TYPE_Q4_K> { enum { BLK = 256, BYTES = 144 }; };
template <> struct wk_tt<GGML_TYPE_Q5_K> { enum { BLK = 256, BYTES = 176 }; };
template <> struct wk_tt<GGML_TYPE_Q6_K> { enum { BLK = 256, BYTES = 210 }; };

/* v[0..31] = elements 32j .. 32j+31 of `row` (which starts at a block
 * boundary). For the float types the row must hold 32(j+1) elements. */
template <int T> __device__ __forceinline__ void wk_deq32(const uint8_t *row, int j, float v[32]);

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_F32>(const uint8_t *row, int j, float v[32]) {
    const float4 *p = reinterpret_cast<const float4 *>(row) + 8 * j;
#pragma unroll
    for (int i = 0; i < 8; i++) {
        float4 f = __ldg(p + i);
        v[4 * i] = f.x; v[4 * i + 1] = f.y; v[4 * i + 2] = f.z; v[4 * i + 3] = f.w;
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_F16>(const uint8_t *row, int j, float v[32]) {
    const uint4 *p = reinterpret_cast<const uint4 *>(row) + 4 * j;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint4 u = __ldg(p + i);
        const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 f = __half22float2(h[k]);
            v[8 * i + 2 * k] = f.x; v[8 * i + 2 * k + 1] = f.y;
        }
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_BF16>(const uint8_t *row, int j, float v[32]) {
    const uint4 *p = reinterpret_cast<const uint4 *>(row) + 4 * j;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint4 u = __ldg(p + i);
        uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            v[8 * i + 2 * k] = __uint_as_float(w[k] << 16);
            v[8 * i + 2 * k + 1] = __uint_as_float(w[k] & 0xFFFF0000u);
        }
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_Q4_0>(const uint8_t *row, int j, float v[32]) {
    const uint8_t *b = row + 18 * j;
    float d = wk_h2f(b);
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b + 2);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        uint16_t q = qs[i];
        v[2 * i] = d * (float)((int)(q & 0xF) - 8);
        v[2 * i + 1] = d * (float)((int)((q >> 8) & 0xF) - 8);
        v[2 * i + 16] = d * (float)((int)((q >> 4) & 0xF) - 8);
        v[2 * i + 17] = d * (float)((int)(q >> 12) - 8);
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_Q4_1>(const uint8_t *row, int j, float v[32]) {
    const uint8_t *b = row + 20 * j;
    float d = wk_h2f(b), m = wk_h2f(b + 2);
    const uint32_t *qs = reinterpret_cast<const uint32_t *>(b + 4);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint32_t q = qs[i];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            uint32_t byte = (q >> (8 * k)) & 0xFF;
            v[4 * i + k] = d * (float)(byte & 0xF) + m;
            v[4 * i + k + 16] = d * (float)(byte >> 4) + m;
        }
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_Q5_0>(const uint8_t *row, int j, float v[32]) {
    const uint8_t *b = row + 22 * j;
    float d = wk_h2f(b);
    uint32_t qh = wk_ld_u32_a2(b + 2);
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b + 6);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        uint16_t q = qs[i];
#pragma unroll
        for (int k = 0; k < 2; k++) {
            int e = 2 * i + k;
            uint32_t byte = (q >> (8 * k)) & 0xFF;
            int lo = (int)((byte & 0xF) | (((qh >> e) & 1) << 4));
            int hi = (int)((byte >> 4) | (((qh >> (e + 16)) & 1) << 4));
            v[e] = d * (float)(lo - 16);
            v[e + 16] = d * (float)(hi - 16);
        }
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_Q5_1>(const uint8_t *row, int j, float v[32]) {
    const uint8_t *b = row + 24 * j;
    float d = wk_h2f(b), m = wk_h2f(b + 2);
    uint32_t qh = *reinterpret_cast<const uint32_t *>(b + 4);
    const uint32_t *qs = reinterpret_cast<const uint32_t *>(b + 8);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint32_t q = qs[i];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            int e = 4 * i + k;
            uint32_t byte = (q >> (8 * k)) & 0xFF;
            uint32_t lo = (byte & 0xF) | (((qh >> e) & 1) << 4);
            uint32_t hi = (byte >> 4) | (((qh >> (e + 16)) & 1) << 4);
            v[e] = d * (float)lo + m;
            v[e + 16] = d * (float)hi + m;
        }
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_Q8_0>(const uint8_t *row, int j, float v[32]) {
    const uint8_t *b = row + 34 * j;
    float d = wk_h2f(b);
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b + 2);
#pragma unroll
    for (int i = 0; i < 16; i++) {
        uint16_t q = qs[i];
        v[2 * i] = d * (float)(int8_t)(q & 0xFF);
        v[2 * i + 1] = d * (float)(int8_t)(q >> 8);
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_Q4_K>(const uint8_t *row, int j, float v[32]) {
    const uint8_t *b = row + 144 * (j >> 3);
    int s = j & 7;
    float d = wk_h2f(b), dmin = wk_h2f(b + 2);
    int sc, m;
    wk_scale_min_k4(s, b + 4, &sc, &m);
    float d1 = d * (float)sc, m1 = dmin * (float)m;
    const uint4 *qs = reinterpret_cast<const uint4 *>(b + 16 + 32 * (s >> 1));
    int sh = 4 * (s & 1);
#pragma unroll
    for (int i = 0; i < 2; i++) {
        uint4 u = qs[i];
        uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int k = 0; k < 16; k++) {
            uint32_t byte = (w[k >> 2] >> (8 * (k & 3))) & 0xFF;
            v[16 * i + k] = d1 * (float)((byte >> sh) & 0xF) - m1;
        }
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_Q5_K>(const uint8_t *row, int j, float v[32]) {
    const uint8_t *b = row + 176 * (j >> 3);
    int s = j & 7;
    float d = wk_h2f(b), dmin = wk_h2f(b + 2);
    int sc, m;
    wk_scale_min_k4(s, b + 4, &sc, &m);
    float d1 = d * (float)sc, m1 = dmin * (float)m;
    const uint4 *qh = reinterpret_cast<const uint4 *>(b + 16);
    const uint4 *qs = reinterpret_cast<const uint4 *>(b + 48 + 32 * (s >> 1));
    int sh = 4 * (s & 1);
#pragma unroll
    for (int i = 0; i < 2; i++) {
        uint4 u = qs[i], h = qh[i];
        uint32_t w[4] = {u.x, u.y, u.z, u.w};
        uint32_t hw[4] = {h.x, h.y, h.z, h.w};
#pragma unroll
        for (int k = 0; k < 16; k++) {
            uint32_t byte = (w[k >> 2] >> (8 * (k & 3))) & 0xFF;
            uint32_t hb = (hw[k >> 2] >> (8 * (k & 3))) & 0xFF;
            uint32_t q = ((byte >> sh) & 0xF) | (((hb >> s) & 1) << 4);
            v[16 * i + k] = d1 * (float)q - m1;
        }
    }
}

template <> __device__ __forceinline__ void wk_deq32<GGML_TYPE_Q6_K>(const uint8_t *row, int j, float v[32]) {
    const uint8_t *b = row + 210 * (j >> 3);
    int s = j & 7;
    int half = s >> 2, k = s & 3;
    const uint8_t *ql = b + 64 * half + 32 * (k & 1);
    const uint8_t *qh = b + 128 + 32 * half;
    const int8_t *sc = reinterpret_cast<const int8_t *>(b + 192) + 8 * half + 2 * k;
    float d = wk_h2f(b + 208);
    int lsh = 4 * (k >> 1), hsh = 2 * k;
    float d0 = d * (float)sc[0], d1 = d * (float)sc[1];
    /* ql, qh: 2-byte aligned at least (block base is even); read as u16 */
    const uint16_t *ql16 = reinterpret_cast<const uint16_t *>(ql);
    const uint16_t *qh16 = reinterpret_cast<const uint16_t *>(qh);
#pragma unroll
    for (int i = 0; i < 16; i++) {
        uint32_t l2 = ql16[i], h2 = qh16[i];
#pragma unroll
        for (int t = 0; t < 2; t++) {
            int l = 2 * i + t;
            uint32_t lb = (l2 >> (8 * t)) & 0xFF, hb = (h2 >> (8 * t)) & 0xFF;
            int q = (int)(((lb >> lsh) & 0xF) | (((hb >> hsh) & 3) << 4)) - 32;
            v[l] = (l < 16 ? d0 : d1) * (float)q;
        }
    }
}

/* v[0..7] = elements 8c .. 8c+7 of `row` (the decode path: the 32 lanes of a
 * warp take 32 consecutive 8-element chunks, so each load instruction of the
 * warp touches one contiguous stretch of the row). */
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

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_BF16>(const uint8_t *row, int c, float v[8]) {
    uint4 u = __ldg(reinterpret_cast<const uint4 *>(row) + c);
    uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v[2 * k] = __uint_as_float(w[k] << 16);
        v[2 * k + 1] = __uint_as_float(w[k] & 0xFFFF0000u);
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q8_0>(const uint8_t *row, int c, float v[8]) {
    const uint8_t *b = row + 34 * (c >> 2);
    const float d = wk_h2f(b);
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b + 2 + 8 * (c & 3));
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint16_t q = qs[i];
        v[2 * i] = d * (float)(int8_t)(q & 0xFF);
        v[2 * i + 1] = d * (float)(int8_t)(q >> 8);
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q4_0>(const uint8_t *row, int c, float v[8]) {
    const uint8_t *b = row + 18 * (c >> 2);
    const int q = c & 3, sh = 4 * (q >> 1);
    const float d = wk_h2f(b);
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b + 2 + 8 * (q & 1));
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint32_t u = qs[i];
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
        for (int k = 0; k < 4; k++) v[4 * i + k] = d * (float)((u >> (8 * k + sh)) & 0xF) + m;
    }
}

template <> __device__ __forceinline__ void wk_deq8<GGML_TYPE_Q5_0>(const uint8_t *row, int c, float v[8]) {
    const uint8_t *b = row + 22 * (c >> 2);
    const int q = c & 3, sh = 4 * (q >> 1), e0 = 8 * q;
    const float d = wk_h2f(b);
    const uint32_t qh = wk_ld_u32_a2(b + 2);
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b + 6 + 8 * (q & 1));
#pragma unroll
    for (int i = 0; i < 4; i++) {
        uint32_t u = qs[i];
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
            v[4 * i + k] = d * (float)x + m;
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
    for (int k = 0; k < 8; k++) v[k] = d1 * (float)((w[k >> 2] >> (8 * (k & 3) + sh)) & 0xF) - m1;
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
        v[k] = d1 * (float)(lo | (hb << 4)) - m1;
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
            const int q = (int)(((l2 >> (8 * t + lsh)) & 0xF) | (((h2 >> (8 * t + hsh)) & 3) << 4)) - 32;
            v[2 * i + t] = d * (float)q;
        }
    }
}

/* dot(elements 8c .. 8c+7 of `row`, x[0..7]) with the block scale applied
 * once per chunk instead of per element (fewer instructions in the decode
 * matrix-vector products, which issue-bound more than bandwidth-bound at
 * these sizes). The float types and the default fall back to wk_deq8. */
template <int T> __device__ __forceinline__ float wk_dot8(const uint8_t *row, int c, const float x[8]) {
    float v[8];
    wk_deq8<T>(row, c, v);
    float s = 0.0f;
#pragma unroll
    for (int e = 0; e < 8; e++) s = fmaf(v[e], x[e], s);
    return s;
}

template <> __device__ __forceinline__ float wk_dot8<GGML_TYPE_Q8_0>(const uint8_t *row, int c, const float x[8]) {
    const uint8_t *b = row + 34 * (c >> 2);
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b + 2 + 8 * (c & 3));
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t q = qs[i];
        s = fmaf((float)(int8_t)(q & 0xFF), x[2 * i], s);
        s = fmaf((float)(int8_t)(q >> 8), x[2 * i + 1], s);
    }
    return wk_h2f(b) * s;
}

template <> __device__ __forceinline__ float wk_dot8<GGML_TYPE_Q4_0>(const uint8_t *row, int c, const float x[8]) {
    const uint8_t *b = row + 18 * (c >> 2);
    const int q = c & 3, sh = 4 * (q >> 1);
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b + 2 + 8 * (q & 1));
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t u = qs[i];
        s = fmaf((float)((int)((u >> sh) & 0xF) - 8), x[2 * i], s);
        s = fmaf((float)((int)((u >> (8 + sh)) & 0xF) - 8), x[2 * i + 1], s);
    }
    return wk_h2f(b) * s;
}

template <> __device__ __forceinline__ float wk_dot8<GGML_TYPE_Q5_0>(const uint8_t *row, int c, const float x[8]) {
    const uint8_t *b = row + 22 * (c >> 2);
    const int q = c & 3, sh = 4 * (q >> 1);
    const uint32_t qh = wk_ld_u32_a2(b + 2) >> (8 * q); /* bits of elements 8q .. 8q+7 at 0..7 */
    const uint16_t *qs = reinterpret_cast<const uint16_t *>(b + 6 + 8 * (q & 1));
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t u = qs[i];
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const int e = 2 * i + k;
            const int xq = (int)(((u >> (8 * k + sh)) & 0xF) | (((qh >> e) & 1) << 4));
            s = fmaf((float)(xq - 16), x[e], s);
        }
    }
    return wk_h2f(b) * s;
}

template <> __device__ __forceinline__ float wk_dot8<GGML_TYPE_Q4_1>(const uint8_t *row, int c, const float x[8]) {
    const uint8_t *b = row + 20 * (c >> 2);
    const int q = c & 3, sh = 4 * (q >> 1);
    const uint32_t *qs = reinterpret_cast<const uint32_t *>(b + 4 + 8 * (q & 1));
    float s = 0.0f, sx = 0.0f;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const uint32_t u = qs[i];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            s = fmaf((float)((u >> (8 * k + sh)) & 0xF), x[4 * i + k], s);
            sx += x[4 * i + k];
        }
    }
    return wk_h2f(b) * s + wk_h2f(b + 2) * sx;
}

template <> __device__ __forceinline__ float wk_dot8<GGML_TYPE_Q5_1>(const uint8_t *row, int c, const float x[8]) {
    const uint8_t *b = row + 24 * (c >> 2);
    const int q = c & 3, sh = 4 * (q >> 1);
    const uint32_t qh = *reinterpret_cast<const uint32_t *>(b + 4) >> (8 * q);
    const uint32_t *qs = reinterpret_cast<const uint32_t *>(b + 8 + 8 * (q & 1));
    float s = 0.0f, sx = 0.0f;
#pragma unroll
    for (int i = 0; i < 2; i++) {
        const uint32_t u = qs[i];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int e = 4 * i + k;
            const uint32_t xq = ((u >> (8 * k + sh)) & 0xF) | (((qh >> e) & 1) << 4);
            s = fmaf((float)xq, x[e], s);
            sx += x[e];
        }
    }
    return wk_h2f(b) * s + wk_h2f(b + 2) * sx;
}

template <> __device__ __forceinline__ float wk_dot8<GGML_TYPE_Q4_K>(const uint8_t *row, int c, const float x[8]) {
    const uint8_t *b = row + 144 * (c >> 5);
    const int e0 = 8 * (c & 31), sb = e0 >> 5;
    int sc, m;
    wk_scale_min_k4(sb, b + 4, &sc, &m);
    const uint2 u = *reinterpret_cast<const uint2 *>(b + 16 + 32 * (sb >> 1) + (e0 & 31));
    const int sh = 4 * (sb & 1);
    const uint32_t w[2] = {u.x, u.y};
    float s = 0.0f, sx = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        s = fmaf((float)((w[k >> 2] >> (8 * (k & 3) + sh)) & 0xF), x[k], s);
        sx += x[k];
    }
    return wk_h2f(b) * (float)sc * s - wk_h2f(b + 2) * (float)m * sx;
}

template <> __device__ __forceinline__ float wk_dot8<GGML_TYPE_Q5_K>(const uint8_t *row, int c, const float x[8]) {
    const uint8_t *b = row + 176 * (c >> 5);
    const int e0 = 8 * (c & 31), sb = e0 >> 5;
    int sc, m;
    wk_scale_min_k4(sb, b + 4, &sc, &m);
    const uint2 hq = *reinterpret_cast<const uint2 *>(b + 16 + (e0 & 31));
    const uint2 u = *reinterpret_cast<const uint2 *>(b + 48 + 32 * (sb >> 1) + (e0 & 31));
    const int sh = 4 * (sb & 1);
    const uint32_t w[2] = {u.x, u.y}, hw[2] = {hq.x, hq.y};
    float s = 0.0f, sx = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++) {
        const uint32_t lo = (w[k >> 2] >> (8 * (k & 3) + sh)) & 0xF;
        const uint32_t hb = (hw[k >> 2] >> (8 * (k & 3) + sb)) & 1;
        s = fmaf((float)(lo | (hb << 4)), x[k], s);
        sx += x[k];
    }
    return wk_h2f(b) * (float)sc * s - wk_h2f(b + 2) * (float)m * sx;
}

template <> __device__ __forceinline__ float wk_dot8<GGML_TYPE_Q6_K>(const uint8_t *row, int c, const float x[8]) {
    const uint8_t *b = row + 210 * (c >> 5);
    const int e0 = 8 * (c & 31), half = e0 >> 7, k = (e0 >> 5) & 3, l0 = e0 & 31;
    const uint16_t *ql = reinterpret_cast<const uint16_t *>(b + 64 * half + 32 * (k & 1) + l0);
    const uint16_t *qh = reinterpret_cast<const uint16_t *>(b + 128 + 32 * half + l0);
    const int lsh = 4 * (k >> 1), hsh = 2 * k;
    float s = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t l2 = ql[i], h2 = qh[i];
#pragma unroll
        for (int t = 0; t < 2; t++) {
            const int q = (int)(((l2 >> (8 * t + lsh)) & 0xF) | (((h2 >> (8 * t + hsh)) & 3) << 4)) - 32;
            s = fmaf((float)q, x[2 * i + t], s);
        }
    }
    return wk_h2f(b + 208) * (float)(reinterpret_cast<const int8_t *>(b + 192))[8 * half + 2 * k + (l0 >> 4)] * s;
}

/* One element of a float-type row (the path for rows whose length is not a
 * multiple of 32; quantized rows always are). */
__device__ __forceinline__ float wk_deq1(int type, const uint8_t *row, int i) {
    switch (type) {
    case GGML_TYPE_F32: return reinterpret_cast<const float *>(row)[i];
    case GGML_TYPE_F16: return __half2float(reinterpret_cast<const __half *>(row)[i]);
    default: return wk_bf2f(reinterpret_cast<const uint16_t *>(row)[i]);
    }
}

/* Runtime switch over the types: F(T) is instantiated for each. */
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

__device__ __forceinline__ float wk_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float wk_warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// --- kernel arguments -----------------------------------------------------------

/* One weight matrix in VRAM: n_rows rows of n_in elements of `type`. */
struct wk_cu_mat {
    const uint8_t *w;
    size_t row_bytes;
    int type;
    int n_rows;
};

enum wk_mv_in { WK_IN_PLAIN = 0, WK_IN_NORM = 1 };
enum wk_mv_out { WK_OUT_STORE = 0, WK_OUT_ADD = 1, WK_OUT_SWIGLU = 2, WK_OUT_QKV = 3 };

/* The decode matrix-vector kernel: y = W · in, with the input optionally
 * rms-normed (IN_NORM), and an epilogue chosen by out_mode. A work unit is
 * two rows (a rope pair for Q/K; gate row r with up row r for SWIGLU). */
struct wk_mv_args {
    int n_in;
    int in_mode;
    const float *in;        /* (n_in) f32, 16-byte aligned */
    const float *norm_w;    /* (n_in) f32; NORM */
    float eps;
    int wpu;                /* warps per unit (set by the launcher) */
    int early;              /* L1 look-ahead mask (set by the launcher; kernels.cu g_early) */
    const int *d_pos;       /* device: position of the token (decode) */
    int out_mode;
    int n_units;            /* warp work items */
    struct wk_cu_mat m[3];
    const float *bias[3];   /* (m[i].n_rows) f32 or NULL */
    float *y;               /* STORE / ADD / SWIGLU: (rows) f32; QKV: q (n_head*head_dim) */
    /* QKV */
    int n_head, n_head_kv, head_dim, rope_dim, rope_neox;
    const float2 *rope_cs;     /* (n_ctx, rope_dim/2) {cos, sin} */
    __half *k_cache, *v_cache; /* this layer's (n_ctx, n_head_kv*head_dim) f16 */
};

#endif
