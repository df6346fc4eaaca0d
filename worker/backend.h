/* backend.h — the one interface both compute backends implement.
 *
 * A backend holds the weights (left mapped on the CPU, uploaded to VRAM on
 * CUDA) and the KV cache of ONE sequence of up to n_ctx tokens. The
 * generation loop in worker/ calls forward() for the prompt (one batch) and
 * then once per generated token, and sample() after each forward; it never
 * knows which backend runs.
 */
#ifndef WK_BACKEND_H
#define WK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct wk_model;

#define WK_MAX_LOGPROBS 20

/* Sampling parameters of one request (see worker/sample.h for the order in
 * which they apply). temperature == 0 means greedy. */
struct wk_sampling {
    float temperature;        /* 0 = greedy (argmax, ties to the lowest id) */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off; llama.cpp rule: l>0 ? l/p : l*p */
    int repeat_last_n;        /* window of history the penalty looks at */
    uint64_t seed;            /* counter-based RNG key */
    int n_logprobs;           /* top-N alternatives to report, 0..WK_MAX_LOGPROBS */
};

struct wk_sample_out {
    int32_t token;
    float logprob; /* log-softmax of the raw logits at token */
    int n_top;
    int32_t top_ids[WK_MAX_LOGPROBS];
    float top_logprobs[WK_MAX_LOGPROBS];
};

struct wk_backend_info {
    char device[128];      /* "cpu (2 threads)" / "NVIDIA H100 80GB HBM3" */
    uint64_t mem_total;    /* device memory in bytes (0 on cpu) */
    uint64_t mem_weights;  /* bytes of weights resident */
    uint64_t mem_kv;       /* bytes of KV cache */
    uint64_t mem_scratch;  /* activations / workspace */
};

struct wk_backend;

struct wk_backend_ops {
    const char *name; /* "cpu", "cuda" */

    /* Run n tokens at positions pos .. pos+n-1 (pos + n <= n_ctx; KV entries at
     * positions >= pos are overwritten). Afterwards sample() sees the logits of
     * the last token. If logits != NULL they are also copied to the host:
     * n rows × n_vocab when all_logits, else 1 row. */
    wk_status (*forward)(struct wk_backend *b, const int32_t *tokens, int n, int pos,
                         float *logits, bool all_logits, char *err, size_t err_len);

    /* Choose the next token from the last forward's last row. history holds
     * the tokens so far (prompt + generated) for the repetition penalty; step
     * is the index of the token being generated (the RNG counter). */
    wk_status (*sample)(struct wk_backend *b, const struct wk_sampling *p, const int32_t *history,
                        size_t n_history, uint64_t step, struct wk_sample_out *out, char *err,
                        size_t err_len);

    /* Tests: hidden state of the last forward after layer `layer`
     * (0..n_layer-1), or the final-normed state for layer == n_layer;
     * n × n_embd floats. Only when b->record_hidden was set before forward.
     * May be NULL. */
    wk_status (*get_hidden)(struct wk_backend *b, int layer, float *dst, char *err,
                            size_t err_len);

    void (*destroy)(struct wk_backend *b);
};

struct wk_backend {
    const struct wk_backend_ops *ops;
    const struct wk_model *model; /* borrowed: must outlive the backend */
    int n_ctx;
    bool record_hidden;
    struct wk_backend_info info;
    void *impl;
};

/* n_threads <= 0: one per core. */
wk_status wk_backend_cpu_create(const struct wk_model *m, int n_ctx, int n_threads,
                                struct wk_backend **out, char *err, size_t err_len);

/* Builds without CUDA return WK_STATUS_UNAVAILABLE. Free VRAM short of what
 * weights + KV + scratch need: WK_STATUS_OOM_DEV with the numbers. */
wk_status wk_backend_cuda_create(const struct wk_model *m, int n_ctx, int device,
                                 struct wk_backend **out, char *err, size_t err_len);

/* "cpu", "cuda", "cuda:N" -> the matching create; n_ctx <= 0: the model's
 * training context capped at 4096. */
wk_status wk_backend_create(const struct wk_model *m, const char *device, int n_ctx,
                            struct wk_backend **out, char *err, size_t err_len);

static inline void wk_backend_free(struct wk_backend *b) {
    if (b && b->ops && b->ops->destroy) b->ops->destroy(b);
}

#ifdef __cplusplus
}
#endif

#endif
