/* scheduler.h — the scheduler: continuous batching of sequences over the paged KV
 * pool (STYLE.md §22: a scheduler owns sequences; kernels own rows).
 *
 * A sequence is the unit of generation: its tokens (prompt, then each sampled
 * token), the pages holding their K/V, its sampling parameters and how far it
 * has got. Requests become sequences through wk_sched_submit; what a sampled
 * token means for the request (stop conditions, streaming, the protocol) is
 * the owner's business, reached through the hooks. The scheduler never sees
 * protobuf.
 *
 * Each wk_sched_step():
 *   1. ends sequences whose owner cancelled them (pages freed at once);
 *   2. admits waiting sequences, oldest first, while the batch has room and
 *      the pool can hold their prompt (prefix pages matched in the cache
 *      first: those tokens are not computed again);
 *   3. builds one batch: a decode row for every running sequence that has
 *      sampled its next token, then prompt chunks in admission order up to
 *      the step's token budget (chunked prefill: a long prompt never stalls
 *      the decoding streams for more than one chunk per step);
 *      a decode row that needs a new page when none is free preempts the
 *      youngest running sequence: its pages go back to the pool (full ones
 *      stay cached) and it waits at the head of the queue to be recomputed
 *      later — its output so far is kept and nothing is streamed twice;
 *   4. runs forward, samples every sequence whose last known token was in
 *      the batch, and hands each token to its owner, which says whether the
 *      sequence goes on; finished sequences free their pages at once.
 * A sequence that could not fit in the whole pool even alone is refused at
 * submit (OUT_OF_RANGE). Everything else eventually runs: admission waits for
 * pages, it never fails.
 *
 * Determinism: a sequence's stream depends only on its own tokens and
 * sampling (batch-invariant backend + counter RNG): alone, in any batch, after
 * preemption, or with its prefix from the cache, it samples the same tokens.
 *
 * Single-threaded: call everything from one thread (the generation thread).
 */
#ifndef WK_SCHED_H
#define WK_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"

enum wk_seq_end {
    WK_SEQ_DONE,      /* the token hook said stop */
    WK_SEQ_CANCELLED, /* the cancelled hook said so */
    WK_SEQ_FAILED,    /* the backend failed during a step */
};

/* How the scheduler reaches a sequence's owner (all called on the
 * scheduler's thread, with the owner's ctx). */
struct wk_seq_hooks {
    /* Admitted into the running batch for the first time; n_cached prompt
     * tokens came from the prefix cache. */
    void (*started)(void *ctx, int n_cached);
    /* The next token was sampled (index = tokens generated before it).
     * Return true to go on, false when the sequence is finished. */
    bool (*token)(void *ctx, const struct wk_sample_out *o, uint32_t index);
    /* Polled before each step: true ends the sequence (CANCELLED). */
    bool (*cancelled)(void *ctx);
    /* The sequence is over and its pages are freed; the last call for ctx. */
    void (*ended)(void *ctx, enum wk_seq_end why, wk_status st, const char *msg);
};

struct wk_sched_config {
    int max_seqs;        /* <= 0: the backend's max_seqs */
    int max_step_tokens; /* <= 0: the backend's max_step_tokens */
};

struct wk_sched_stats {
    int running, waiting;
    int pages_total, pages_free, pages_cached;
    int max_seqs, max_step_tokens;
    uint64_t steps, preemptions, prompt_tokens_cached;
};

struct wk_sched;

/* b is borrowed and must outlive the scheduler. */
wk_status wk_sched_create(struct wk_backend *b, const struct wk_sched_config *cfg, struct wk_sched **out, char *err,
                          size_t err_len);
void wk_sched_free(struct wk_sched *s); /* sequences still held end CANCELLED */

/* Queue a sequence: prompt (copied), at most max_new tokens to generate,
 * sampling parameters (copied). Refused (nothing queued, no hook called)
 * with OUT_OF_RANGE when prompt + max_new exceed the context or the whole
 * pool, INVALID_ARGUMENT for an empty prompt or a bad token id. */
wk_status wk_sched_submit(struct wk_sched *s, const int32_t *prompt, int n_prompt, int max_new,
                          const struct wk_sampling *sp, const struct wk_seq_hooks *hooks, void *ctx, char *err,
                          size_t err_len);

/* One step (see above). Returns false when there was nothing to do. A
 * backend failure ends every sequence of the step with WK_SEQ_FAILED and
 * is returned in *st (the caller decides whether the backend is still
 * usable). */
bool wk_sched_step(struct wk_sched *s, wk_status *st, char *err, size_t err_len);

/* End every sequence, running or waiting, with CANCELLED. */
void wk_sched_cancel_all(struct wk_sched *s);

bool wk_sched_idle(const struct wk_sched *s);
void wk_sched_stats(const struct wk_sched *s, struct wk_sched_stats *st);

#endif
