/* gemm.cu — y = x · Wᵀ for any number of rows, batch-invariant.
 *
 * One reduction order per output, fixed by the launch's matrices alone
 * (never by the number of rows):
 *
 * - k is cut into tiles of WK_GEMM_BK = 64. Inside a tile, four mma.sync
 *   m16n8k16 steps (f16 inputs, f32 accumulators) in order, with a fixed
 *   permutation of the tile's k positions onto the mma's k slots: lane (g, t)
 *   holds the 16-byte chunks t and t+4 of its A and B rows; step 0 takes
 *   halves 0-3 of chunk t, step 1 halves 4-7, steps 2 and 3 the same of
 *   chunk t+4. Every kernel below builds its fragments that way (from
 *   registers or from shared memory), so a weight chunk is one 16-byte load.
 * - P = 8 S reduction slots; slot s accumulates tiles s, s+P, s+2P, ... in
 *   increasing order into one f32 chain (starting from 0). S, the split
 *   count, is a function of n_in and of the widest matrix of the launch
 *   (gemm_splits: only long, narrow matrices — the down projection — are
 *   split); the backend always launches the same matrices together.
 * - Slots are folded in two levels: q_z = (((p_8z + p_8z+1) + ...) + p_8z+7),
 *   then total = ((q_0 + q_1) + ...) + q_S-1; y = total (add: y += total).
 *
 * Two kernels reproduce that order:
 * - skinny (<= 32 rows): block (n-tile, m-tile, z), warp w runs slot 8z+w
 *   straight from global memory into mma fragments (no shared staging),
 *   U k-tiles in flight; the 8 warp partials are folded in warp order in
 *   shared memory; with S > 1 each block writes q_z to a workspace and
 *   gemm_merge folds the S partials in z order. With the splits, a one-row
 *   GEMM of a narrow matrix gets enough blocks and bytes in flight.
 * - tiled (> 32 rows): 64x64 block tiles, 8 warps of 32x16, k-tiles through
 *   double-buffered shared memory in slot order; each warp keeps the chain of
 *   the current slot, q and total in registers and folds them exactly as
 *   above. Up to WK_GEMM_SKINNY_ROWS rows a split runs as its own block (grid
 *   z) writing q_z to the workspace, merged as for skinny; more rows fold
 *   every split in the block.
 * The tests' steps (1 to ~60 rows) cross both kernels, so the invariance
 * tests check that they agree bit for bit.
 * An mma's output element depends only on its own A row and B column, so a
 * row's results do not depend on which rows share its tile.
 *
 * Weights stay in their GGUF type: each 16-byte chunk is dequantized
 * (wk_deq8) to f16 right after its load. Rows are 16-byte aligned whole
 * chunks (n_in % 8 == 0); the backend uploads an F16/BF16 matrix whose rows
 * are not as F32. F32 weights (the small test models) take a plain fp32 path
 * instead: one warp per output column, lane l summing k = l, l+32, ... in
 * order, then a fixed xor tree. The choice depends on the matrix's type only.
 */
#include "cuda/ops.cuh"

#define GEMM_WARPS 8

__device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

/* The four mma steps of one k-tile: A rows g / g+8 chunks t, t+4 (lo: row g,
 * hi: row g+8), B row g chunks t, t+4. */
__device__ __forceinline__ void mma_tile(float c[4], const uint4 &alo0, const uint4 &ahi0, const uint4 &alo1,
                                         const uint4 &ahi1, const uint4 &b0, const uint4 &b1) {
    mma16816(c, alo0.x, ahi0.x, alo0.y, ahi0.y, b0.x, b0.y);
    mma16816(c, alo0.z, ahi0.z, alo0.w, ahi0.w, b0.z, b0.w);
    mma16816(c, alo1.x, ahi1.x, alo1.y, ahi1.y, b1.x, b1.y);
    mma16816(c, alo1.z, ahi1.z, alo1.w, ahi1.w, b1.z, b1.w);
}

struct gemm_params {
    wk_gemm_seg seg[3];
    int blk_end[3]; /* cumulative n-blocks per segment */
    int col_off[3]; /* first column of each segment in the workspace */
    int n_cols;     /* columns of all segments */
    const __half *x16;
    float *ws;      /* (S, n_rows, n_cols) block partials when S > 1 */
    int lda, n_in, n_rows, add, S;
    int zgrid;      /* tiled: block z runs slots 8z..8z+7 only and writes q_z to ws */
};

/* Elements 8c..8c+7 of a weight row as f16. No branch around the loads, so
 * the loads of all of a warp's tiles are in flight together (the launcher
 * guarantees 16-byte aligned rows: see upload in backend-cuda.cu). */
template <int T>
__device__ __forceinline__ uint4 load_w8(const uint8_t *row, int c) {
    if (T == GGML_TYPE_F16) return __ldg(reinterpret_cast<const uint4 *>(row) + c);
    float v[8];
    wk_deq8<T>(row, c, v);
    uint4 u;
    __half2 *h = reinterpret_cast<__half2 *>(&u);
#pragma unroll
    for (int e = 0; e < 4; e++) h[e] = __floats2half2_rn(v[2 * e], v[2 * e + 1]);
    return u;
}

/* Weight chunk kc of row n (zero past N or K: clamped address, zeroed after). */
template <int T>
__device__ __forceinline__ uint4 load_b(const wk_gemm_seg &S, int n, int kc, int N, int KC) {
    uint4 v = load_w8<T>(S.W.w + (size_t)min(n, N - 1) * S.W.row_bytes, min(kc, KC - 1));
    if (n >= N || kc >= KC) v = make_uint4(0, 0, 0, 0);
    return v;
}

__device__ __forceinline__ int seg_of(const gemm_params &p, int blk) {
    int si = 0;
    while (si < 2 && blk >= p.blk_end[si]) si++;
    return si;
}

// --- skinny: <= 32 rows ----------------------------------------------------------------

template <int T, int MT, int NT, int U>
__global__ void __launch_bounds__(GEMM_WARPS * 32) gemm_skinny_kernel(const __grid_constant__ gemm_params p) {
    constexpr int TM = MT * 16, TW = NT * 8;
    __shared__ float part[GEMM_WARPS][TM * TW];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int si = seg_of(p, blockIdx.x);
    const wk_gemm_seg &S = p.seg[si];
    const int n0 = ((int)blockIdx.x - (si ? p.blk_end[si - 1] : 0)) * TW;
    const int m0 = blockIdx.y * TM;
    const int N = S.W.n_rows, K = p.n_in, KC = K / 8;
    const int n_kt = (K + WK_GEMM_BK - 1) / WK_GEMM_BK, P = GEMM_WARPS * p.S;
    const int g = lane >> 2, t = lane & 3;
    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) acc[i][j][0] = acc[i][j][1] = acc[i][j][2] = acc[i][j][3] = 0.0f;

    /* A rows of this lane, clamped (rows past n_rows only reach their own outputs, never written) */
    const __half *arow[MT][2];
#pragma unroll
    for (int i = 0; i < MT; i++) {
        arow[i][0] = p.x16 + (size_t)min(m0 + i * 16 + g, p.n_rows - 1) * p.lda;
        arow[i][1] = p.x16 + (size_t)min(m0 + i * 16 + g + 8, p.n_rows - 1) * p.lda;
    }
    const int slot = blockIdx.z * GEMM_WARPS + warp;
    for (int kt0 = slot; kt0 < n_kt; kt0 += P * U) {
        uint4 ra[U][MT][4], rb[U][NT][2];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int kt = kt0 + u * P;
            if (kt >= n_kt) break;
            const int c0 = kt * (WK_GEMM_BK / 8) + t;
#pragma unroll
            for (int i = 0; i < MT; i++) {
                ra[u][i][0] = *reinterpret_cast<const uint4 *>(arow[i][0] + 8 * c0);
                ra[u][i][1] = *reinterpret_cast<const uint4 *>(arow[i][1] + 8 * c0);
                ra[u][i][2] = *reinterpret_cast<const uint4 *>(arow[i][0] + 8 * (c0 + 4));
                ra[u][i][3] = *reinterpret_cast<const uint4 *>(arow[i][1] + 8 * (c0 + 4));
            }
#pragma unroll
            for (int j = 0; j < NT; j++) {
                rb[u][j][0] = load_b<T>(S, n0 + j * 8 + g, c0, N, KC);
                rb[u][j][1] = load_b<T>(S, n0 + j * 8 + g, c0 + 4, N, KC);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (kt0 + u * P >= n_kt) break;
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < NT; j++)
                    mma_tile(acc[i][j], ra[u][i][0], ra[u][i][1], ra[u][i][2], ra[u][i][3], rb[u][j][0], rb[u][j][1]);
        }
    }

    /* the warp partials, folded in warp order */
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            float *pp = part[warp];
            const int r = i * 16 + g, c = j * 8 + 2 * t;
            pp[r * TW + c] = acc[i][j][0];
            pp[r * TW + c + 1] = acc[i][j][1];
            pp[(r + 8) * TW + c] = acc[i][j][2];
            pp[(r + 8) * TW + c + 1] = acc[i][j][3];
        }
    __syncthreads();
    for (int o = threadIdx.x; o < TM * TW; o += GEMM_WARPS * 32) {
        const int r = o / TW, c = o % TW, m = m0 + r, n = n0 + c;
        if (m >= p.n_rows || n >= N) continue;
        float v = part[0][o];
#pragma unroll
        for (int w = 1; w < GEMM_WARPS; w++) v += part[w][o];
        if (p.S > 1) {
            p.ws[((size_t)blockIdx.z * p.n_rows + m) * p.n_cols + p.col_off[si] + n] = v;
        } else {
            float *y = S.y + (size_t)m * S.ldy + n;
            if (p.add) *y += v;
            else *y = v;
        }
    }
}

/* total = ((q_0 + q_1) + ...) + q_S-1 per output, into the segments' y. */
__global__ void __launch_bounds__(256) gemm_merge_kernel(const __grid_constant__ gemm_params p) {
    const int col = blockIdx.x * 256 + threadIdx.x, m = blockIdx.y;
    if (col >= p.n_cols) return;
    int si = 0;
    while (si < 2 && col >= p.col_off[si + 1] && p.col_off[si + 1] > p.col_off[si]) si++;
    const wk_gemm_seg &S = p.seg[si];
    const int n = col - p.col_off[si];
    const float *w = p.ws + (size_t)m * p.n_cols + col;
    const size_t zs = (size_t)p.n_rows * p.n_cols;
    float v = w[0];
    for (int z = 1; z < p.S; z++) v += w[z * zs];
    float *y = S.y + (size_t)m * S.ldy + n;
    if (p.add) *y += v;
    else *y = v;
}

// --- tiled: > 32 rows ------------------------------------------------------------------

#define TBM 64
#define TBN 64
/* shared tile: rows of 8 chunks (128 bytes), chunk c of row r at c ^ 4 (r & 1): the
 * fragment loads (rows g, g+1 of a quarter-warp, chunks t / t+4) hit 32 banks */
__device__ __forceinline__ int swz(int r, int c) { return r * 8 + (c ^ ((r & 1) << 2)); }

template <int T>
__global__ void __launch_bounds__(GEMM_WARPS * 32, 2) gemm_tiled_kernel(const __grid_constant__ gemm_params p) {
    __shared__ uint4 sm[2][TBM * 8 + TBN * 8];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int si = seg_of(p, blockIdx.x);
    const wk_gemm_seg &S = p.seg[si];
    const int n0 = ((int)blockIdx.x - (si ? p.blk_end[si - 1] : 0)) * TBN;
    const int m0 = blockIdx.y * TBM;
    const int N = S.W.n_rows, K = p.n_in, KC = K / 8;
    const int n_kt = (K + WK_GEMM_BK - 1) / WK_GEMM_BK, P = GEMM_WARPS * p.S;
    const int s_begin = p.zgrid ? (int)blockIdx.z * GEMM_WARPS : 0, s_end = p.zgrid ? s_begin + GEMM_WARPS : P;
    const int last_slot = min(s_end, n_kt) - 1;
    const int g = lane >> 2, t = lane & 3;
    const int wm = (warp >> 2) * 32, wn = (warp & 3) * 16; /* warp tile 32 x 16 */
    float acc[2][2][4], q[2][2][4], tot[2][2][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = q[i][j][e] = tot[i][j][e] = 0.0f;

    /* this thread's two A and two B chunks of a tile: idx = tid + 256 i, row idx/8, chunk idx%8 */
    const __half *ap[2];
    const int ra0 = tid >> 3, rc = tid & 7;
#pragma unroll
    for (int i = 0; i < 2; i++) ap[i] = p.x16 + (size_t)min(m0 + ra0 + 32 * i, p.n_rows - 1) * p.lda + 8 * rc;
    uint4 la[2], lb[2];
    auto load = [&](int kt) {
        const int kc = kt * 8 + rc;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            la[i] = *reinterpret_cast<const uint4 *>(ap[i] + kt * WK_GEMM_BK);
            lb[i] = load_b<T>(S, n0 + ra0 + 32 * i, kc, N, KC);
        }
    };
    if (s_begin < n_kt) load(s_begin);
    int buf = 0;
    for (int s = s_begin; s < s_end; s++) {
        for (int kt = s; kt < n_kt; kt += P) {
            uint4 *A = sm[buf], *B = sm[buf] + TBM * 8;
#pragma unroll
            for (int i = 0; i < 2; i++) {
                A[swz(ra0 + 32 * i, rc)] = la[i];
                B[swz(ra0 + 32 * i, rc)] = lb[i];
            }
            __syncthreads();
            int nk = kt + P;
            if (nk >= n_kt) nk = s < last_slot ? s + 1 : -1;
            if (nk >= 0) load(nk);
            uint4 bf[2][2];
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int r = wn + j * 8 + g;
                bf[j][0] = B[swz(r, t)];
                bf[j][1] = B[swz(r, t + 4)];
            }
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int r = wm + i * 16 + g;
                const uint4 alo0 = A[swz(r, t)], ahi0 = A[swz(r + 8, t)];
                const uint4 alo1 = A[swz(r, t + 4)], ahi1 = A[swz(r + 8, t + 4)];
#pragma unroll
                for (int j = 0; j < 2; j++) mma_tile(acc[i][j], alo0, ahi0, alo1, ahi1, bf[j][0], bf[j][1]);
            }
            buf ^= 1;
        }
        /* slot s done: q = p (first of its group) or q + p; the group's q into the total */
        const int w = s % GEMM_WARPS;
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 2; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    q[i][j][e] = w == 0 ? acc[i][j][e] : q[i][j][e] + acc[i][j][e];
                    acc[i][j][e] = 0.0f;
                    if (w == GEMM_WARPS - 1) tot[i][j][e] = s == GEMM_WARPS - 1 ? q[i][j][e] : tot[i][j][e] + q[i][j][e];
                }
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int m = m0 + wm + i * 16 + g + 8 * h;
                if (m >= p.n_rows) continue;
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int n = n0 + wn + j * 8 + 2 * t + e;
                    if (n >= N) continue;
                    if (p.zgrid) {
                        p.ws[((size_t)blockIdx.z * p.n_rows + m) * p.n_cols + p.col_off[si] + n] = q[i][j][2 * h + e];
                        continue;
                    }
                    float *y = S.y + (size_t)m * S.ldy + n;
                    const float v = tot[i][j][2 * h + e];
                    if (p.add) *y += v;
                    else *y = v;
                }
            }
}

/* F32 weights: warp per (output column, 8-row group), fp32 throughout. */
struct gemm32_params {
    wk_gemm_seg seg[3];
    int col_end[3];
    const float *x32;
    int lda, n_in, n_rows, add;
};

__global__ void __launch_bounds__(256) gemm_f32_kernel(const __grid_constant__ gemm32_params p) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int col = blockIdx.x * 8 + warp;
    int si = 0;
    while (si < 2 && col >= p.col_end[si]) si++;
    if (col >= p.col_end[si]) return;
    const wk_gemm_seg &S = p.seg[si];
    const int n = col - (si ? p.col_end[si - 1] : 0);
    const float *w = reinterpret_cast<const float *>(S.W.w + (size_t)n * S.W.row_bytes);
    const int r1 = min(p.n_rows, (int)(blockIdx.y + 1) * 8);
    for (int m = blockIdx.y * 8; m < r1; m++) {
        const float *x = p.x32 + (size_t)m * p.lda;
        float s = 0.0f;
        for (int k = lane; k < p.n_in; k += 32) s = fmaf(w[k], x[k], s);
        s = wk_warp_sum(s);
        if (lane == 0) {
            float *y = S.y + (size_t)m * S.ldy + n;
            if (p.add) *y += s;
            else *y = s;
        }
    }
}

static void set_blocks(gemm_params &p, const wk_gemm_seg *segs, int n_segs, int bn) {
    int blocks = 0;
    for (int i = 0; i < 3; i++) {
        if (i < n_segs) blocks += wk_cdiv(segs[i].W.n_rows, bn);
        p.blk_end[i] = blocks;
    }
}

template <int T, int MT, int NT, int U>
static cudaError_t launch_skinny(gemm_params p, const wk_gemm_seg *segs, int n_segs, cudaStream_t st) {
    set_blocks(p, segs, n_segs, NT * 8);
    dim3 grid(p.blk_end[2], wk_cdiv(p.n_rows, MT * 16), p.S);
    gemm_skinny_kernel<T, MT, NT, U><<<grid, GEMM_WARPS * 32, 0, st>>>(p);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess || p.S == 1) return e;
    gemm_merge_kernel<<<dim3(wk_cdiv(p.n_cols, 256), p.n_rows), 256, 0, st>>>(p);
    return cudaGetLastError();
}

/* Split count of a launch: a function of n_in and the widest matrix only.
 * Wide matrices have blocks enough; long narrow ones (the down projection)
 * are cut so that a one-row GEMM has ~1-2 k-tiles per warp. */
static int gemm_splits(int n_in, int n_max) {
    const int n_kt = wk_cdiv(n_in, WK_GEMM_BK);
    if (n_max >= 8192 || 2 * n_in < 3 * n_max) return 1;
    int s = n_kt / 6;
    return s < 2 ? 2 : s > 8 ? 8 : s;
}

size_t wk_cu_gemm_ws_floats(int n_in, int n_max, int n_total) {
    const int s = gemm_splits(n_in, n_max);
    return s > 1 ? (size_t)s * WK_GEMM_SKINNY_ROWS * n_total : 0;
}

/* Kernel and tile shape by the number of rows and the launch's width (results
 * do not depend on it, see the top). */
template <int T>
static cudaError_t launch_type(gemm_params &p, const wk_gemm_seg *segs, int n_segs, cudaStream_t st) {
    const bool wide = p.n_cols > 2048;
    if (p.n_rows <= 16) {
        if (wide) return launch_skinny<T, 1, 2, 2>(p, segs, n_segs, st);
        return launch_skinny<T, 1, 1, 2>(p, segs, n_segs, st);
    }
    if (p.n_rows <= 32) {
        if (wide) return launch_skinny<T, 2, 4, 1>(p, segs, n_segs, st);
        return launch_skinny<T, 2, 1, 2>(p, segs, n_segs, st);
    }
    /* more rows: shared tiles; up to WK_GEMM_SKINNY_ROWS the splits still go over the grid */
    set_blocks(p, segs, n_segs, TBN);
    p.zgrid = p.S > 1 && p.n_rows <= WK_GEMM_SKINNY_ROWS;
    dim3 grid(p.blk_end[2], wk_cdiv(p.n_rows, TBM), p.zgrid ? p.S : 1);
    gemm_tiled_kernel<T><<<grid, GEMM_WARPS * 32, 0, st>>>(p);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess || !p.zgrid) return e;
    gemm_merge_kernel<<<dim3(wk_cdiv(p.n_cols, 256), p.n_rows), 256, 0, st>>>(p);
    return cudaGetLastError();
}

cudaError_t wk_cu_gemm(const wk_gemm_seg *segs, int n_segs, const __half *x16, const float *x32, int lda,
                       int n_rows, bool add, float *ws, cudaStream_t st) {
    if (n_rows <= 0 || n_segs <= 0) return cudaSuccess;
    const int type = segs[0].W.type;
    if (type == GGML_TYPE_F32) {
        gemm32_params p = {};
        int cols = 0;
        for (int i = 0; i < 3; i++) {
            if (i < n_segs) {
                p.seg[i] = segs[i];
                cols += segs[i].W.n_rows;
            }
            p.col_end[i] = cols;
        }
        p.x32 = x32, p.lda = lda, p.n_in = segs[0].W.n_in, p.n_rows = n_rows, p.add = add;
        gemm_f32_kernel<<<dim3(wk_cdiv(cols, 8), wk_cdiv(n_rows, 8)), 256, 0, st>>>(p);
        return cudaGetLastError();
    }
    gemm_params p = {};
    int cols = 0, n_max = 0;
    for (int i = 0; i < 3; i++) {
        p.col_off[i] = cols;
        if (i < n_segs) {
            p.seg[i] = segs[i];
            cols += segs[i].W.n_rows;
            if (segs[i].W.n_rows > n_max) n_max = segs[i].W.n_rows;
        }
    }
    p.n_cols = cols;
    p.x16 = x16, p.lda = lda, p.n_in = segs[0].W.n_in, p.n_rows = n_rows, p.add = add;
    p.S = gemm_splits(p.n_in, n_max);
    p.ws = ws;
    if (p.S > 1 && !ws) return cudaErrorInvalidValue;
    cudaError_t e = cudaErrorInvalidValue;
    WK_TYPE_SWITCH(type, e = launch_type<T_>(p, segs, n_segs, st));
    return e;
}
