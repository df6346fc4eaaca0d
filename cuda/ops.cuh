/* ops.cuh — the launchers of the CUDA backend's kernels, one file per job:
 *   gemm.cu        y = x · Wᵀ over any number of rows (tensor cores, fixed order)
 *   gemm-fused.cu  decode GEMMs doing the next kernel's work in their epilogue (GLU; bias + rope + KV)
 *   attention.cu   paged attention over each row's own page table
 *   norm-rope.cu   embedding, rmsnorm, q/k head norms + rope + KV page write, GLU
 *   sample.cu      the sampler (core/sample.h on the GPU) and batched greedy
 * Every launcher takes the stream explicitly and returns the launch's error
 * (cudaGetLastError). Shapes: "(a, b) f32" = a rows of b floats, row-major,
 * device memory. Activations that feed a GEMM are kept twice: f32 (the F32
 * weight path) and f16 (the tensor-core path), rows padded to lda elements
 * (a multiple of WK_GEMM_BK) with zeros past the row's length.
 *
 * Batch invariance (core/backend.h): every kernel here computes a row's
 * values from that row's inputs (and its sequence's K/V) in an order fixed by
 * the model's shapes only — never by the number of rows, by which other rows
 * share a tile, or by the grid.
 */
#ifndef WK_CUDA_OPS_CUH
#define WK_CUDA_OPS_CUH

#include <utility>

#include "cuda/common.cuh"
#include "core/backend.h"

/* Steps of at most this many rows launch their kernels with programmatic
 * stream serialization (wk_dep_wait, common.cuh): a decode step's 9
 * kernels a layer are resident, prefetching their weights into L2, while
 * the kernels before them run. Larger steps launch plainly: there the early blocks only
 * competed with the tail of the kernel before (H200: -10% at 64 rows for
 * Q8_0 and Q4_K_M, cuda/NOTES.md). Results are the same bits either way. */
#define WK_PDL_MAX_ROWS 16

/* kernel<<<grid, block, smem, st>>>(args), with programmatic stream
 * serialization when rows <= WK_PDL_MAX_ROWS (the kernel calls wk_dep_wait()
 * before it touches the previous kernel's data). */
template <typename... KArgs, typename... Args>
static inline cudaError_t wk_launch_pdl(void (*kernel)(KArgs...), int rows, dim3 grid, dim3 block, size_t smem,
                                        cudaStream_t st, Args &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = rows <= WK_PDL_MAX_ROWS ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// --- gemm.cu -------------------------------------------------------------------

#define WK_GEMM_BK 64 /* k elements per tile; activation rows are padded to a multiple */
#define WK_GEMM_MROWS 64 /* activation buffers hold a multiple of this many rows */

/* One output segment of a GEMM launch: y[r*ldy + n] (=|+=) dot(W row n, x row r)
 * for n < W.n_rows. A launch covers up to 3 segments with the same input (q, k,
 * v or gate, up), one grid. */
struct wk_gemm_seg {
    wk_cu_mat W;
    float *y;
    int ldy;
};

/* y = x · Wᵀ (add: y += ...) for rows 0..n_rows-1. x16: (>= roundup(n_rows,
 * WK_GEMM_MROWS), lda) f16, x32: the same rows in f32 (the F32 weight path).
 * All segments share n_in = W.n_in. */
cudaError_t wk_cu_gemm(const wk_gemm_seg *segs, int n_segs, const __half *x16, const float *x32, int lda,
                       int n_rows, bool add, cudaStream_t st);

// --- norm-rope.cu --------------------------------------------------------------

/* x[r] = dequant(embd row tok[r]) * scale: (n_rows, n_embd) f32. */
cudaError_t wk_cu_embed(const wk_cu_mat &embd, const int32_t *tok, int n_rows, float scale, float *x, cudaStream_t st);

/* Per row r: y = rmsnorm(x[r]) * w into y32 (ld ldy) and y16 (ld ldy, may be
 * NULL); add != 0: x[r] += rmsnorm(y_in[r]) * w instead (post-norm residual;
 * then the input is `in`, the output x). n: row length. */
cudaError_t wk_cu_rmsnorm(const float *x, int ldx, const float *w, int n_rows, int n, float eps, float *y32,
                          __half *y16, int ldy, cudaStream_t st);
cudaError_t wk_cu_rmsnorm_add(const float *in, int ldin, const float *w, int n_rows, int n, float eps, float *x,
                              cudaStream_t st);

/* The rows' q/k/v (qkv: (n_rows, qd + 2 kvd) f32) -> bias, per-head rmsnorm
 * (q_norm/k_norm may be NULL), rope at each row's position (table
 * cs: (n_ctx, rd/2) float2), q into q (n_rows, qd) f32, k/v (f16) into the
 * row's KV page: kc/vc are this layer's (n_pages, PAGE, kvd) f16; the page of
 * row r's position comes from its sequence's page table. */
struct wk_qkv_post_args {
    const float *qkv;
    const float *bq, *bk, *bv;
    const float *q_norm, *k_norm;
    float eps;
    const float2 *cs;
    int n_head, n_head_kv, hd, rd, neox;
    const int32_t *row_pos;   /* (n_rows) */
    const int32_t *row_pt;    /* (n_rows) offset of the row's page table in pt */
    const int32_t *pt;        /* page tables, concatenated */
    float *q;
    __half *kc, *vc;
};
cudaError_t wk_cu_qkv_post(const wk_qkv_post_args &a, int n_rows, cudaStream_t st);

/* act = act(gate) * up per element: gu (n_rows, 2 n_ff) f32 [gate | up] ->
 * y32 / y16 (n_rows, ld) (zeros in the padding). gelu: tanh-GELU, else SiLU. */
cudaError_t wk_cu_glu(const float *gu, int n_rows, int n_ff, bool gelu, float *y32, __half *y16, int ld,
                      cudaStream_t st);

/* dst16[i] = src16[rows[i]], dst32 likewise: gather rows for the logits GEMM. */
cudaError_t wk_cu_gather_rows(const __half *src16, const float *src32, int ld, const int32_t *rows, int n,
                              __half *dst16, float *dst32, cudaStream_t st);

// --- gemm-fused.cu -------------------------------------------------------------

/* The gate/up GEMM with the GLU in its epilogue, for a decode step:
 * y32 / y16 (n_rows, ldy) = act(x · gateᵀ) * (x · upᵀ) (zeros in the
 * padding to a whole k-tile), the same bits as wk_cu_gemm into [gate | up]
 * followed by wk_cu_glu — each block computes the same rows of both
 * matrices, so the pair meets in its epilogue and the (n_rows, 2 n_ff) f32
 * intermediate and the GLU kernel drop out. Returns cudaErrorNotSupported,
 * having launched nothing, where it does not apply (more than 8 rows, gate
 * and up of different types, F32 weights, a grid measured slower than the
 * two kernels: gemm-fused.cu): the caller takes the two kernels then. */
cudaError_t wk_cu_gemm_glu(const wk_cu_mat &gate, const wk_cu_mat &up, const __half *x16, int lda, int n_rows,
                           bool gelu, float *y32, __half *y16, int ldy, cudaStream_t st);

/* The QKV GEMM of a decode step with wk_cu_qkv_post's work in its
 * epilogue — from x16 (n_rows, lda) to a.q, a.kc, a.vc (a.qkv unused): the
 * same bits as wk_cu_gemm into a.qkv followed by wk_cu_qkv_post, one kernel.
 * Returns cudaErrorNotSupported, having launched nothing, where it does not
 * apply (more than 8 rows; rope not NEOX over the whole head; hd % 16; q/k
 * norms; Q, K, V of different types; F32 weights). */
cudaError_t wk_cu_gemm_qkv(const wk_cu_mat &wq, const wk_cu_mat &wk, const wk_cu_mat &wv, const __half *x16, int lda,
                           int n_rows, const wk_qkv_post_args &a, cudaStream_t st);

// --- attention.cu --------------------------------------------------------------

#define WK_ATT_CHUNK 1024 /* keys per split: split s of a row covers keys [1024 s, 1024 s + 1024) */

/* Attention of every row: query q[r] (n_head heads) over keys
 * [p0, pos] of its sequence, p0 = max(0, pos - window + 1) when window > 0,
 * read through the page table (same row_pos/row_pt/pt as qkv_post). Keys
 * are split at absolute multiples of WK_ATT_CHUNK; each split's (max, sum,
 * weighted V) lands in part (n_rows, n_head, max_split, hd + 2) and a second
 * kernel merges a row's splits in split order; a row with one split is
 * finished by its split block. max_split: splits of the longest row (grids
 * larger than needed are fine: blocks past a row's last split exit).
 * out: y32/y16 (n_rows, ld). */
struct wk_attn_args {
    const float *q;
    const __half *kc, *vc;
    const int32_t *row_pos, *row_pt, *pt;
    int n_head, n_head_kv, hd, window;
    float scale;
    float *part;
    float *y32;
    __half *y16;
    int ld;
};
cudaError_t wk_cu_attention(const wk_attn_args &a, int n_rows, int max_split, cudaStream_t st);

// --- sample.cu ------------------------------------------------------------------

/* The sampler's result in device memory (copied to pinned host memory). */
struct wk_cu_sample_res {
    int32_t token;
    float logprob;
    int32_t n_top;
    int32_t top_ids[WK_MAX_LOGPROBS];
    float top_logprobs[WK_MAX_LOGPROBS];
    double lse;      /* log-sum-exp of the raw logits (or NaN: all -inf) */
    int32_t argmax;  /* greedy choice over the penalized logits */
};

struct wk_cu_sampler {
    int n_vocab;
    int n_red;             /* blocks of the first reduction stage */
    float *z;              /* (n_vocab) penalized logits */
    uint32_t *keys[2];     /* (n_vocab) sort keys, ping-pong */
    int32_t *ids[2];       /* (n_vocab) */
    double *w;             /* (n_vocab) weights in sorted order */
    uint8_t *seen;         /* (n_vocab / 8 + 1) penalty bitmap */
    int32_t *hist;         /* (hist_cap) history window */
    int hist_cap;
    void *red;             /* reduction partials */
    unsigned *counter;     /* blocks done in the reduction (zero between uses) */
    void *cub_tmp;
    size_t cub_bytes;
    wk_cu_sample_res *res; /* device */
};

/* Device bytes the sampler needs for n_vocab (cub workspace included). */
size_t wk_cu_sampler_bytes(int n_vocab, int hist_cap);
/* Carve the sampler's buffers out of mem (wk_cu_sampler_bytes); the caller
 * zeroes s->counter once. */
void wk_cu_sampler_init(wk_cu_sampler *s, int n_vocab, int hist_cap, uint8_t *mem);

/* Greedy token and its logprob for each of n (<= max_rows) rows of logits
 * (ld n_vocab): res[i] (token, logprob, n_top = 0). ws:
 * wk_cu_greedy_ws_bytes(max_rows) bytes, zero before the first use (the
 * kernel leaves it so). */
size_t wk_cu_greedy_ws_bytes(int max_rows);
cudaError_t wk_cu_greedy_rows(const float *logits, int n_vocab, int n, wk_cu_sample_res *res, void *ws, int max_rows,
                              cudaStream_t st);

/* Enqueue sampling of logits (n_vocab f32, device) per p (see core/sample.h);
 * the result lands in s->res. hist: the (at most hist_cap) last history ids,
 * already on the device. */
cudaError_t wk_cu_sample(wk_cu_sampler *s, const float *logits, const struct wk_sampling *p, int n_hist,
                         uint64_t step, cudaStream_t st);

#endif
