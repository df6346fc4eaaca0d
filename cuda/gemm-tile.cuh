/* gemm-tile.cuh — one block's tile of y = x · Wᵀ, the unit of the GEMM
 * kernels (gemm.cu), so every row count gets a row's bits the same way.
 *
 * Reduction order of one output (fixed by n_in alone; see gemm.cu's top
 * comment): k cut into tiles of WK_GEMM_BK = 64; warp w of GEMM_WARPS takes
 * tiles w, w+8, w+16, ... in increasing order, four mma k16 steps a tile
 * into one f32 accumulator; the eight warp partials are added in warp order.
 * Which elements of a k-tile meet in which mma step is fixed too (the
 * "fragment map" below). The tile shape (MT m16 × NT n8 per block, U
 * k-tiles of a warp in flight, 8 or 16 rows an m-tile) never changes a
 * row's result: an mma output element depends only on its own A row and B
 * column.
 *
 * Fragment map. Lane l = 4g + t of a warp holds, for weight row g of an n8
 * tile and activation rows g (and g + 8) of an m16 tile, the 16 elements of
 * chunks t and t + 4 of the k-tile (a chunk = 8 consecutive elements):
 * mma step s (0..3) takes elements 2s'..2s'+1 of chunk (s < 2 ? t : t + 4),
 * s' = 2(s & 1), as its k positions 2t, 2t+1 and elements 2s'+2, 2s'+3 as
 * k positions 2t+8, 2t+9. Every lane therefore loads its own A and B
 * fragments as whole 16-byte chunks straight into registers — no shared
 * memory staging, no transposition — and a warp's four lanes of one row
 * read 64 consecutive bytes per load instruction.
 *
 * F32 weights take the fp32 path instead: one warp per output column, lane l
 * summing k = l, l+32, ... in order, then the fixed xor tree.
 */
#ifndef WK_CUDA_GEMM_TILE_CUH
#define WK_CUDA_GEMM_TILE_CUH

#include "cuda/ops.cuh"

#define GEMM_WARPS 8

/* Shared bytes gemm_tile<T, MT, NT, U> needs: the warp partials (rows of an
 * m-tile: 16, or 8 for MT == 0, the tile of at most 8 rows). */
__host__ __device__ constexpr size_t wk_gemm_tile_smem(int MT, int NT) {
    return (size_t)GEMM_WARPS * (MT ? MT * 16 : 8) * NT * 8 * 4;
}

__device__ __forceinline__ void wk_mma16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* Elements 8c..8c+7 of a weight row as f16 (the backend guarantees 16-byte
 * aligned F16/BF16 rows; see upload in backend-cuda.cu). SM: the row is in
 * shared memory (staged), so no read-only global loads. */
template <int T, bool SM = false>
__device__ __forceinline__ uint4 wk_load_w8(const uint8_t *row, int c) {
    if (T == GGML_TYPE_F16)
        return SM ? reinterpret_cast<const uint4 *>(row)[c] : __ldg(reinterpret_cast<const uint4 *>(row) + c);
    if (T == GGML_TYPE_Q8_0) return wk_deq8_h_q8_0(row, c);
    if (T == GGML_TYPE_Q5_0) return wk_deq8_h_q4q5<true>(row, c);
    if (T == GGML_TYPE_Q4_0) return wk_deq8_h_q4q5<false>(row, c);
    float v[8];
    if (SM && T == GGML_TYPE_BF16) wk_bf16x8_to_f32(reinterpret_cast<const uint4 *>(row)[c], v); /* not __ldg */
    else wk_deq8<T>(row, c, v);
    uint4 u;
    __half2 *h = reinterpret_cast<__half2 *>(&u);
#pragma unroll
    for (int e = 0; e < 4; e++) h[e] = __floats2half2_rn(v[2 * e], v[2 * e + 1]);
    return u;
}

/* A lane's B fragments of k-tile kt of one weight row: chunks kt*8 + t and
 * kt*8 + t + 4 (the fragment map). EDGE: the row's last, partial k-tile —
 * chunks past the row (n_ch chunks) read a clamped address and are zeroed. */
template <int T, bool EDGE, bool SM>
__device__ __forceinline__ void wk_load_b(uint4 (&b)[2], const uint8_t *row, int kt, int t, int n_ch) {
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int c = kt * 8 + t + 4 * h;
        if (!EDGE) {
            b[h] = wk_load_w8<T, SM>(row, c);
        } else {
            b[h] = wk_load_w8<T, SM>(row, min(c, n_ch - 1));
            if (c >= n_ch) b[h] = make_uint4(0, 0, 0, 0);
        }
    }
}

/* A lane's A fragments of k-tile kt of one activation row (f16, padded with
 * zeros to a whole k-tile, so never an edge). */
__device__ __forceinline__ void wk_load_a(uint4 (&a)[2], const __half *row, int kt, int t) {
    const uint4 *p = reinterpret_cast<const uint4 *>(row + kt * WK_GEMM_BK) + t;
    a[0] = p[0];
    a[1] = p[4];
}

/* Word w (0..7) of a lane's 16-element fragment pair (the fragment map). */
__device__ __forceinline__ uint32_t wk_frag_word(const uint4 (&v)[2], int w) {
    const uint4 &u = v[w >> 2];
    switch (w & 3) {
    case 0: return u.x;
    case 1: return u.y;
    case 2: return u.z;
    default: return u.w;
    }
}

/* Ask L2 for this block's weight rows [n0, n0 + rows) (one thread; the
 * range rounded out to 16 bytes stays inside the 256-byte aligned matrix). */
__device__ __forceinline__ void wk_prefetch_rows_l2(const wk_cu_mat &W, int n0, int rows) {
    const uintptr_t lo = (uintptr_t)(W.w + (size_t)n0 * W.row_bytes) & ~(uintptr_t)15;
    const uintptr_t hi = ((uintptr_t)(W.w + (size_t)(n0 + rows) * W.row_bytes) + 15) & ~(uintptr_t)15;
    for (uintptr_t p = lo; p < hi; p += 32768) {
        const uint32_t n = (uint32_t)min((uintptr_t)32768, hi - p);
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p), "r"(n) : "memory");
    }
}

/* ---- weights staged in shared memory (decode tiles, WS) ----------------------
 * A block copies its NT*8 weight rows into shared memory with the TMA
 * (cp.async.bulk, one copy a row, completion counted in bytes on an
 * mbarrier) as soon as it starts — before it waits for the kernel before it,
 * whose run the copy overlaps — and reads its fragments from there. Only
 * F16/BF16 rows are staged (whole 16-byte chunks, 16-byte aligned: what a
 * bulk copy needs; gemm.cu says why not the quantized types). Shared
 * layout: mbarrier (16 bytes) | warp partials | rows at a stride of
 * wk_staged_stride bytes: a lane's fragment load reads 16 bytes, and one
 * shared-memory wavefront serves 8 lanes — two rows, 64 bytes of each — so
 * row g + 1 starts 64 bytes (mod 128) after row g and the two rows' bytes
 * fall on different banks (a stride that is a multiple of 128 bytes would
 * put all 8 rows of a load on the same banks; the 16 bytes of padding used
 * before left 2-way conflicts on 12 of 16 banks). */
__host__ __device__ constexpr int wk_staged_stride(int row_bytes) { return row_bytes + (64 - row_bytes % 128 + 128) % 128; }
__host__ __device__ constexpr size_t wk_gemm_staged_smem(int NT, int row_bytes) {
    return 16 + wk_gemm_tile_smem(0, NT) + (size_t)NT * 8 * wk_staged_stride(row_bytes);
}

__device__ __forceinline__ uint32_t wk_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void wk_mbar_init(uint64_t *bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(wk_smem_addr(bar)) : "memory");
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
/* the one arrival, and the bytes the copies will complete (in any order with them) */
__device__ __forceinline__ void wk_mbar_expect(uint64_t *bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(wk_smem_addr(bar)), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void wk_bulk_copy(void *dst, const void *src, uint32_t bytes, uint64_t *bar) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
                     wk_smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(wk_smem_addr(bar))
                 : "memory");
}
/* until the barrier's first phase completes (every byte landed) */
__device__ __forceinline__ void wk_mbar_wait(uint64_t *bar) {
    uint32_t done = 0;
    while (!done)
        asm volatile("{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], 0;\n selp.u32 %0, 1, 0, p;\n}\n"
                     : "=r"(done)
                     : "r"(wk_smem_addr(bar))
                     : "memory");
}

/* Weight rows [n0, n0 + rows) of W (row_bytes % 16 == 0) to dst at a stride
 * of wk_staged_stride; W2 (same shape and type, or null): its rows [n0, n0 +
 * rows) too, from shared row `at2` on. */
__device__ __forceinline__ void wk_stage_rows(const wk_cu_mat &W, const wk_cu_mat *W2, int at2, int n0, int rows,
                                              uint8_t *dst, uint64_t *bar) {
    const int rb = W.row_bytes, sb = wk_staged_stride(rb), n_mats = W2 ? 2 : 1;
    if (threadIdx.x == 0) wk_mbar_expect(bar, (uint32_t)(n_mats * rows * rb));
    for (int i = threadIdx.x; i < n_mats * rows; i += blockDim.x) {
        const int m = i / rows, r = i % rows;
        const wk_cu_mat &M = m ? *W2 : W;
        wk_bulk_copy(dst + (size_t)(m * at2 + r) * sb, M.w + (size_t)(n0 + r) * rb, (uint32_t)rb, bar);
    }
}

/* The block's tile: rows [m0, m0 + MT*16) of x16 (ld lda, n_rows valid)
 * times weight rows [n0, n0 + NT*8) of W (n_in = K) — PAIR: weight rows
 * [n0, n0 + NT*4) of W (n8 tiles 0..NT/2-1) and the same rows of W2 (tiles
 * NT/2..NT-1), and epi(m, n, w_value, w2_value) once for each pair; MT == 0: the tile of a
 * step of at most 8 rows (m0 = 0; the m16 tile's rows 8..15 are known zeros,
 * never loaded). Calls epi.prepare(m0, n0, outputs a row) early — before
 * the block waits for the kernel before — and epi(m, n, v) once for every valid (row m, weight row
 * n) with the finished dot product. Every thread of the block (GEMM_WARPS
 * warps) calls it; smem: wk_gemm_tile_smem(MT, NT) bytes (WS:
 * wk_gemm_staged_smem(NT, W.row_bytes)), free again on return. pdl: launched
 * as a programmatic dependent (see wk_dep_wait): the block asks L2 for its
 * weights, lets the next kernel launch, and issues its first weight loads
 * before it waits for the kernel before. WS: the block's weight rows staged
 * in shared memory (above) — copied before the wait, all of them. */
template <int T, int MT, int NT, int U, bool WS = false, bool PAIR = false, class Epi>
__device__ __forceinline__ void gemm_tile(const wk_cu_mat &W, int n0, const __half *x16, int lda, int n_rows, int m0,
                                          int K, uint8_t *smem, Epi epi, bool pdl, const wk_cu_mat *W2 = nullptr) {
    static_assert(!PAIR || NT % 2 == 0, "paired tiles: NT/2 n8 tiles of each matrix");
    constexpr int NH = PAIR ? NT / 2 : NT; /* n8 tiles of one matrix */
    static_assert(!WS || (MT == 0 && (T == GGML_TYPE_F16 || T == GGML_TYPE_BF16)), "staged: f16/bf16 decode tiles");
    constexpr int MI = MT ? MT : 1, RH = MT ? 2 : 1; /* m16 tiles; loaded rows of each: g (and g + 8) */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int N = W.n_rows, n_ch = K / 8;
    const int n_kt = (K + WK_GEMM_BK - 1) / WK_GEMM_BK, n_full = K / WK_GEMM_BK;
    uint64_t *bar = reinterpret_cast<uint64_t *>(smem);
    float *part = reinterpret_cast<float *>(smem + (WS ? 16 : 0)); /* (GEMM_WARPS, TM, TW) */
    uint8_t *wsm = smem + 16 + wk_gemm_tile_smem(0, NT);
    if constexpr (WS) {
        if (threadIdx.x == 0) wk_mbar_init(bar);
        __syncthreads();
        wk_stage_rows(W, PAIR ? W2 : nullptr, NH * 8, n0, min(NH * 8, N - n0), wsm, bar);
        wk_dep_launch();
    } else if (pdl) {
        if (threadIdx.x == 0 && blockIdx.y == 0) {
            wk_prefetch_rows_l2(W, n0, min(NH * 8, N - n0));
            if (PAIR) wk_prefetch_rows_l2(*W2, n0, min(NH * 8, N - n0));
        }
        wk_dep_launch();
    }
    /* rows past N or n_rows read a clamped row: their outputs are never stored */
    const uint8_t *wrow[NT];
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const bool second = PAIR && j >= NH;
        const int r = min(n0 + (j % NH) * 8 + g, N - 1); /* the weight row of tile j */
        wrow[j] = WS ? wsm + (size_t)(r - n0 + (second ? NH * 8 : 0)) * wk_staged_stride(W.row_bytes)
                     : (second ? W2 : &W)->w + (size_t)r * W.row_bytes;
    }
    const __half *arow[MI][RH];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int h = 0; h < RH; h++) arow[i][h] = x16 + (size_t)min(m0 + i * 16 + h * 8 + g, n_rows - 1) * lda;

    epi.prepare(m0, n0, NH * 8); /* what the epilogue needs that no kernel of the step writes: before any wait */
    float acc[MI][NT][4];
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

    if constexpr (WS) {
        wk_dep_wait(); /* the previous kernel's output (the activations) */
        wk_mbar_wait(bar);
    }
    for (int kt0 = warp; kt0 < n_kt; kt0 += GEMM_WARPS * U) {
        uint4 rb[U][NT][2], ra[U][MI][RH][2];
        auto load_a = [&]() {
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int kt = kt0 + u * GEMM_WARPS;
                if (kt >= n_kt) break;
#pragma unroll
                for (int i = 0; i < MI; i++)
#pragma unroll
                    for (int h = 0; h < RH; h++) wk_load_a(ra[u][i][h], arow[i][h], kt, t);
            }
        };
        /* plain launch: the activations first, so their loads are in flight while the
         * weights dequantize; dependent launch: the first weights before waiting */
        if (!pdl || WS) load_a();
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int kt = kt0 + u * GEMM_WARPS;
            if (kt >= n_kt) break;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                if (kt < n_full) wk_load_b<T, false, WS>(rb[u][j], wrow[j], kt, t, n_ch);
                else wk_load_b<T, true, WS>(rb[u][j], wrow[j], kt, t, n_ch);
            }
        }
        if (pdl && !WS) {
            if (kt0 == warp) wk_dep_wait(); /* the first weights are in flight; now the previous kernel's output */
            load_a();
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (kt0 + u * GEMM_WARPS >= n_kt) break;
#pragma unroll
            for (int s = 0; s < 4; s++) {
                const int w0 = 4 * (s >> 1) + 2 * (s & 1); /* the fragment map's word of step s */
#pragma unroll
                for (int i = 0; i < MI; i++) {
                    uint32_t a[4];
                    a[0] = wk_frag_word(ra[u][i][0], w0);
                    a[2] = wk_frag_word(ra[u][i][0], w0 + 1);
                    a[1] = RH == 2 ? wk_frag_word(ra[u][i][RH - 1], w0) : 0u;
                    a[3] = RH == 2 ? wk_frag_word(ra[u][i][RH - 1], w0 + 1) : 0u;
#pragma unroll
                    for (int j = 0; j < NT; j++) {
                        const uint32_t b[2] = {wk_frag_word(rb[u][j], w0), wk_frag_word(rb[u][j], w0 + 1)};
                        wk_mma16816(acc[i][j], a, b);
                    }
                }
            }
        }
    }

    /* the warp partials, added in warp order */
    wk_dep_wait(); /* warps without a k-tile have not waited yet (a no-op for a plain launch) */
    constexpr int TM = MT ? MT * 16 : 8, TW = NT * 8;
    float *pp = part + (size_t)warp * TM * TW;
#pragma unroll
    for (int i = 0; i < MI; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int r = i * 16 + g, c = j * 8 + 2 * t;
            pp[r * TW + c] = acc[i][j][0];
            pp[r * TW + c + 1] = acc[i][j][1];
            if (RH == 2) {
                pp[(r + 8) * TW + c] = acc[i][j][2];
                pp[(r + 8) * TW + c + 1] = acc[i][j][3];
            }
        }
    __syncthreads();
    const int rows = min(TM, n_rows - m0);
    constexpr int TO = NH * 8; /* outputs a row: one a weight row, or one a pair */
    for (int o = threadIdx.x; o < rows * TO; o += GEMM_WARPS * 32) {
        const int r = o / TO, c = o % TO, n = n0 + c, i = r * TW + c;
        if (n >= N) continue;
        float v = part[i];
#pragma unroll
        for (int w = 1; w < GEMM_WARPS; w++) v += part[w * TM * TW + i];
        if constexpr (PAIR) {
            float v2 = part[i + TO];
#pragma unroll
            for (int w = 1; w < GEMM_WARPS; w++) v2 += part[w * TM * TW + i + TO];
            epi(m0 + r, n, v, v2);
        } else {
            epi(m0 + r, n, v);
        }
    }
    __syncthreads(); /* part may be the next tile's */
}

/* F32 weights: warp w of the block takes weight row n0 + w (8 a block) for
 * rows [m_lo, m_hi) of x32 (ld lda); fp32 throughout. */
template <class Epi>
__device__ __forceinline__ void gemm_f32_cols(const wk_cu_mat &W, int n0, const float *x32, int lda, int m_lo,
                                              int m_hi, int K, Epi epi) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, n = n0 + warp;
    wk_dep_enter();
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
