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
 * before it; the fragments and their order are the same. Two decode kernels
 * pair weight rows in a block (gemm_tile's PAIR) so that what the next kernel
 * would do with two outputs happens in the epilogue instead: gate/up rows n
 * with the GLU (wk_cu_gemm_glu), and rows i, i + hd/2 of a head with bias
 * and NEOX rope into q and the KV page (wk_cu_gemm_qkv) — each output's sum
 * is the unpaired GEMM's, and the epilogue's arithmetic the next kernel's.
 *
 * Rows are 16-byte aligned whole chunks (n_in % 8 == 0); the backend uploads
 * an F16/BF16 matrix whose rows are not as F32. F32 weights (the small test
 * models) take a plain fp32 path instead, so they keep full precision: one warp per output column, lane l summing
 * k = l, l+32, ... in order, then a fixed xor tree. The choice depends on the
 * matrix's type only, never on the rows.
 */
#include "cuda/gemm-tile.cuh"
#include "cuda/rowops.cuh"

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

/* ---- gate/up with the GLU in the epilogue (decode steps) ----------------------
 * A block takes weight rows [n0, n0 + NT*4) of gate and the same rows of up
 * (gemm_tile's PAIR), so each output's two dot products — the very sums of
 * the unpaired GEMM — meet in its epilogue, which writes what glu_kernel
 * (norm-rope.cu) would: act(g) * u in f32 and f16, zeros in the padding. */
struct glu_params {
    wk_cu_mat gate, up;
    const __half *x16;
    int lda, n_in, n_rows, gelu;
    float *y32;
    __half *y16;
    int ldy, pad_end; /* zeros in columns [n_ff, pad_end) */
    int pdl;
};

struct glu_out {
    float *y32;
    __half *y16;
    int ldy, n_ff, pad_end, gelu;
    __device__ __forceinline__ void prepare(int, int, int) {}
    __device__ __forceinline__ void operator()(int m, int n, float g, float u) const {
        const float v = wk_glu_value(g, u, gelu);
        y32[(size_t)m * ldy + n] = v;
        y16[(size_t)m * ldy + n] = __float2half_rn(v);
        if (n == n_ff - 1)
            for (int i = n_ff; i < pad_end; i++) y32[(size_t)m * ldy + i] = 0.0f, y16[(size_t)m * ldy + i] = __float2half_rn(0.0f);
    }
};

template <int T, int NT, int U>
__global__ void __launch_bounds__(GEMM_WARPS * 32) gemm_glu_kernel(const __grid_constant__ glu_params p) {
    extern __shared__ __align__(16) uint8_t smem[];
    gemm_tile<T, 0, NT, U, false, true>(p.gate, blockIdx.x * NT * 4, p.x16, p.lda, p.n_rows, 0, p.n_in, smem,
                                        glu_out{p.y32, p.y16, p.ldy, p.gate.n_rows, p.pad_end, p.gelu}, p.pdl != 0,
                                        &p.up);
}

template <int T, int NT>
__global__ void __launch_bounds__(GEMM_WARPS * 32, 3) gemm_glu_staged_kernel(const __grid_constant__ glu_params p) {
    extern __shared__ __align__(16) uint8_t smem[];
    gemm_tile<T, 0, NT, 1, true, true>(p.gate, blockIdx.x * NT * 4, p.x16, p.lda, p.n_rows, 0, p.n_in, smem,
                                       glu_out{p.y32, p.y16, p.ldy, p.gate.n_rows, p.pad_end, p.gelu}, p.pdl != 0,
                                       &p.up);
}

/* ---- Q, K, V with bias and rope in the epilogue (decode steps) ----------------
 * For models whose rope rotates every dimension NEOX-style (dims i and
 * i + hd/2 of a head form a pair) and have no q/k norm: a block takes
 * weight rows [n0, n0 + 8) of Q, K or V (n0 = head × hd + i0, i0 < hd/2)
 * and the 8 rows hd/2 further (gemm_tile's PAIR, the second "matrix" a view
 * of the same one), so each pair of dimensions meets in its epilogue, which
 * does what wk_qkv_post_head (rowops.cuh) does with them — bias, rope with
 * the same explicit roundings, q to a.q in f32, k / v in f16 into the row's
 * KV page — from the same sums: the same bits, without the (rows, qd + 2
 * kvd) f32 intermediate and the qkv_post kernel. */
struct qkv_params {
    wk_cu_mat W[3]; /* wq, wk, wv */
    int blk_end[3]; /* cumulative blocks: n_head, n_kv, n_kv heads of hd/16 blocks */
    const __half *x16;
    int lda, n_in, n_rows, pdl;
    wk_qkv_post_args a;
};

struct qkv_out {
    const wk_qkv_post_args *a;
    int kind, n_rows; /* kind: 0 q, 1 k, 2 v */
    /* prepared for this thread's one output (rows <= 8 × 8 outputs): */
    int pos, page;
    float2 cs;
    __device__ __forceinline__ void prepare(int m0, int n0, int per_row) {
        const int o = threadIdx.x, m = m0 + o / per_row, half = a->hd / 2;
        pos = page = 0, cs = make_float2(0.0f, 0.0f);
        if (o >= 8 * per_row || m >= n_rows) return;
        pos = a->row_pos[m];
        if (kind > 0) page = a->pt[a->row_pt[m] + pos / WK_KV_PAGE_TOKENS];
        if (kind < 2) cs = a->cs[(size_t)pos * half + (n0 + o % per_row) % a->hd];
    }
    __device__ __forceinline__ void operator()(int m, int n, float v0, float v1) const {
        const int hd = a->hd, half = hd / 2, i = n % hd, hh = n / hd;
        const float *bias = kind == 0 ? a->bq : kind == 1 ? a->bk : a->bv;
        float x0 = v0, x1 = v1;
        if (bias) x0 += bias[n], x1 += bias[n + half];
        if (kind < 2) { /* explicit roundings: wk_qkv_post_head's expressions */
            const float c = cs.x, s = cs.y;
            const float y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
            const float y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
            x0 = y0, x1 = y1;
        }
        if (kind == 0) {
            float *q = a->q + (size_t)m * a->n_head * hd + hh * hd + i;
            q[0] = x0, q[half] = x1;
        } else {
            const int kvd = a->n_head_kv * hd, slot = pos % WK_KV_PAGE_TOKENS;
            __half *d = (kind == 1 ? a->kc : a->vc) + ((size_t)page * WK_KV_PAGE_TOKENS + slot) * kvd + hh * hd + i;
            d[0] = __float2half_rn(x0), d[half] = __float2half_rn(x1);
        }
    }
};

/* The block's segment, head and first weight row; the pair view (rows hd/2 further). */
__device__ __forceinline__ int qkv_block(const qkv_params &p, int *n0, wk_cu_mat *W2) {
    int si = 0;
    while ((int)blockIdx.x >= p.blk_end[si]) si++;
    const int local = (int)blockIdx.x - (si ? p.blk_end[si - 1] : 0), per_head = p.a.hd / 16;
    *n0 = (local / per_head) * p.a.hd + (local % per_head) * 8;
    *W2 = p.W[si];
    W2->w += (size_t)(p.a.hd / 2) * W2->row_bytes;
    return si;
}

template <int T, int U>
__global__ void __launch_bounds__(GEMM_WARPS * 32) gemm_qkv_kernel(const __grid_constant__ qkv_params p) {
    extern __shared__ __align__(16) uint8_t smem[];
    int n0;
    wk_cu_mat W2;
    const int si = qkv_block(p, &n0, &W2);
    qkv_out epi = {&p.a, si, p.n_rows, 0, 0, {0.0f, 0.0f}};
    gemm_tile<T, 0, 2, U, false, true>(p.W[si], n0, p.x16, p.lda, p.n_rows, 0, p.n_in, smem, epi, p.pdl != 0, &W2);
}

template <int T>
__global__ void __launch_bounds__(GEMM_WARPS * 32, 3) gemm_qkv_staged_kernel(const __grid_constant__ qkv_params p) {
    extern __shared__ __align__(16) uint8_t smem[];
    int n0;
    wk_cu_mat W2;
    const int si = qkv_block(p, &n0, &W2);
    qkv_out epi = {&p.a, si, p.n_rows, 0, 0, {0.0f, 0.0f}};
    gemm_tile<T, 0, 2, 1, true, true>(p.W[si], n0, p.x16, p.lda, p.n_rows, 0, p.n_in, smem, epi, p.pdl != 0, &W2);
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

/* How many blocks of a (staged or paired decode) kernel with `smem` shared bytes are
 * resident at once on the device (0: the driver could not say). The answer
 * is remembered for the few row lengths a model has (one a distinct n_in),
 * so that the launches of an eager step do not ask the driver again. */
template <auto kernel>
static int wave_blocks(size_t smem) {
    static size_t key[4]; /* per instantiation */
    static int val[4], n_keys = 0, n_sm = 0;
    for (int i = 0; i < n_keys; i++)
        if (key[i] == smem) return val[i];
    int dev = 0, max_smem = 0, per_sm = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        (!n_sm && cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) ||
        cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, max_smem) != cudaSuccess ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, GEMM_WARPS * 32, smem) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (n_keys < 4) key[n_keys] = smem, val[n_keys++] = per_sm * n_sm;
    return per_sm * n_sm;
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
    if (blocks > wave_blocks<gemm_staged_kernel<T, NT>>(smem)) return false;
    *err = wk_launch_pdl(gemm_staged_kernel<T, NT>, p.n_rows, dim3(blocks), GEMM_WARPS * 32, smem, st, p);
    return true;
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

/* The paired gate/up decode tile by type: F16/BF16 staged (16 rows of each
 * matrix a block), or from registers (8 or 16 rows of each; long rows: fewer
 * k-tiles a warp in flight, as the pair doubles the weight registers) — for
 * rows shorter than 2,048 only where the grid is one wave: the unpaired GEMM
 * and the GLU kernel measured faster than a paired grid of two waves
 * (Qwen2.5-0.5B Q8_0: the GLU kernel between them let the down GEMM's
 * blocks start streaming their weights early; cuda/NOTES.md). */
template <int T>
static cudaError_t launch_glu(const glu_params &p, cudaStream_t st) {
    const int N = p.gate.n_rows;
    if constexpr (T == GGML_TYPE_F16 || T == GGML_TYPE_BF16) {
        const size_t smem = wk_gemm_staged_smem(4, p.gate.row_bytes);
        if (wk_cdiv(N, 16) <= wave_blocks<gemm_glu_staged_kernel<T, 4>>(smem))
            return wk_launch_pdl(gemm_glu_staged_kernel<T, 4>, p.n_rows, dim3(wk_cdiv(N, 16)), GEMM_WARPS * 32, smem,
                                 st, p);
    }
    if (p.n_in >= 32 * WK_GEMM_BK)
        return wk_launch_pdl(gemm_glu_kernel<T, 2, 6>, p.n_rows, dim3(wk_cdiv(N, 8)), GEMM_WARPS * 32,
                             wk_gemm_tile_smem(0, 2), st, p);
    if (wk_cdiv(N, 8) <= wave_blocks<gemm_glu_kernel<T, 2, 2>>(wk_gemm_tile_smem(0, 2)))
        return wk_launch_pdl(gemm_glu_kernel<T, 2, 2>, p.n_rows, dim3(wk_cdiv(N, 8)), GEMM_WARPS * 32,
                             wk_gemm_tile_smem(0, 2), st, p);
    if (wk_cdiv(N, 16) <= wave_blocks<gemm_glu_kernel<T, 4, 1>>(wk_gemm_tile_smem(0, 4)))
        return wk_launch_pdl(gemm_glu_kernel<T, 4, 1>, p.n_rows, dim3(wk_cdiv(N, 16)), GEMM_WARPS * 32,
                             wk_gemm_tile_smem(0, 4), st, p);
    return cudaErrorNotSupported;
}

cudaError_t wk_cu_gemm_glu(const wk_cu_mat &gate, const wk_cu_mat &up, const __half *x16, int lda, int n_rows,
                           bool gelu, float *y32, __half *y16, int ldy, cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    if (n_rows > 8 || gate.type != up.type || gate.type == GGML_TYPE_F32 || gate.n_rows != up.n_rows ||
        gate.n_in != up.n_in || gate.row_bytes != up.row_bytes)
        return cudaErrorNotSupported;
    const int n_ff = gate.n_rows;
    glu_params p = {gate, up, x16, lda, gate.n_in, n_rows, gelu ? 1 : 0, y32, y16, ldy,
                    min(ldy, wk_cdiv(n_ff, WK_GEMM_BK) * WK_GEMM_BK), n_rows <= WK_PDL_MAX_ROWS};
    cudaError_t e = cudaErrorNotSupported;
    WK_TYPE_SWITCH(gate.type, if constexpr (T_ != GGML_TYPE_F32) e = launch_glu<T_>(p, st));
    return e;
}

template <int T>
static cudaError_t launch_qkv(const qkv_params &p, cudaStream_t st) {
    const int blocks = p.blk_end[2];
    if constexpr (T == GGML_TYPE_F16 || T == GGML_TYPE_BF16) {
        const size_t smem = wk_gemm_staged_smem(2, p.W[0].row_bytes);
        if (blocks <= wave_blocks<gemm_qkv_staged_kernel<T>>(smem))
            return wk_launch_pdl(gemm_qkv_staged_kernel<T>, p.n_rows, dim3(blocks), GEMM_WARPS * 32, smem, st, p);
    }
    if (p.n_in >= 32 * WK_GEMM_BK)
        return wk_launch_pdl(gemm_qkv_kernel<T, 6>, p.n_rows, dim3(blocks), GEMM_WARPS * 32, wk_gemm_tile_smem(0, 2), st, p);
    return wk_launch_pdl(gemm_qkv_kernel<T, 2>, p.n_rows, dim3(blocks), GEMM_WARPS * 32, wk_gemm_tile_smem(0, 2), st, p);
}

cudaError_t wk_cu_gemm_qkv(const wk_cu_mat &wq, const wk_cu_mat &wk, const wk_cu_mat &wv, const __half *x16, int lda,
                           int n_rows, const wk_qkv_post_args &a, cudaStream_t st) {
    if (n_rows <= 0) return cudaSuccess;
    const int type = wq.type;
    if (n_rows > 8 || !a.neox || a.rd != a.hd || a.hd % 16 || a.q_norm || a.k_norm || type == GGML_TYPE_F32 ||
        wk.type != type || wv.type != type)
        return cudaErrorNotSupported;
    qkv_params p = {};
    p.W[0] = wq, p.W[1] = wk, p.W[2] = wv;
    const int per_head = a.hd / 16;
    p.blk_end[0] = a.n_head * per_head;
    p.blk_end[1] = p.blk_end[0] + a.n_head_kv * per_head;
    p.blk_end[2] = p.blk_end[1] + a.n_head_kv * per_head;
    p.x16 = x16, p.lda = lda, p.n_in = wq.n_in, p.n_rows = n_rows, p.pdl = n_rows <= WK_PDL_MAX_ROWS, p.a = a;
    cudaError_t e = cudaErrorNotSupported;
    WK_TYPE_SWITCH(type, if constexpr (T_ != GGML_TYPE_F32) e = launch_qkv<T_>(p, st));
    return e;
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
