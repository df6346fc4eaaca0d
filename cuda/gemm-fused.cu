/* gemm-fused.cu — decode GEMMs (<= 8 rows) whose epilogue does the next
 * kernel's work, with the same bits as the two kernels they replace.
 *
 * Both pair weight rows in a block (gemm_tile's PAIR: n8 tiles 0..NT/2-1
 * take rows of W, tiles NT/2.. the same rows of W2) so that the two sums
 * the next kernel would combine meet in one epilogue call: gate/up rows n
 * with the GLU (wk_cu_gemm_glu), and rows i, i + hd/2 of a head with bias
 * and NEOX rope into q and the KV page (wk_cu_gemm_qkv). Each sum is the
 * unpaired GEMM's (gemm.cu's reduction order: an mma output element depends
 * only on its own A row and B column), and the epilogue's arithmetic is the
 * next kernel's own function (wk_glu_value, wk_rope_pair in rowops.cuh).
 * Where a case does not apply they return cudaErrorNotSupported and the
 * backend runs the two kernels.
 */
#include "cuda/gemm-launch.cuh"
#include "cuda/rowops.cuh"

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
        if (kind < 2) wk_rope_pair(x0, x1, cs);
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
    cudaError_t e = cudaErrorNotSupported;
    if constexpr (T == GGML_TYPE_F16 || T == GGML_TYPE_BF16) {
        if (launch_one_wave<gemm_glu_staged_kernel<T, 4>>(wk_cdiv(N, 16), wk_gemm_staged_smem(4, p.gate.row_bytes),
                                                          p.n_rows, st, p, &e))
            return e;
    }
    if (p.n_in >= 32 * WK_GEMM_BK)
        return wk_launch_pdl(gemm_glu_kernel<T, 2, 6>, p.n_rows, dim3(wk_cdiv(N, 8)), GEMM_WARPS * 32,
                             wk_gemm_tile_smem(0, 2), st, p);
    if (launch_one_wave<gemm_glu_kernel<T, 2, 2>>(wk_cdiv(N, 8), wk_gemm_tile_smem(0, 2), p.n_rows, st, p, &e) ||
        launch_one_wave<gemm_glu_kernel<T, 4, 1>>(wk_cdiv(N, 16), wk_gemm_tile_smem(0, 4), p.n_rows, st, p, &e))
        return e;
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
        cudaError_t e = cudaSuccess;
        if (launch_one_wave<gemm_qkv_staged_kernel<T>>(blocks, wk_gemm_staged_smem(2, p.W[0].row_bytes), p.n_rows, st,
                                                       p, &e))
            return e;
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
