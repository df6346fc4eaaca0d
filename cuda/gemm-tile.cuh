/* gemm-tile.cuh — one block's tile of y = x · Wᵀ, the unit both the GEMM
 * kernels (gemm.cu) and the persistent decode kernel (branch `persistent`) run,
 * so a row gets the same bits from either.
 *
 * Reduction order of one output (fixed by n_in alone; see gemm.cu's top
 * comment): k cut into tiles of WK_GEMM_BK = 64; warp w of GEMM_WARPS takes
 * tiles w, w+8, w+16, ... in increasing order, four mma k16 steps a tile
 * into one f32 accumulator; the eight warp partials are added in warp order.
 * The tile shape (MT m16 × NT n8 per block, U k-tiles of a warp in flight)
 * never changes a row's result: an mma output element depends only on its
 * own A row and B column.
 *
 * F32 weights take the fp32 path instead: one warp per output column, lane l
 * summing k = l, l+32, ... in order, then the fixed xor tree.
 */
#ifndef WK_CUDA_GEMM_TILE_CUH
#define WK_CUDA_GEMM_TILE_CUH

#include "cuda/ops.cuh"

#define GEMM_WARPS 8
#define GEMM_LDS (WK_GEMM_BK + 8) /* smem row stride in halves: 144 bytes, conflict-free fragment loads */

/* Shared bytes gemm_mma_tile<MT, NT, U> needs (staging tiles, or the warp partials). */
__host__ __device__ constexpr size_t wk_gemm_tile_smem(int MT, int NT, int U) {
    return (size_t)GEMM_WARPS * U * (MT * 16 + NT * 8) * GEMM_LDS * 2 >
                   (size_t)GEMM_WARPS * MT * 16 * NT * 8 * 4
               ? (size_t)GEMM_WARPS * U * (MT * 16 + NT * 8) * GEMM_LDS * 2
               : (size_t)GEMM_WARPS * MT * 16 * NT * 8 * 4;
}

__device__ __forceinline__ void wk_mma16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* Elements 8c..8c+7 of a weight row as f16. No branch around the loads, so
 * the loads of all of a warp's tiles are in flight together (the backend
 * guarantees 16-byte aligned rows: see upload in backend-cuda.cu). */
template <int T>
__device__ __forceinline__ uint4 wk_load_w8(const uint8_t *row, int c) {
    if (T == GGML_TYPE_F16) return __ldg(reinterpret_cast<const uint4 *>(row) + c);
    float v[8];
    wk_deq8<T>(row, c, v);
    uint4 u;
    __half2 *h = reinterpret_cast<__half2 *>(&u);
#pragma unroll
    for (int e = 0; e < 4; e++) h[e] = __floats2half2_rn(v[2 * e], v[2 * e + 1]);
    return u;
}

/* A warp's weights for its k-tiles kt0, kt0 + 8, ... (U of them, fewer at
 * the end) and weight rows [n0, n0 + NT*8): lane l holds 16-byte chunks
 * (row (l + 32i) / 8, chunk (l + 32i) % 8) as f16. Rows past N and chunks
 * past K read a clamped address and are zeroed. */
template <int T, int NT, int U>
__device__ __forceinline__ void wk_load_w_tiles(uint4 (&rb)[U][NT * 2], const wk_cu_mat &W, int n0, int K, int kt0,
                                                int n_kt, int lane) {
    const int N = W.n_rows;
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int kt = kt0 + u * GEMM_WARPS;
        if (kt >= n_kt) break;
        const int k0 = kt * WK_GEMM_BK;
#pragma unroll
        for (int i = 0; i < NT * 2; i++) {
            const int idx = lane + 32 * i, r = idx >> 3, c = idx & 7;
            const int n = min(n0 + r, N - 1), kc = min(k0 / 8 + c, K / 8 - 1);
            rb[u][i] = wk_load_w8<T>(W.w + (size_t)n * W.row_bytes, kc);
            if (n0 + r >= N || k0 / 8 + c >= K / 8) rb[u][i] = make_uint4(0, 0, 0, 0);
        }
    }
}

/* The block's tile: rows [m0, m0 + MT*16) of x16 (ld lda, n_rows valid; the
 * others count as zero) times weight rows [n0, n0 + NT*8) of W (n_in = K).
 * Calls epi(m, n, v) once for every valid (row m, weight row n) with the
 * finished dot product. Every thread of the block (GEMM_WARPS warps) calls
 * it; smem: wk_gemm_tile_smem(MT, NT, U) bytes, free again on return.
 * pdl: launched as a programmatic dependent (see wk_dep_wait). */
template <int T, int MT, int NT, int U, class Epi>
__device__ __forceinline__ void gemm_mma_tile(const wk_cu_mat &W, int n0, const __half *x16, int lda, int n_rows,
                                              int m0, int K, uint8_t *smem, Epi epi, bool pdl = false) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int N = W.n_rows;
    constexpr int TILE = (MT * 16 + NT * 8) * GEMM_LDS; /* halves per k-tile buffer */
    __half *buf = reinterpret_cast<__half *>(smem) + warp * U * TILE;
    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

    const int n_kt = (K + WK_GEMM_BK - 1) / WK_GEMM_BK;
    const int g = lane >> 2, t = lane & 3;
    for (int kt0 = warp; kt0 < n_kt; kt0 += GEMM_WARPS * U) {
        uint4 ra[U][MT * 4], rb[U][NT * 2];
        /* rows past n_rows read a clamped address and are zeroed */
        auto load_a = [&]() {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int kt = kt0 + u * GEMM_WARPS;
                if (kt >= n_kt) break;
#pragma unroll
                for (int i = 0; i < MT * 4; i++) {
                    const int idx = lane + 32 * i, r = idx >> 3, c = idx & 7;
                    const int m = min(m0 + r, n_rows - 1);
                    ra[u][i] = *reinterpret_cast<const uint4 *>(x16 + (size_t)m * lda + kt * WK_GEMM_BK + 8 * c);
                    if (m0 + r >= n_rows) ra[u][i] = make_uint4(0, 0, 0, 0);
                }
            }
        };
        /* plain launch: the activations first, so their loads are in flight while the
         * weights dequantize; dependent launch: the first weights before waiting */
        if (!pdl) load_a();
        wk_load_w_tiles<T, NT, U>(rb, W, n0, K, kt0, n_kt, lane);
        if (pdl) {
            if (kt0 == warp) wk_dep_wait(); /* the first weights are in flight; now the previous kernel's output */
            load_a();
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (kt0 + u * GEMM_WARPS >= n_kt) break;
            __half *As = buf + u * TILE, *Bs = As + MT * 16 * GEMM_LDS;
#pragma unroll
            for (int i = 0; i < MT * 4; i++) {
                const int idx = lane + 32 * i, r = idx >> 3, c = idx & 7;
                *reinterpret_cast<uint4 *>(As + r * GEMM_LDS + 8 * c) = ra[u][i];
            }
#pragma unroll
            for (int i = 0; i < NT * 2; i++) {
                const int idx = lane + 32 * i, r = idx >> 3, c = idx & 7;
                *reinterpret_cast<uint4 *>(Bs + r * GEMM_LDS + 8 * c) = rb[u][i];
            }
        }
        __syncwarp();
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (kt0 + u * GEMM_WARPS >= n_kt) break;
            const uint32_t *A32 = reinterpret_cast<const uint32_t *>(buf + u * TILE);
            const uint32_t *B32 = A32 + MT * 16 * GEMM_LDS / 2;
#pragma unroll
            for (int kk = 0; kk < WK_GEMM_BK / 16; kk++) {
                const int kw = kk * 8; /* in 32-bit words */
                uint32_t b[NT][2];
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    b[j][0] = B32[(j * 8 + g) * (GEMM_LDS / 2) + kw + t];
                    b[j][1] = B32[(j * 8 + g) * (GEMM_LDS / 2) + kw + 4 + t];
                }
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    uint32_t a[4];
                    a[0] = A32[(i * 16 + g) * (GEMM_LDS / 2) + kw + t];
                    a[1] = A32[(i * 16 + g + 8) * (GEMM_LDS / 2) + kw + t];
                    a[2] = A32[(i * 16 + g) * (GEMM_LDS / 2) + kw + 4 + t];
                    a[3] = A32[(i * 16 + g + 8) * (GEMM_LDS / 2) + kw + 4 + t];
#pragma unroll
                    for (int j = 0; j < NT; j++) wk_mma16816(acc[i][j], a, b[j]);
                }
            }
        }
        __syncwarp();
    }

    /* the warp partials, added in warp order */
    if (pdl) {
        wk_dep_wait(); /* warps without a k-tile have not waited yet */
        wk_dep_launch();
    }
    __syncthreads();
    float *part = reinterpret_cast<float *>(smem); /* (GEMM_WARPS, MT*16, NT*8) */
    constexpr int TW = NT * 8, TM = MT * 16;
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            float *pp = part + (size_t)warp * TM * TW;
            const int r = i * 16 + g, c = j * 8 + 2 * t;
            pp[r * TW + c] = acc[i][j][0];
            pp[r * TW + c + 1] = acc[i][j][1];
            pp[(r + 8) * TW + c] = acc[i][j][2];
            pp[(r + 8) * TW + c + 1] = acc[i][j][3];
        }
    __syncthreads();
    for (int o = threadIdx.x; o < TM * TW; o += GEMM_WARPS * 32) {
        const int r = o / TW, c = o % TW, m = m0 + r, n = n0 + c;
        if (m >= n_rows || n >= N) continue;
        float v = part[o];
#pragma unroll
        for (int w = 1; w < GEMM_WARPS; w++) v += part[w * TM * TW + o];
        epi(m, n, v);
    }
    __syncthreads(); /* part is the next tile's staging buffer */
}

/* The tile of steps of at most 8 rows (decode): the same per-output
 * order as gemm_mma_tile<T, 1, NT, U> — warp w takes k-tiles w, w+8, ...,
 * four k16 mma steps a tile into one accumulator, warp partials added in
 * warp order — with the A fragments read straight from x16 (rows 8..15 of
 * the m16 tile are zeros: never loaded) instead of staged, so a warp spends
 * its instructions on the weights. Same mma inputs, same bits. smem:
 * wk_skinny_tile_smem(NT, U) bytes. */
__host__ __device__ constexpr size_t wk_skinny_tile_smem(int NT, int U) {
    return (size_t)GEMM_WARPS * U * NT * 8 * GEMM_LDS * 2 > (size_t)GEMM_WARPS * 8 * NT * 8 * 4
               ? (size_t)GEMM_WARPS * U * NT * 8 * GEMM_LDS * 2
               : (size_t)GEMM_WARPS * 8 * NT * 8 * 4;
}

template <int T, int NT, int U, class Epi>
__device__ __forceinline__ void gemm_skinny_tile(const wk_cu_mat &W, int n0, const __half *x16, int lda, int n_rows,
                                                 int K, uint8_t *smem, Epi epi) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int N = W.n_rows;
    constexpr int TILE = NT * 8 * GEMM_LDS; /* halves per k-tile buffer */
    __half *buf = reinterpret_cast<__half *>(smem) + warp * U * TILE;
    float acc[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.0f;
    const int n_kt = (K + WK_GEMM_BK - 1) / WK_GEMM_BK;
    const int g = lane >> 2, t = lane & 3;
    /* this lane's A row: g (zeros past n_rows) */
    const uint32_t *arow = reinterpret_cast<const uint32_t *>(x16 + (size_t)min(g, n_rows - 1) * lda);
    const bool arow_ok = g < n_rows;
    for (int kt0 = warp; kt0 < n_kt; kt0 += GEMM_WARPS * U) {
        uint4 rb[U][NT * 2];
        wk_load_w_tiles<T, NT, U>(rb, W, n0, K, kt0, n_kt, lane);
        if (kt0 == warp) wk_dep_wait(); /* the first weights are in flight; now the previous kernel's output */
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (kt0 + u * GEMM_WARPS >= n_kt) break;
            __half *Bs = buf + u * TILE;
#pragma unroll
            for (int i = 0; i < NT * 2; i++) {
                const int idx = lane + 32 * i, r = idx >> 3, c = idx & 7;
                *reinterpret_cast<uint4 *>(Bs + r * GEMM_LDS + 8 * c) = rb[u][i];
            }
        }
        __syncwarp();
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int kt = kt0 + u * GEMM_WARPS;
            if (kt >= n_kt) break;
            const uint32_t *B32 = reinterpret_cast<const uint32_t *>(buf + u * TILE);
#pragma unroll
            for (int kk = 0; kk < WK_GEMM_BK / 16; kk++) {
                const int kw = kk * 8; /* in 32-bit words */
                const int ka = kt * (WK_GEMM_BK / 2) + kw;
                uint32_t a[4];
                a[0] = arow_ok ? arow[ka + t] : 0u;
                a[1] = 0u;
                a[2] = arow_ok ? arow[ka + 4 + t] : 0u;
                a[3] = 0u;
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    const uint32_t b[2] = {B32[(j * 8 + g) * (GEMM_LDS / 2) + kw + t],
                                           B32[(j * 8 + g) * (GEMM_LDS / 2) + kw + 4 + t]};
                    wk_mma16816(acc[j], a, b);
                }
            }
        }
        __syncwarp();
    }

    /* the warp partials (rows 0..7 only), added in warp order */
    wk_dep_wait(); /* warps without a k-tile have not waited yet */
    wk_dep_launch();
    __syncthreads();
    float *part = reinterpret_cast<float *>(smem); /* (GEMM_WARPS, 8, NT*8) */
    constexpr int TW = NT * 8;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        float *pp = part + (size_t)warp * 8 * TW;
        pp[g * TW + j * 8 + 2 * t] = acc[j][0];
        pp[g * TW + j * 8 + 2 * t + 1] = acc[j][1];
    }
    __syncthreads();
    for (int o = threadIdx.x; o < n_rows * TW; o += GEMM_WARPS * 32) {
        const int r = o / TW, c = o % TW, n = n0 + c;
        if (n >= N) continue;
        float v = part[o];
#pragma unroll
        for (int w = 1; w < GEMM_WARPS; w++) v += part[w * 8 * TW + o];
        epi(r, n, v);
    }
    __syncthreads(); /* part is the next tile's staging buffer */
}

/* F32 weights: warp w of the block takes weight row n0 + w (8 a block) for
 * rows [m_lo, m_hi) of x32 (ld lda); fp32 throughout. */
template <class Epi>
__device__ __forceinline__ void gemm_f32_cols(const wk_cu_mat &W, int n0, const float *x32, int lda, int m_lo,
                                              int m_hi, int K, Epi epi) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n = n0 + warp;
    wk_dep_wait();
    wk_dep_launch();
    if (n >= W.n_rows) return;
    const float *w = reinterpret_cast<const float *>(W.w + (size_t)n * W.row_bytes);
    for (int m = m_lo; m < m_hi; m++) {
        const float *x = x32 + (size_t)m * lda;
        float s = 0.0f;
        for (int k = lane; k < K; k += 32) s = fmaf(w[k], x[k], s);
        s = wk_warp_sum(s);
        if (lane == 0) epi(m, n, s);
    }
}

#endif
