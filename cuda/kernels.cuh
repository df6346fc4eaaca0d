/* kernels.cuh — launchers of the CUDA backend's kernels (kernels.cu,
 * sample.cu). Every launcher takes the stream explicitly, launches, and
 * returns the launch's error (cudaGetLastError) so the caller can report it.
 * Shapes: "(a, b) f32" means a rows of b floats, row-major, in device memory.
 */
#ifndef WK_CUDA_KERNELS_CUH
#define WK_CUDA_KERNELS_CUH

#include <cublas_v2.h>

#include "cuda/common.cuh"
#include "core/backend.h"

/* Decode matrix-vector product (see struct wk_mv_args). n_sm bounds the grid;
 * the kernel strides over the work units. */
cudaError_t wk_cu_matvec(const wk_mv_args &a, int n_sm, cudaStream_t st);

/* Attention of one query (the token at *d_pos) over keys 0..*d_pos, split in
 * chunks of WK_CU_ATT_CHUNK keys: grid (n_head, max_split); blocks past the
 * end exit. part: (n_head, max_split, head_dim + 2) f32 = {m, l, o/l};
 * out: (n_head*head_dim) f32; counters: (n_head) zeroed, left zeroed.
 * head_dim % 8 == 0. */
cudaError_t wk_cu_attn_decode(const float *q, const __half *kc, const __half *vc, const int *d_pos,
                              int n_head, int n_head_kv, int head_dim, int max_split, float *part,
                              float *out, unsigned *counters, cudaStream_t st);

/* x[i] = dequant(embd row tok[i]) for i < n: (n, n_embd) f32. */
cudaError_t wk_cu_embed(const wk_cu_mat &embd, int n_embd, const int32_t *tok, int n, float *x,
                        cudaStream_t st);

/* y = rmsnorm(x) * w per row, in f32 and (when y16) f16. x, y: (n, n_embd). */
cudaError_t wk_cu_rmsnorm(const float *x, const float *w, int n, int n_embd, float eps, float *y,
                          __half *y16, cudaStream_t st);

/* out = W dequantized: (n_rows, n_in) f16. */
cudaError_t wk_cu_dequant_f16(const wk_cu_mat &m, int n_in, int row0, int n_rows, __half *out,
                              cudaStream_t st);

/* f32 -> f16, n elements. */
cudaError_t wk_cu_to_f16(const float *x, size_t n, __half *y, cudaStream_t st);

/* Prefill: bias, rope, and the K/V cache write for n tokens at pos0..:
 * q (n, n_head*hd) in place; k, v (n, n_kv*hd) f32 -> caches at rows pos0... */
cudaError_t wk_cu_qkv_post(float *q, const float *k, const float *v, const float *bq,
                           const float *bk, const float *bv, const float2 *rope_cs, int n, int pos0,
                           int n_head, int n_head_kv, int head_dim, int rope_dim, int rope_neox,
                           __half *kc, __half *vc, cudaStream_t st);

/* Prefill attention, causal: query i (position pos0+i) over keys 0..pos0+i of
 * the cache. q: (n, n_head*hd); out: (n, n_head*hd) f32. */
cudaError_t wk_cu_attn_prefill(const float *q, const __half *kc, const __half *vc, int n, int pos0,
                               int n_head, int n_head_kv, int head_dim, float *out, cudaStream_t st);

/* act = silu(g) * u, (n) elements, f32 and f16. */
cudaError_t wk_cu_swiglu(const float *g, const float *u, size_t n, float *act, __half *act16,
                         cudaStream_t st);

/* x += y, n elements. */
cudaError_t wk_cu_add(float *x, const float *y, size_t n, cudaStream_t st);

/* Raise dynamic shared-memory limits for the model's largest shapes, size the
 * matrix-vector grid to one wave, choose programmatic dependent launch (once). */
cudaError_t wk_cu_kernels_init(int max_n_in, int head_dim, bool pdl);

// --- sampling (sample.cu) -------------------------------------------------------

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
/* Greedy, no penalty, no top-N: token, logprob into res (device); one kernel,
 * appended to the decode graph so the common case needs no extra launch. */
cudaError_t wk_cu_sample_greedy(wk_cu_sampler *s, const float *logits, wk_cu_sample_res *res, cudaStream_t st);

/* Enqueue sampling of logits (n_vocab f32, device) per p (see core/sample.h);
 * the result lands in s->res. hist: the (at most hist_cap) last history ids,
 * already on the device. */
cudaError_t wk_cu_sample(wk_cu_sampler *s, const float *logits, const struct wk_sampling *p,
                         int n_hist, uint64_t step, cudaStream_t st);

#endif
