/* scheduler.c — continuous batching: admission, page accounting, preemption,
 * batch building, sampling hand-off (see scheduler.h). Read top to bottom:
 * sequences → pages → admission → one step. */
#include "worker/scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/kv-pages.h"

#define PAGE WK_KV_PAGE_TOKENS

// --- sequences ------------------------------------------------------------------

struct seq {
    struct seq *next;         /* in the waiting or running list */
    int32_t *tokens;          /* prompt then generated, cap = n_prompt + max_new */
    int n_tokens;             /* known tokens */
    int n_prompt, max_new;
    int n_done;               /* tokens whose K/V are in pages */
    int32_t *pages;           /* page table, ceil(cap / PAGE) entries */
    int n_pages;
    uint64_t last_key;        /* prefix key of the last full, published page */
    int n_published;          /* full pages published (or matched) so far */
    uint32_t n_generated;     /* tokens sampled so far */
    bool started;             /* the started hook ran */
    struct wk_sampling sp;
    struct wk_seq_hooks hooks;
    void *ctx;
    /* this step */
    int batch_index;          /* in the batch; -1 when not in it */
};

struct wk_sched {
    struct wk_backend *b;
    struct wk_kv_pages *kv;
    int max_seqs, max_step_tokens;
    struct seq *waiting;      /* FIFO: head = oldest (preempted ones go back to the head) */
    struct seq *running;      /* admission order: head = oldest */
    int n_running, n_waiting;
    /* step scratch */
    struct wk_batch_seq *bq;
    struct seq **bseq;
    struct wk_sample_req *sreq;
    struct wk_sample_out *sout;
    struct seq **sseq;
    uint64_t steps, preemptions, prompt_tokens_cached;
};

static void seq_free(struct seq *q) {
    if (!q) return;
    free(q->tokens);
    free(q->pages);
    free(q);
}

static void list_push_tail(struct seq **head, struct seq *q) {
    q->next = NULL;
    while (*head) head = &(*head)->next;
    *head = q;
}

static void list_remove(struct seq **head, struct seq *q) {
    while (*head != q) head = &(*head)->next;
    *head = q->next;
    q->next = NULL;
}

// --- pages ------------------------------------------------------------------------

static void release_pages(struct wk_sched *s, struct seq *q) {
    for (int i = 0; i < q->n_pages; i++) wk_kv_pages_release(s->kv, q->pages[i]);
    q->n_pages = 0;
    q->n_done = 0;
    q->n_published = 0;
    q->last_key = 0;
}

/* Pages for positions [0, upto): allocate what is missing. False (nothing
 * changed) when the pool runs dry. */
static bool ensure_pages(struct wk_sched *s, struct seq *q, int upto) {
    const int need = (upto + PAGE - 1) / PAGE;
    const int had = q->n_pages;
    while (q->n_pages < need) {
        int32_t p = wk_kv_pages_alloc(s->kv);
        if (p < 0) {
            while (q->n_pages > had) wk_kv_pages_release(s->kv, q->pages[--q->n_pages]);
            return false;
        }
        q->pages[q->n_pages++] = p;
    }
    return true;
}

/* Register every page that became full (its K/V written) for prefix reuse. */
static void publish_full_pages(struct wk_sched *s, struct seq *q) {
    while ((q->n_published + 1) * PAGE <= q->n_done) {
        const int32_t *t = q->tokens + (size_t)q->n_published * PAGE;
        q->last_key = wk_kv_page_key(q->last_key, t);
        wk_kv_pages_publish(s->kv, q->pages[q->n_published], q->last_key, t);
        q->n_published++;
    }
}

/* Take cached pages for the known tokens' prefix; at least the last known
 * token is always computed again (its logits are needed). */
static int match_prefix(struct wk_sched *s, struct seq *q) {
    const int max_pages = (q->n_tokens - 1) / PAGE;
    int k = wk_kv_pages_match(s->kv, q->tokens, q->n_tokens, max_pages, q->pages);
    q->n_pages = k;
    q->n_published = k;
    q->n_done = k * PAGE;
    q->last_key = 0;
    for (int i = 0; i < k; i++) q->last_key = wk_kv_page_key(q->last_key, q->tokens + (size_t)i * PAGE);
    return k * PAGE;
}

// --- ending ------------------------------------------------------------------------

static void end_seq(struct wk_sched *s, struct seq *q, bool running, enum wk_seq_end why, wk_status st,
                    const char *msg) {
    if (running) {
        list_remove(&s->running, q);
        s->n_running--;
    } else {
        list_remove(&s->waiting, q);
        s->n_waiting--;
    }
    release_pages(s, q);
    q->hooks.ended(q->ctx, why, st, msg);
    seq_free(q);
}

// --- admission -----------------------------------------------------------------------

/* Admit waiting sequences (oldest first) while the batch has room and the
 * pool holds their known tokens plus one. A sequence that does not fit waits,
 * and so does everything behind it (no overtaking: first come, first served). */
static void admit(struct wk_sched *s) {
    while (s->waiting && s->n_running < s->max_seqs) {
        struct seq *q = s->waiting;
        const int cached = match_prefix(s, q);
        if (!ensure_pages(s, q, q->n_tokens + 1)) {
            release_pages(s, q);
            return;
        }
        list_remove(&s->waiting, q);
        s->n_waiting--;
        list_push_tail(&s->running, q);
        s->n_running++;
        if (!q->started) {
            q->started = true;
            s->prompt_tokens_cached += (uint64_t)cached;
            q->hooks.started(q->ctx, cached);
        }
    }
}

// --- creation --------------------------------------------------------------------------

wk_status wk_sched_create(struct wk_backend *b, const struct wk_sched_config *cfg, struct wk_sched **out, char *err,
                          size_t err_len) {
    *out = NULL;
    struct wk_sched *s = calloc(1, sizeof *s);
    if (!s) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "out of memory");
    s->b = b;
    s->max_seqs = cfg && cfg->max_seqs > 0 && cfg->max_seqs < b->max_seqs ? cfg->max_seqs : b->max_seqs;
    s->max_step_tokens = cfg && cfg->max_step_tokens > 0 && cfg->max_step_tokens < b->max_step_tokens
                             ? cfg->max_step_tokens
                             : b->max_step_tokens;
    s->kv = wk_kv_pages_create(b->n_kv_pages);
    s->bq = calloc((size_t)s->max_seqs, sizeof *s->bq);
    s->bseq = calloc((size_t)s->max_seqs, sizeof *s->bseq);
    s->sreq = calloc((size_t)s->max_seqs, sizeof *s->sreq);
    s->sout = calloc((size_t)s->max_seqs, sizeof *s->sout);
    s->sseq = calloc((size_t)s->max_seqs, sizeof *s->sseq);
    if (!s->kv || !s->bq || !s->bseq || !s->sreq || !s->sout || !s->sseq) {
        wk_sched_free(s);
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "out of memory");
    }
    *out = s;
    return WK_STATUS_OK;
}

void wk_sched_free(struct wk_sched *s) {
    if (!s) return;
    wk_sched_cancel_all(s);
    wk_kv_pages_free(s->kv);
    free(s->bq), free(s->bseq), free(s->sreq), free(s->sout), free(s->sseq);
    free(s);
}

wk_status wk_sched_submit(struct wk_sched *s, const int32_t *prompt, int n_prompt, int max_new,
                          const struct wk_sampling *sp, const struct wk_seq_hooks *hooks, void *ctx, char *err,
                          size_t err_len) {
    if (n_prompt < 1) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "the prompt is empty");
    if (max_new < 1) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "max_tokens must be at least 1");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= s->b->n_vocab)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "token id %d at %d is outside [0, %d)", prompt[i],
                           i, s->b->n_vocab);
    const int64_t cap = (int64_t)n_prompt + max_new;
    if (cap > s->b->n_ctx)
        return wk_errf(err, err_len, WK_STATUS_OUT_OF_RANGE,
                       "prompt (%d tokens) + max_tokens (%d) exceed the context of %d tokens", n_prompt, max_new,
                       s->b->n_ctx);
    if ((cap + PAGE - 1) / PAGE > s->b->n_kv_pages)
        return wk_errf(err, err_len, WK_STATUS_OUT_OF_RANGE,
                       "prompt (%d tokens) + max_tokens (%d) exceed the whole KV pool of %d tokens", n_prompt, max_new,
                       s->b->n_kv_pages * PAGE);
    struct seq *q = calloc(1, sizeof *q);
    if (q) {
        q->tokens = malloc((size_t)cap * sizeof *q->tokens);
        q->pages = malloc((size_t)((cap + PAGE - 1) / PAGE + 1) * sizeof *q->pages);
    }
    if (!q || !q->tokens || !q->pages) {
        seq_free(q);
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "out of memory for a %lld-token sequence", (long long)cap);
    }
    memcpy(q->tokens, prompt, (size_t)n_prompt * sizeof *prompt);
    q->n_tokens = q->n_prompt = n_prompt;
    q->max_new = max_new;
    q->sp = *sp;
    q->hooks = *hooks;
    q->ctx = ctx;
    list_push_tail(&s->waiting, q);
    s->n_waiting++;
    return WK_STATUS_OK;
}

// --- one step ----------------------------------------------------------------------------

static void end_cancelled(struct wk_sched *s) {
    for (int pass = 0; pass < 2; pass++) {
        struct seq **head = pass ? &s->waiting : &s->running;
        for (struct seq *q = *head, *nx; q; q = nx) {
            nx = q->next;
            if (q->hooks.cancelled(q->ctx)) end_seq(s, q, pass == 0, WK_SEQ_CANCELLED, WK_STATUS_CANCELLED, NULL);
        }
    }
}

static bool is_running(const struct wk_sched *s, const struct seq *q) {
    for (const struct seq *r = s->running; r; r = r->next)
        if (r == q) return true;
    return false;
}

/* Pages for q's next `chunk` tokens. When the pool is dry, the youngest
 * running sequence not yet in this step's batch is preempted — possibly q
 * itself (then false). */
static bool pages_for_chunk(struct wk_sched *s, struct seq *q, int chunk) {
    while (!ensure_pages(s, q, q->n_done + chunk)) {
        struct seq *victim = NULL;
        for (struct seq *r = s->running; r; r = r->next)
            if (r->batch_index < 0) victim = r;
        list_remove(&s->running, victim);
        s->n_running--;
        release_pages(s, victim);
        victim->next = s->waiting;
        s->waiting = victim;
        s->n_waiting++;
        s->preemptions++;
        if (victim == q) return false;
    }
    return true;
}

/* Put q's next `chunk` tokens into the batch. */
static void plan(struct wk_sched *s, struct seq *q, int chunk, int *n, int *rows) {
    q->batch_index = *n;
    s->bseq[*n] = q;
    s->bq[*n] = (struct wk_batch_seq){
        .tokens = q->tokens + q->n_done,
        .n_tokens = chunk,
        .pos = q->n_done,
        .pages = q->pages,
        .n_pages = q->n_pages,
        .sample = q->n_done + chunk == q->n_tokens,
    };
    (*n)++;
    *rows += chunk;
}

/* One batch: first a row for every sequence with one token left to compute
 * (decode), then prompt chunks in admission order with the rest of the token
 * budget. Returns the number of sequences in it. */
static int build_batch(struct wk_sched *s) {
    int n = 0, rows = 0;
    for (struct seq *q = s->running; q; q = q->next) q->batch_index = -1;
    for (int pass = 0; pass < 2; pass++) {
        struct seq *q = s->running;
        while (q && n < s->max_seqs && rows < s->max_step_tokens) {
            struct seq *nx = q->next;
            const int todo = q->n_tokens - q->n_done;
            if (q->batch_index < 0 && (pass == 0 ? todo == 1 : todo > 1)) {
                const int room = s->max_step_tokens - rows;
                const int chunk = todo < room ? todo : room;
                if (pages_for_chunk(s, q, chunk)) plan(s, q, chunk, &n, &rows);
                /* a preemption may have taken nx off the running list */
                if (nx && !is_running(s, nx)) nx = NULL;
            }
            q = nx;
        }
    }
    return n;
}

bool wk_sched_step(struct wk_sched *s, wk_status *st, char *err, size_t err_len) {
    *st = WK_STATUS_OK;
    end_cancelled(s);
    admit(s);
    if (!s->running) return false;
    const int n = build_batch(s);
    if (n == 0) return true; /* everything preempted back to the queue: admit again next step */

    s->steps++;
    struct wk_batch batch = {n, s->bq};
    wk_status fs = s->b->ops->forward(s->b, &batch, err, err_len);
    int ns = 0;
    if (fs == WK_STATUS_OK) {
        for (int i = 0; i < n; i++) {
            struct seq *q = s->bseq[i];
            q->n_done += s->bq[i].n_tokens;
            publish_full_pages(s, q);
            if (s->bq[i].sample) {
                s->sreq[ns] = (struct wk_sample_req){.seq = i, .p = &q->sp, .history = q->tokens,
                                                     .n_history = (size_t)q->n_tokens, .step = q->n_generated};
                s->sseq[ns++] = q;
            }
        }
        if (ns > 0) fs = s->b->ops->sample(s->b, s->sreq, ns, s->sout, err, err_len);
    }
    if (fs != WK_STATUS_OK) {
        *st = fs;
        for (int i = 0; i < n; i++) end_seq(s, s->bseq[i], true, WK_SEQ_FAILED, fs, err);
        return true;
    }
    for (int i = 0; i < ns; i++) {
        struct seq *q = s->sseq[i];
        const uint32_t index = q->n_generated++;
        const bool more = q->hooks.token(q->ctx, &s->sout[i], index);
        if (more && (int)q->n_generated < q->max_new)
            q->tokens[q->n_tokens++] = s->sout[i].token;
        else
            end_seq(s, q, true, WK_SEQ_DONE, WK_STATUS_OK, NULL);
    }
    return true;
}

void wk_sched_cancel_all(struct wk_sched *s) {
    while (s->running) end_seq(s, s->running, true, WK_SEQ_CANCELLED, WK_STATUS_CANCELLED, NULL);
    while (s->waiting) end_seq(s, s->waiting, false, WK_SEQ_CANCELLED, WK_STATUS_CANCELLED, NULL);
}

bool wk_sched_idle(const struct wk_sched *s) { return !s->running && !s->waiting; }

void wk_sched_stats(const struct wk_sched *s, struct wk_sched_stats *st) {
    struct wk_kv_pages_stats ps;
    wk_kv_pages_stats(s->kv, &ps);
    *st = (struct wk_sched_stats){
        .running = s->n_running,
        .waiting = s->n_waiting,
        .pages_total = ps.total,
        .pages_free = ps.free,
        .pages_cached = ps.cached,
        .max_seqs = s->max_seqs,
        .max_step_tokens = s->max_step_tokens,
        .steps = s->steps,
        .preemptions = s->preemptions,
        .prompt_tokens_cached = s->prompt_tokens_cached,
    };
}
