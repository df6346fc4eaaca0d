/* gemm.cu — y = x · Wᵀ for any number of rows, batch-invariant.
 *
 * One reduction order per output, fixed by n_in alone: the k dimension is cut
 * into tiles of WK_GEMM_BK = 64; warp w of the block (8 warps) accumulates
 * tiles w, w+8, w+16, ... in increasing order with mma.sync m16n8k16 (f16
 * inputs, f32 accumulators: per tile four k16 steps in order), and the eight
 * warp partials are added in warp order, (((p0 + p1) + p2) + ...) + p7.
 * (Decode tiles load two of a warp's k-tiles before computing either, for
 * more bytes in flight; the order of the additions is unchanged.) An mma's output element
 * depends only on its own A row and B column, so a row's results are the same
 * whether it shares a 16-row tile with 0 or 63 other rows, and whatever the
 * tile shape (MT m16 tiles × NT n8 tiles per block) the launcher picks for
 * the number of rows. A future persistent decode kernel reproduces it by
 * keeping the same k-tile to warp assignment and the same final sum.
 *
 * Weights stay in their GGUF type: each warp dequantizes its 64-wide slice of
 * NT*8 weight rows (wk_deq8, 8 lanes per row reading consecutive chunks) into
 * f16 in shared memory, and its MT*16 activation rows (already f16) beside it.
 *
 * Rows are 16-byte aligned whole chunks (n_in % 8 == 0); the backend uploads
 * an F16/BF16 matrix whose rows are not as F32. F32 weights (the small test
 * models) take a plain fp32 path instead, so they keep full precision: one warp per output column, lane l summing
 * k = l, l+32, ... in order, then a fixed xor tree. The choice depends on the
 * matrix's type only, never on the rows.
 */
#include "cuda/ops.cuh"

#define GEMM_WARPS 8
#define LDS (WK_GEMM_BK + 8) /* smem row stride in halves: 144 bytes, conflict-free fragment loads */

__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], const uint32_t b[2]) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

struct gemm_params {
    wk_gemm_seg seg[3];
    int blk_end[3]; /* cumulative n-blocks per segment */
    int n_segs;
    const __half *x16;
    int lda, n_in, n_rows, add;
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

template <int T, int MT, int NT, int U>
__global__ void __launch_bounds__(GEMM_WARPS * 32) gemm_mma_kernel(const __grid_constant__ gemm_params p) {
    extern __shared__ __align__(16) uint8_t smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int si = 0;
    while ((int)blockIdx.x >= p.blk_end[si]) si++;
    const wk_gemm_seg &S = p.seg[si];
    const int n0 = ((int)blockIdx.x - (si ? p.blk_end[si - 1] : 0)) * NT * 8;
    const int m0 = blockIdx.y * MT * 16;
    const int N = S.W.n_rows, K = p.n_in;
    constexpr int TILE = (MT * 16 + NT * 8) * LDS; /* halves per k-tile buffer */
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
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int kt = kt0 + u * GEMM_WARPS;
            if (kt >= n_kt) break;
            const int k0 = kt * WK_GEMM_BK;
            /* rows past n_rows and weights past N or K read a clamped address and are zeroed */
#pragma unroll
            for (int i = 0; i < MT * 4; i++) {
                const int idx = lane + 32 * i, r = idx >> 3, c = idx & 7;
                const int m = min(m0 + r, p.n_rows - 1);
                ra[u][i] = *reinterpret_cast<const uint4 *>(p.x16 + (size_t)m * p.lda + k0 + 8 * c);
                if (m0 + r >= p.n_rows) ra[u][i] = make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int i = 0; i < NT * 2; i++) {
                const int idx = lane + 32 * i, r = idx >> 3, c = idx & 7;
                const int n = min(n0 + r, N - 1), kc = min(k0 / 8 + c, K / 8 - 1);
                rb[u][i] = load_w8<T>(S.W.w + (size_t)n * S.W.row_bytes, kc);
                if (n0 + r >= N || k0 / 8 + c >= K / 8) rb[u][i] = make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (kt0 + u * GEMM_WARPS >= n_kt) break;
            __half *As = buf + u * TILE, *Bs = As + MT * 16 * LDS;
#pragma unroll
            for (int i = 0; i < MT * 4; i++) {
                const int idx = lane + 32 * i, r = idx >> 3, c = idx & 7;
                *reinterpret_cast<uint4 *>(As + r * LDS + 8 * c) = ra[u][i];
            }
#pragma unroll
            for (int i = 0; i < NT * 2; i++) {
                const int idx = lane + 32 * i, r = idx >> 3, c = idx & 7;
                *reinterpret_cast<uint4 *>(Bs + r * LDS + 8 * c) = rb[u][i];
            }
        }
        __syncwarp();
#pragma unroll
        for (int u = 0; u < U; u++) {
            if (kt0 + u * GEMM_WARPS >= n_kt) break;
            const uint32_t *A32 = reinterpret_cast<const uint32_t *>(buf + u * TILE);
            const uint32_t *B32 = A32 + MT * 16 * LDS / 2;
#pragma unroll
            for (int kk = 0; kk < WK_GEMM_BK / 16; kk++) {
                const int kw = kk * 8; /* in 32-bit words */
                uint32_t b[NT][2];
#pragma unroll
                for (int j = 0; j < NT; j++) {
                    b[j][0] = B32[(j * 8 + g) * (LDS / 2) + kw + t];
                    b[j][1] = B32[(j * 8 + g) * (LDS / 2) + kw + 4 + t];
                }
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    uint32_t a[4];
                    a[0] = A32[(i * 16 + g) * (LDS / 2) + kw + t];
                    a[1] = A32[(i * 16 + g + 8) * (LDS / 2) + kw + t];
                    a[2] = A32[(i * 16 + g) * (LDS / 2) + kw + 4 + t];
                    a[3] = A32[(i * 16 + g + 8) * (LDS / 2) + kw + 4 + t];
#pragma unroll
                    for (int j = 0; j < NT; j++) mma16816(acc[i][j], a, b[j]);
                }
            }
        }
        __syncwarp();
    }

    /* the warp partials, added in warp order */
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
        if (m >= p.n_rows || n >= N) continue;
        float v = part[o];
#pragma unroll
        for (int w = 1; w < GEMM_WARPS; w++) v += part[w * TM * TW + o];
        float *y = S.y + (size_t)m * S.ldy + n;
        if (p.add) *y += v;
        else *y = v;
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

template <int T, int MT, int NT, int U>
static cudaError_t launch_mma(const gemm_params &p0, const wk_gemm_seg *segs, int n_segs, cudaStream_t st) {
    gemm_params p = p0;
    int blocks = 0;
    for (int i = 0; i < 3; i++) {
        if (i < n_segs) blocks += wk_cdiv(segs[i].W.n_rows, NT * 8);
        p.blk_end[i] = blocks;
    }
    const size_t tiles = (size_t)GEMM_WARPS * U * (MT * 16 + NT * 8) * LDS * sizeof(__half);
    const size_t red = (size_t)GEMM_WARPS * MT * 16 * NT * 8 * sizeof(float);
    const size_t smem = tiles > red ? tiles : red;
    static bool attr_set = false; /* per instantiation */
    if (!attr_set) {
        cudaError_t e = cudaFuncSetAttribute(gemm_mma_kernel<T, MT, NT, U>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)smem);
        if (e != cudaSuccess) return e;
        attr_set = true;
    }
    dim3 grid(blocks, wk_cdiv(p.n_rows, MT * 16));
    gemm_mma_kernel<T, MT, NT, U><<<grid, GEMM_WARPS * 32, smem, st>>>(p);
    return cudaGetLastError();
}

/* Tile shape by the number of rows and the matrix's width (results do not
 * depend on it, see the top): few rows take narrow tiles, so a narrow matrix
 * still spreads over the SMs, and more k-tiles in flight when rows are long. */
template <int T>
static cudaError_t launch_type(const gemm_params &p, const wk_gemm_seg *segs, int n_segs, cudaStream_t st) {
    int N = 0;
    for (int i = 0; i < n_segs; i++) N += segs[i].W.n_rows;
    const bool wide = N > 2048, long_k = p.n_in >= 32 * WK_GEMM_BK;
    if (p.n_rows <= 16) {
        if (long_k) return launch_mma<T, 1, 1, 4>(p, segs, n_segs, st);
        if (wide) return launch_mma<T, 1, 2, 2>(p, segs, n_segs, st);
        return launch_mma<T, 1, 1, 2>(p, segs, n_segs, st);
    }
    if (p.n_rows <= 64) {
        if (wide) return launch_mma<T, 2, 4, 1>(p, segs, n_segs, st);
        return launch_mma<T, 2, 1, 2>(p, segs, n_segs, st);
    }
    return launch_mma<T, 4, 4, 1>(p, segs, n_segs, st);
}

cudaError_t wk_cu_gemm(const wk_gemm_seg *segs, int n_segs, const __half *x16, const float *x32, int lda,
                       int n_rows, bool add, cudaStream_t st) {
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
    for (int i = 0; i < n_segs; i++) p.seg[i] = segs[i];
    p.n_segs = n_segs, p.x16 = x16, p.lda = lda, p.n_in = segs[0].W.n_in, p.n_rows = n_rows, p.add = add;
    cudaError_t e = cudaErrorInvalidValue;
    WK_TYPE_SWITCH(type, e = launch_type<T_>(p, segs, n_segs, st));
    return e;
}
