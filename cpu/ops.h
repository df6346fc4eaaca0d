/* ops.h — the CPU backend's building blocks: a small thread pool and plain-C
 * fp32 kernels (the reference semantics the CUDA kernels are checked against).
 * Vectors are fp32, row-major: x[t*n + i] is element i of token t. */
#ifndef WK_CPU_OPS_H
#define WK_CPU_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "loader/model.h"

struct cpu_pool;

/* n_threads >= 1; the caller's thread is worker 0. NULL on failure. */
struct cpu_pool *cpu_pool_create(int n_threads);
void cpu_pool_free(struct cpu_pool *p);
int cpu_pool_size(const struct cpu_pool *p);
/* Run fn(arg, ith, nth) on every thread (ith = 0..nth-1) and wait for all. */
void cpu_pool_run(struct cpu_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg);
/* The same, but a job of less than ~256K multiply-adds (`work`) runs on the
 * caller's thread alone (fn(arg, 0, 1)). */
void cpu_pool_run_work(struct cpu_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg, int64_t work);

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], n elements. out may alias x. */
void cpu_rmsnorm(const float *x, const float *w, float *out, int n, float eps);

/* y (n_tok × W->ne[1]) = x (n_tok × W->ne[0]) · Wᵀ, W of any supported type,
 * dequantized on the fly (each weight row once per batch); rows split across
 * the pool. */
void cpu_matmul(struct cpu_pool *p, const struct wk_tensor *W, const float *x, int n_tok, float *y);

/* Rotary embedding in place on n_heads heads of head_dim at position pos,
 * angles from core/rope.h: NORM rotates pairs (2i, 2i+1), NEOX pairs
 * (i, i + dim/2), for i < dim/2. */
void cpu_rope(float *v, int n_heads, int head_dim, const struct wk_rope *r, int pos, enum wk_rope_type type);

/* gate[i] = act(gate[i]) * up[i]: SiLU (SwiGLU) or tanh-GELU (GeGLU). */
void cpu_glu(float *gate, const float *up, size_t n, enum wk_act act);

/* One row of the embedding table (any type) into out (n_embd floats). */
void cpu_embed_row(const struct wk_tensor *tok_embd, int32_t id, float *out);

#endif
