/* backend.h — the one interface both compute backends implement.
 *
 * A backend holds the weights (left mapped on the CPU, uploaded to VRAM on
 * CUDA) and a pool of KV pages. It knows nothing of requests: each step the
 * scheduler (worker/) hands it one batch — any mix of sequences, each adding
 * one decode token or a chunk of its prompt, each with the page table that
 * says where its KV lives — and then asks it to sample from the rows it
 * marked. Which page belongs to which sequence is the scheduler's business;
 * the backend never allocates or frees a page.
 *
 * KV pages: a page holds WK_KV_PAGE_TOKENS consecutive positions of one
 * sequence, for every layer (K and V). Position p of a sequence lives in
 * page pages[p / WK_KV_PAGE_TOKENS], slot p % WK_KV_PAGE_TOKENS. Pages are
 * numbered 0 .. n_kv_pages-1.
 *
 * Batch invariance (DESIGN.md, numerics): the values computed for a token —
 * its K/V entries, hidden states and logits — depend only on the model, the
 * token, its position and the K/V of the positions before it. Never on the
 * other sequences of the batch, on how many tokens the step carries, or on
 * how a prompt was split into chunks. Each row's reductions run in one fixed
 * order. Both backends promise this bit for bit; CPU and CUDA agree with
 * each other only to a tolerance.
 */
#ifndef WK_BACKEND_H
#define WK_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct wk_model;

#define WK_MAX_LOGPROBS 20

/* Tokens per KV page (vLLM's and llama.cpp's common choice). */
#define WK_KV_PAGE_TOKENS 16

/* When nothing else is said, a sequence's context is the model's training
 * context capped here (the one place this cap is defined). */
#define WK_CTX_CAP_DEFAULT 4096

/* Sampling parameters of one request (see core/sample.h for the order in
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
    char device[128];      /* "cpu (2 threads)" / "NVIDIA H200" */
    uint64_t mem_total;    /* device memory in bytes (0 on cpu) */
    uint64_t mem_weights;  /* bytes of weights resident */
    uint64_t mem_kv;       /* bytes of the KV page pool */
    uint64_t mem_scratch;  /* activations / workspace */
};

/* What a backend is sized for, fixed at creation. */
struct wk_backend_config {
    int n_ctx;          /* positions per sequence, at most; <= 0: the model's
                         * training context capped at WK_CTX_CAP_DEFAULT */
    int kv_tokens;      /* KV pool size in tokens (rounded up to whole pages);
                         * <= 0: 4 * n_ctx on the CPU, on CUDA as many as
                         * fit in 90% of the free VRAM after weights and scratch,
                         * at most n_ctx * max_seqs */
    int max_seqs;       /* sequences in one step, at most; <= 0: 64 */
    int max_step_tokens;/* tokens in one step (decode rows + prefill chunks),
                         * at most; <= 0: 512. Bounds the activation scratch. */
    int threads;        /* cpu: worker threads; <= 0: one per core, at most 8 */
    int device;         /* cuda: device index */
};

/* One sequence's part of a step: n_tokens new tokens at positions
 * pos .. pos+n_tokens-1. The K/V of positions [0, pos) are already in its
 * pages; this step writes those of the new tokens. pages covers at least
 * positions [0, pos + n_tokens): n_pages >= ceil((pos+n_tokens)/PAGE). */
struct wk_batch_seq {
    const int32_t *tokens; /* n_tokens ids, borrowed for the call */
    int n_tokens;          /* >= 1: 1 for decode, a prompt chunk for prefill */
    int pos;               /* position of tokens[0] */
    const int32_t *pages;  /* page table, borrowed for the call */
    int n_pages;
    int window;            /* reserved for sliding-window layers; 0 = none */
    bool sample;           /* keep the last token's logits for sample() */
    float *logits;         /* optional, host: all n_tokens rows of logits
                            * (n_tokens × n_vocab) are copied here */
};

struct wk_batch {
    int n_seqs;                     /* 1 .. max_seqs */
    const struct wk_batch_seq *seqs;
};

/* One sampling job of sample(): the sequence `seq` (an index into the last
 * forward's batch; it must have had .sample set). */
struct wk_sample_req {
    int seq;
    const struct wk_sampling *p;
    const int32_t *history; /* the sequence's tokens so far (prompt + generated), for the penalty */
    size_t n_history;
    uint64_t step;          /* index of the token being generated (the RNG counter) */
};

struct wk_backend;

struct wk_backend_ops {
    const char *name; /* "cpu", "cuda" */

    /* Run one step over the batch. Token ids, positions (< n_ctx) and page
     * ids (< n_kv_pages) are checked: INVALID_ARGUMENT / OUT_OF_RANGE and
     * nothing is written. Two sequences of one batch must not write the
     * same page. */
    wk_status (*forward)(struct wk_backend *b, const struct wk_batch *batch, char *err, size_t err_len);

    /* Sample the next token of each of n sequences of the last forward; out
     * has n entries. Each result equals sampling that sequence alone. */
    wk_status (*sample)(struct wk_backend *b, const struct wk_sample_req *reqs, int n,
                        struct wk_sample_out *out, char *err, size_t err_len);

    /* Tests: hidden state of the last forward's rows (all sequences' tokens
     * in batch order) after layer `layer` (0..n_layer-1), or the final-normed
     * state for layer == n_layer; rows × n_embd floats. Only when
     * b->record_hidden was set before forward. May be NULL. */
    wk_status (*get_hidden)(struct wk_backend *b, int layer, float *dst, char *err,
                            size_t err_len);

    void (*destroy)(struct wk_backend *b);
};

struct wk_backend {
    const struct wk_backend_ops *ops;
    const struct wk_model *model; /* borrowed: must outlive the backend */
    int n_ctx;                    /* positions per sequence */
    int n_vocab;                  /* logits per row */
    int n_kv_pages;               /* pages in the pool */
    int max_seqs, max_step_tokens;
    bool record_hidden;
    struct wk_backend_info info;
    void *impl;
};

/* cfg == NULL: all defaults. On error *out is NULL and nothing stays
 * allocated. */
wk_status wk_backend_cpu_create(const struct wk_model *m, const struct wk_backend_config *cfg,
                                struct wk_backend **out, char *err, size_t err_len);

/* Builds without CUDA return WK_STATUS_UNAVAILABLE. Free VRAM short of what
 * weights + KV + scratch need: WK_STATUS_OOM_DEV with the numbers. */
wk_status wk_backend_cuda_create(const struct wk_model *m, const struct wk_backend_config *cfg,
                                 struct wk_backend **out, char *err, size_t err_len);

static inline void wk_backend_free(struct wk_backend *b) {
    if (b && b->ops && b->ops->destroy) b->ops->destroy(b);
}

/* What every forward checks before it writes anything: 1..max_seqs
 * sequences, positions inside n_ctx, page tables that cover the tokens with
 * ids < n_kv_pages, token ids < n_vocab, at most max_step_tokens tokens.
 * *n_rows = the step's tokens, *n_page_refs = the page-table entries the
 * step reads (sum over sequences of ceil((pos + n_tokens) / PAGE)). */
wk_status wk_batch_check(const struct wk_backend *b, const struct wk_batch *batch, int *n_rows, int *n_page_refs,
                         char *err, size_t err_len);

/* n_ctx <= 0 resolved: the training context capped at WK_CTX_CAP_DEFAULT. */
int wk_backend_default_ctx(int n_ctx_train);

/* --- one sequence, for tools and tests -------------------------------------
 * The single-sequence convenience the old interface had: the sequence owns
 * pages 0, 1, 2, ... of the pool (so pos + n <= n_kv_pages * PAGE as well as
 * n_ctx). Runs the tokens in steps of at most max_step_tokens. logits, when
 * not NULL, receives n rows (all_logits) or the last row. Afterwards
 * wk_backend_sample_one samples from the last row. */
wk_status wk_backend_forward_one(struct wk_backend *b, const int32_t *tokens, int n, int pos,
                                 float *logits, bool all_logits, char *err, size_t err_len);
wk_status wk_backend_sample_one(struct wk_backend *b, const struct wk_sampling *p,
                                const int32_t *history, size_t n_history, uint64_t step,
                                struct wk_sample_out *out, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
