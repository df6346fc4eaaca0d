/* dot.c — the CPU backend's fp32 dot products and matmul tile over rows of
 * any supported weight type, dequantized on the fly (moved here from the
 * loader: they are compute, not file format). */
#include "cpu/dot.h"

#include <string.h>

#include "core/status.h"
#include "loader/quants-inl.h"

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
