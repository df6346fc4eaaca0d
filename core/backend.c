/* backend.c — the pieces of the backend interface that are the same for every
 * backend (see backend.h): the default context, and the one-sequence
 * convenience for tools and tests. */
#include "core/backend.h"

#include <stdlib.h>

int wk_backend_default_ctx(int n_ctx_train) {
    if (n_ctx_train <= 0 || n_ctx_train > WK_CTX_CAP_DEFAULT) return WK_CTX_CAP_DEFAULT;
    return n_ctx_train;
}

wk_status wk_batch_check(const struct wk_backend *b, const struct wk_batch *batch, int *n_rows, int *n_page_refs,
                         char *err, size_t err_len) {
    if (!batch || batch->n_seqs < 1 || batch->n_seqs > b->max_seqs)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "batch of %d sequences (1..%d)",
                       batch ? batch->n_seqs : 0, b->max_seqs);
    int64_t total = 0, refs = 0;
    for (int i = 0; i < batch->n_seqs; i++) {
        const struct wk_batch_seq *s = &batch->seqs[i];
        if (s->n_tokens < 1 || s->pos < 0 || (int64_t)s->pos + s->n_tokens > b->n_ctx)
            return wk_errf(err, err_len, WK_STATUS_OUT_OF_RANGE,
                           "sequence %d: tokens [%d, %lld) do not fit the context of %d", i, s->pos,
                           (long long)s->pos + s->n_tokens, b->n_ctx);
        const int need = (s->pos + s->n_tokens + WK_KV_PAGE_TOKENS - 1) / WK_KV_PAGE_TOKENS;
        if (!s->pages || s->n_pages < need)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                           "sequence %d: %d pages cover fewer than %d positions", i, s->n_pages, s->pos + s->n_tokens);
        for (int p = 0; p < need; p++)
            if (s->pages[p] < 0 || s->pages[p] >= b->n_kv_pages)
                return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "sequence %d: page id %d outside [0, %d)",
                               i, s->pages[p], b->n_kv_pages);
        for (int t = 0; t < s->n_tokens; t++)
            if (s->tokens[t] < 0 || s->tokens[t] >= b->n_vocab)
                return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "token id %d is outside [0, %d)",
                               s->tokens[t], b->n_vocab);
        total += s->n_tokens;
        refs += need;
    }
    if (total > b->max_step_tokens)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "step of %lld tokens (at most %d)",
                       (long long)total, b->max_step_tokens);
    *n_rows = (int)total;
    if (n_page_refs) *n_page_refs = (int)refs;
    return WK_STATUS_OK;
}

/* Page table of the one sequence: pages 0 .. n-1. */
static int32_t *identity_pages(int n) {
    int32_t *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    if (p)
        for (int i = 0; i < n; i++) p[i] = i;
    return p;
}

wk_status wk_backend_forward_one(struct wk_backend *b, const int32_t *tokens, int n, int pos,
                                 float *logits, bool all_logits, char *err, size_t err_len) {
    if (n < 1 || pos < 0 || (int64_t)pos + n > b->n_ctx ||
        (int64_t)pos + n > (int64_t)b->n_kv_pages * WK_KV_PAGE_TOKENS)
        return wk_errf(err, err_len, WK_STATUS_OUT_OF_RANGE,
                       "tokens [%d, %d) do not fit the context of %d positions (%d KV pages)", pos, pos + n,
                       b->n_ctx, b->n_kv_pages);
    const int n_pages = (pos + n + WK_KV_PAGE_TOKENS - 1) / WK_KV_PAGE_TOKENS;
    int32_t *pages = identity_pages(n_pages);
    if (!pages) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory", __func__);
    wk_status s = WK_STATUS_OK;
    /* Without all_logits the last token runs as a step of its own, so only
     * its row of logits is copied (the result is the same: batch invariance). */
    const int body = all_logits ? n : n - 1;
    for (int done = 0; done < n && s == WK_STATUS_OK;) {
        int cn = done < body ? body - done : 1;
        if (cn > b->max_step_tokens) cn = b->max_step_tokens;
        const bool last = done + cn == n;
        struct wk_batch_seq q = {
            .tokens = tokens + done, .n_tokens = cn, .pos = pos + done, .pages = pages, .n_pages = n_pages,
            .sample = last,
            .logits = !logits ? NULL : all_logits ? logits + (size_t)done * b->n_vocab : last ? logits : NULL,
        };
        struct wk_batch batch = {1, &q};
        s = b->ops->forward(b, &batch, err, err_len);
        done += cn;
    }
    free(pages);
    return s;
}

wk_status wk_backend_sample_one(struct wk_backend *b, const struct wk_sampling *p,
                                const int32_t *history, size_t n_history, uint64_t step,
                                struct wk_sample_out *out, char *err, size_t err_len) {
    struct wk_sample_req r = {.seq = 0, .p = p, .history = history, .n_history = n_history, .step = step};
    return b->ops->sample(b, &r, 1, out, err, err_len);
}
