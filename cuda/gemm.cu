/* gemm.cu — y = x · Wᵀ for any number of rows, batch-invariant.
 *
 * One reduction order per output, fixed by n_in alone: the k dimension is cut
 * into tiles of WK_GEMM_BK = 64; warp w of the block (8 warps) accumulates
 * tiles w, w+8, w+16, ... in increasing order with mma.sync m16n8k16 (f16
 * inputs, f32 accumulators: per tile four k16 steps in order), and the eight
 * warp partials are added in warp order, (((p0 + p1) + p2) + ...) + p7;
 * which elements of a k-tile meet in which k16 step is gemm-tile.cuh's
 * fragment map. (Tiles load U of a warp's k-tiles before computing any, for
 * more bytes in flight; the order of the additions is unchanged.) An mma's
 * output element depends only on its own A row and B column, so a row's
 * results are the same whether it shares a 16-row tile with 0 or 63 other
 * rows, and whatever the tile shape (MT m16 tiles × NT n8 tiles per block)
 * the launcher picks for the number of rows. A persistent decode kernel
 * reproduces it by running gemm_tile's order.
 *
 * Weights stay in their GGUF type: each lane dequantizes its own fragment
 * chunks (wk_deq8) to f16 in registers; the activations are already f16.
 * A decode step (<= 8 rows) of an F16/BF16 matrix small enough for one wave
 * stages each block's weight rows in shared memory first (gemm_staged_kernel,
 * gemm-tile.cuh): the copy starts before the block waits for the kernel
 * before it; the fragments and their order are the same. (gemm-fused.cu:
 * decode GEMMs whose epilogue does the next kernel's work, same bits.)
 *
 * Rows are 16-byte aligned whole chunks (n_in % 8 == 0); the backend uploads
 * an F16/BF16 matrix whose rows are not as F32. F32 weights (the small test
 * models) take a plain fp32 path instead, so they keep full precision: one warp per output column, lane l summing
 * k = l, l+32, ... in order, then a fixed xor tree. The choice depends on the
 * matrix's type only, never on the rows.
 */
#include "cuda/gemm-launch.cuh"

struct gemm_params {
    wk_gemm_seg seg[3];
    int blk_end[3]; /* cumulative n-blocks per segment */
    int n_segs;
    const __half *x16;
    int lda, n_in, n_rows, add;
    int pdl; /* launched as a programmatic dependent (wk_launch_pdl) */
};

/* y (=|+=) v at (row m, column n) of a segment's output. */
struct seg_out {
    float *y;
    int ldy, add;
    __device__ __forceinline__ void prepare(int, int, int) {}
    __device__ __forceinline__ void operator()(int m, int n, float v) const {
        float *o = y + (size_t)m * ldy + n;
        if (add) *o += v;
        else *o = v;
    }
};

/* The segment of this block (blockIdx.x over the segments' n-blocks of NT*8
 * weight rows) and its first weight row. */
__device__ __forceinline__ const wk_gemm_seg &block_seg(const gemm_params &p, int NT, int *n0) {
    int si = 0;
    while ((int)blockIdx.x >= p.blk_end[si]) si++;
    *n0 = ((int)blockIdx.x - (si ? p.blk_end[si - 1] : 0)) * NT * 8;
    return p.seg[si];
}

/* MT m16 tiles of rows a block (grid.y over them), or MT == 0: a step of at
 * most 8 rows (decode), rows 8..15 of the m16 tile never loaded. */
template <int T, int MT, int NT, int U>
__global__ void __launch_bounds__(GEMM_WARPS * 32) gemm_kernel(const __grid_constant__ gemm_params p) {
    extern __shared__ __align__(16) uint8_t smem[];
    int n0;
    const wk_gemm_seg &S = block_seg(p, NT, &n0);
    gemm_tile<T, MT, NT, U>(S.W, n0, p.x16, p.lda, p.n_rows, blockIdx.y * MT * 16, p.n_in, smem,
                            seg_out{S.y, S.ldy, p.add}, p.pdl != 0);
}

/* At most 8 rows, the block's weight rows staged in shared memory
 * (gemm-tile.cuh): 3 blocks an SM (<= 80 registers), so that a matrix fits
 * one wave. */
template <int T, int NT>
__global__ void __launch_bounds__(GEMM_WARPS * 32, 3) gemm_staged_kernel(const __grid_constant__ gemm_params p) {
    extern __shared__ __align__(16) uint8_t smem[];
    int n0;
    const wk_gemm_seg &S = block_seg(p, NT, &n0);
    gemm_tile<T, 0, NT, 1, true>(S.W, n0, p.x16, p.lda, p.n_rows, 0, p.n_in, smem, seg_out{S.y, S.ldy, p.add},
                                 p.pdl != 0);
}

/* F32 weights: warp per (output column, 8-row group), fp32 throughout. */
struct gemm32_params {
    wk_gemm_seg seg[3];
    int col_end[3];
    const float *x32;
    int lda, n_in, n_rows, add;
};

__global__ void __launch_bounds__(256) gemm_f32_kernel(const __grid_constant__ gemm32_params p) {
    const int warp = threadIdx.x >> 5, col = blockIdx.x * 8 + warp;
    int si = 0;
    while (si < 2 && col >= p.col_end[si]) si++;
    if (col >= p.col_end[si]) return;
    const wk_gemm_seg &S = p.seg[si];
    /* gemm_f32_cols gives warp w weight row n0 + w */
    const int n0 = col - (si ? p.col_end[si - 1] : 0) - warp;
    gemm_f32_cols(S.W, n0, p.x32, p.lda, blockIdx.y * 8, min(p.n_rows, (int)(blockIdx.y + 1) * 8), p.n_in,
                  seg_out{S.y, S.ldy, p.add});
}

/* p->blk_end: cumulative blocks of `cols` weight rows per segment; returns the total. */
static int set_blk_end(gemm_params *p, const wk_gemm_seg *segs, int n_segs, int cols) {
    int blocks = 0;
    for (int i = 0; i < 3; i++) {
        if (i < n_segs) blocks += wk_cdiv(segs[i].W.n_rows, cols);
        p->blk_end[i] = blocks;
    }
    return blocks;
}

template <int T, int MT, int NT, int U>
static cudaError_t launch(const gemm_params &p0, const wk_gemm_seg *segs, int n_segs, cudaStream_t st) {
    gemm_params p = p0;
    const int blocks = set_blk_end(&p, segs, n_segs, NT * 8);
    const size_t smem = wk_gemm_tile_smem(MT, NT);
    static bool attr_set = false; /* per instantiation */
    if (!attr_set) {
        cudaError_t e =
            cudaFuncSetAttribute(gemm_kernel<T, MT, NT, U>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return e;
        attr_set = true;
    }
    dim3 grid(blocks, MT ? wk_cdiv(p.n_rows, MT * 16) : 1);
    return wk_launch_pdl(gemm_kernel<T, MT, NT, U>, p.n_rows, grid, GEMM_WARPS * 32, smem, st, p);
}

/* The staged decode kernel when every block of it is resident at once (one
 * wave: only then is every block's copy under way before the kernel before
 * it ends); false when it is not (nothing launched). */
template <int T, int NT>
static bool launch_staged(const gemm_params &p0, const wk_gemm_seg *segs, int n_segs, cudaStream_t st,
                          cudaError_t *err) {
    gemm_params p = p0;
    const int blocks = set_blk_end(&p, segs, n_segs, NT * 8);
    const size_t smem = wk_gemm_staged_smem(NT, segs[0].W.row_bytes); /* one type and n_in: one row length */
    return launch_one_wave<gemm_staged_kernel<T, NT>>(blocks, smem, p.n_rows, st, p, err);
}

/* Tile shape by the number of rows and the matrix's width (results do not
 * depend on it, see the top): few rows take narrow tiles, so a narrow matrix
 * still spreads over the SMs, and more k-tiles in flight when rows are long. */
template <int T>
static cudaError_t launch_type(const gemm_params &p, const wk_gemm_seg *segs, int n_segs, cudaStream_t st) {
    int N = 0;
    for (int i = 0; i < n_segs; i++) N += segs[i].W.n_rows;
    const bool wide = N > 2048, long_k = p.n_in >= 32 * WK_GEMM_BK;
    if (p.n_rows <= 8) {
        /* f16 weights staged in shared memory when the matrix fits one wave, in the
         * narrowest tiles that do (the quantized types measured slower staged: their
         * dequantization then waits on shared-memory loads; cuda/NOTES.md) */
        if constexpr (T == GGML_TYPE_F16 || T == GGML_TYPE_BF16) {
            cudaError_t e = cudaSuccess;
            if (launch_staged<T, 1>(p, segs, n_segs, st, &e) || launch_staged<T, 4>(p, segs, n_segs, st, &e)) return e;
        }
        /* U = 12: one round of loads a warp at K = 4864 (112 blocks: one an SM) */
        if (long_k) return launch<T, 0, 1, 12>(p, segs, n_segs, st);
        if (wide) return launch<T, 0, 2, 2>(p, segs, n_segs, st);
        return launch<T, 0, 1, 2>(p, segs, n_segs, st);
    }
    if (p.n_rows <= 16) {
        if (long_k) return launch<T, 1, 1, 4>(p, segs, n_segs, st);
        if (wide) return launch<T, 1, 2, 2>(p, segs, n_segs, st);
        return launch<T, 1, 1, 2>(p, segs, n_segs, st);
    }
    if (p.n_rows <= 64) {
        if (wide) return launch<T, 2, 4, 1>(p, segs, n_segs, st);
        return launch<T, 2, 1, 2>(p, segs, n_segs, st);
    }
    return launch<T, 4, 4, 1>(p, segs, n_segs, st);
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
        return wk_launch_pdl(gemm_f32_kernel, n_rows, dim3(wk_cdiv(cols, 8), wk_cdiv(n_rows, 8)), 256, 0, st, p);
    }
    gemm_params p = {};
    for (int i = 0; i < n_segs; i++) p.seg[i] = segs[i];
    p.n_segs = n_segs, p.x16 = x16, p.lda = lda, p.n_in = segs[0].W.n_in, p.n_rows = n_rows, p.add = add;
    p.pdl = n_rows <= WK_PDL_MAX_ROWS;
    cudaError_t e = cudaErrorInvalidValue;
    /* (F32 returned above: no tensor-core kernels are instantiated for it) */
    WK_TYPE_SWITCH(type, if constexpr (T_ != GGML_TYPE_F32) e = launch_type<T_>(p, segs, n_segs, st));
    return e;
}
