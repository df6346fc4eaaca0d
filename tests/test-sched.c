/* test-scheduler.c — the KV page table and the scheduler (worker/kv-pages.c,
 * worker/sched.c) on the CPU backend:
 *   - page table: allocation to exhaustion, release, prefix publish/match,
 *     LRU eviction of cached pages, hash consistency under random operations
 *     against a plain model of the table;
 *   - scheduler: many sequences with shared prefixes, random lengths and
 *     cancels, in a pool too small for all of them (preemption, waiting):
 *     every sequence ends exactly once, each stream equals the same sequence
 *     run alone, prefix-cache hits happen, and every page is free at the end;
 *   - a sequence larger than the whole pool is refused; one that fits alone
 *     runs even when the pool is crowded.
 * Exit 77 (skip) without ../shared/models. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "loader/model.h"
#include "tests/testutil.h"
#include "worker/kv-pages.h"
#include "worker/scheduler.h"

#define PAGE WK_KV_PAGE_TOKENS

// --- the page table ----------------------------------------------------------------

START_TEST(pages_alloc_release) {
    struct wk_kv_pages *kv = wk_kv_pages_create(5);
    ck_assert_ptr_nonnull(kv);
    int32_t got[5];
    for (int i = 0; i < 5; i++) {
        got[i] = wk_kv_pages_alloc(kv);
        ck_assert(got[i] >= 0 && got[i] < 5);
        for (int j = 0; j < i; j++) ck_assert_int_ne(got[i], got[j]);
    }
    ck_assert_int_eq(wk_kv_pages_alloc(kv), -1);
    struct wk_kv_pages_stats st;
    wk_kv_pages_stats(kv, &st);
    ck_assert_int_eq(st.free, 0);
    wk_kv_pages_release(kv, got[2]);
    ck_assert_int_eq(wk_kv_pages_alloc(kv), got[2]);
    for (int i = 0; i < 5; i++) wk_kv_pages_release(kv, got[i]);
    wk_kv_pages_stats(kv, &st);
    ck_assert_int_eq(st.free, 5);
    ck_assert_int_eq(st.cached, 0);
    wk_kv_pages_free(kv);
}
END_TEST

START_TEST(pages_prefix_and_lru) {
    struct wk_kv_pages *kv = wk_kv_pages_create(4);
    int32_t toks[3 * PAGE];
    for (int i = 0; i < 3 * PAGE; i++) toks[i] = 100 + i;
    /* a sequence fills three pages and publishes them */
    int32_t p[3];
    uint64_t key = 0;
    for (int i = 0; i < 3; i++) {
        p[i] = wk_kv_pages_alloc(kv);
        key = wk_kv_page_key(key, toks + i * PAGE);
        wk_kv_pages_publish(kv, p[i], key, toks + i * PAGE);
    }
    /* a second holder of the first two pages while the first still holds them */
    int32_t m[3];
    ck_assert_int_eq(wk_kv_pages_match(kv, toks, 3 * PAGE, 2, m), 2);
    ck_assert_int_eq(m[0], p[0]);
    ck_assert_int_eq(m[1], p[1]);
    /* a different second page stops the match after the first */
    int32_t other[2 * PAGE];
    memcpy(other, toks, sizeof other);
    other[PAGE + 3] = 7;
    int32_t m2[2];
    ck_assert_int_eq(wk_kv_pages_match(kv, other, 2 * PAGE, 2, m2), 1);
    wk_kv_pages_release(kv, m2[0]);
    /* release all: three cached pages, one empty */
    for (int i = 0; i < 3; i++) wk_kv_pages_release(kv, p[i]);
    wk_kv_pages_release(kv, m[0]);
    wk_kv_pages_release(kv, m[1]);
    struct wk_kv_pages_stats st;
    wk_kv_pages_stats(kv, &st);
    ck_assert_int_eq(st.free, 4);
    ck_assert_int_eq(st.cached, 3);
    /* allocation takes the empty page first, then the least recently used:
     * p[2] was released first (cached first), then p[0], then p[1] */
    int32_t e = wk_kv_pages_alloc(kv);
    ck_assert(e != p[0] && e != p[1] && e != p[2]);
    ck_assert_int_eq(wk_kv_pages_alloc(kv), p[2]);
    /* p[0], p[1] still match */
    ck_assert_int_eq(wk_kv_pages_match(kv, toks, 3 * PAGE, 3, m), 2);
    wk_kv_pages_free(kv);
}
END_TEST

/* Random operations against a plain model: every page held or free, and a
 * match only ever returns pages whose published tokens equal the query. */
START_TEST(pages_random_ops) {
    enum { N = 37 };
    struct wk_kv_pages *kv = wk_kv_pages_create(N);
    int ref[N] = {0};
    int32_t page_tok[N][PAGE];
    bool pub[N] = {false};
    unsigned r = 12345;
#define RND() (r = r * 1103515245u + 12345u, (r >> 8))
    for (int it = 0; it < 20000; it++) {
        int op = (int)(RND() % 4);
        if (op == 0) {
            int32_t p = wk_kv_pages_alloc(kv);
            int held = 0;
            for (int i = 0; i < N; i++) held += ref[i] > 0;
            if (p < 0) {
                ck_assert_int_eq(held, N);
                continue;
            }
            ck_assert_int_eq(ref[p], 0);
            ref[p] = 1;
            pub[p] = false;
        } else if (op == 1) {
            int p = (int)(RND() % N);
            if (ref[p] > 0) {
                wk_kv_pages_release(kv, p);
                ref[p]--;
            }
        } else if (op == 2) {
            int p = (int)(RND() % N);
            if (ref[p] > 0 && !pub[p]) {
                int32_t t[PAGE];
                for (int i = 0; i < PAGE; i++) t[i] = (int32_t)(RND() % 3); /* few distinct pages: duplicates */
                uint64_t key = wk_kv_page_key(0, t);
                int32_t m;
                bool dup = wk_kv_pages_match(kv, t, PAGE, 1, &m) == 1;
                if (dup) {
                    wk_kv_pages_release(kv, m);
                    continue;
                }
                wk_kv_pages_publish(kv, p, key, t);
                memcpy(page_tok[p], t, sizeof t);
                pub[p] = true;
            }
        } else {
            int32_t t[PAGE];
            for (int i = 0; i < PAGE; i++) t[i] = (int32_t)(RND() % 3);
            int32_t m;
            if (wk_kv_pages_match(kv, t, PAGE, 1, &m) == 1) {
                ck_assert(pub[m]);
                ck_assert_mem_eq(page_tok[m], t, sizeof t);
                ref[m]++;
            }
        }
        /* alloc may have evicted a cached page: it is unpublished in the model
         * when handed out (op 0 sets pub = false) */
    }
    int held = 0;
    for (int i = 0; i < N; i++) held += ref[i] > 0;
    struct wk_kv_pages_stats st;
    wk_kv_pages_stats(kv, &st);
    ck_assert_int_eq(st.free, N - held);
    wk_kv_pages_free(kv);
#undef RND
}
END_TEST

// --- the scheduler ---------------------------------------------------------------------

struct req {
    int id;
    int32_t prompt[200];
    int n_prompt, max_new;
    struct wk_sampling sp;
    int32_t out[64];
    int n_out;
    int cancel_after; /* cancel once this many tokens arrived; -1 never */
    int n_started, n_ended, n_cached;
    enum wk_seq_end why;
};

static void h_started(void *ctx, int n_cached) {
    struct req *q = ctx;
    q->n_started++;
    q->n_cached = n_cached;
}
static bool h_token(void *ctx, const struct wk_sample_out *o, uint32_t index) {
    struct req *q = ctx;
    ck_assert_int_eq((int)index, q->n_out);
    q->out[q->n_out++] = o->token;
    return true;
}
static bool h_cancelled(void *ctx) {
    struct req *q = ctx;
    return q->cancel_after >= 0 && q->n_out >= q->cancel_after;
}
static void h_ended(void *ctx, enum wk_seq_end why, wk_status st, const char *msg) {
    struct req *q = ctx;
    ck_assert_msg(why != WK_SEQ_FAILED, "request %d failed: %s %s", q->id, wk_status_name(st), msg ? msg : "");
    q->n_ended++;
    q->why = why;
}
static const struct wk_seq_hooks k_hooks = {h_started, h_token, h_cancelled, h_ended};

static struct wk_model g_model;
static bool g_have_model;

static struct wk_backend *open_cpu(int kv_tokens, int max_seqs, int step_tokens) {
    char err[256];
    struct wk_backend *b = NULL;
    struct wk_backend_config cfg = {.n_ctx = 256, .kv_tokens = kv_tokens, .max_seqs = max_seqs,
                                    .max_step_tokens = step_tokens, .threads = 1};
    ck_assert_msg(wk_backend_cpu_create(&g_model, &cfg, &b, err, sizeof err) == WK_STATUS_OK, "%s", err);
    return b;
}

static void run_all(struct wk_sched *s) {
    char err[256];
    wk_status st;
    int guard = 0;
    while (!wk_sched_idle(s)) {
        wk_sched_step(s, &st, err, sizeof err);
        ck_assert_msg(st == WK_STATUS_OK, "%s", err);
        ck_assert_int_lt(++guard, 100000);
    }
}

/* The stream of one request run alone in a roomy pool. */
static void run_alone(struct req *q, int32_t *out, int *n_out) {
    struct wk_backend *b = open_cpu(1024, 4, 64);
    struct wk_sched *s;
    char err[256];
    ck_assert_int_eq(wk_sched_create(b, NULL, &s, err, sizeof err), WK_STATUS_OK);
    struct req a = *q;
    a.n_out = a.n_started = a.n_ended = 0;
    a.cancel_after = -1;
    ck_assert_int_eq(wk_sched_submit(s, a.prompt, a.n_prompt, a.max_new, &a.sp, &k_hooks, &a, err, sizeof err),
                     WK_STATUS_OK);
    run_all(s);
    memcpy(out, a.out, (size_t)a.n_out * sizeof *out);
    *n_out = a.n_out;
    wk_sched_free(s);
    wk_backend_free(b);
}

START_TEST(sched_crowded_equals_alone) {
    if (!g_have_model) return;
    enum { NR = 24 };
    static struct req reqs[NR];
    unsigned r = 777;
#define RND() (r = r * 1103515245u + 12345u, (r >> 8))
    int32_t system[48];
    for (int i = 0; i < 48; i++) system[i] = (int32_t)(RND() % (unsigned)g_model.hp.n_vocab);
    for (int i = 0; i < NR; i++) {
        struct req *q = &reqs[i];
        memset(q, 0, sizeof *q);
        q->id = i;
        int shared = i % 3 == 0 ? 0 : i % 3 == 1 ? 32 : 48; /* whole pages, and 3 full pages */
        memcpy(q->prompt, system, (size_t)shared * sizeof *system);
        q->n_prompt = shared + 1 + (int)(RND() % 60);
        for (int k = shared; k < q->n_prompt; k++) q->prompt[k] = (int32_t)(RND() % (unsigned)g_model.hp.n_vocab);
        q->max_new = 1 + (int)(RND() % 40);
        q->sp = (struct wk_sampling){.temperature = i % 2 ? 0.8f : 0.0f, .top_k = 40, .top_p = 0.95f,
                                     .repetition_penalty = 1.0f, .seed = 1000u + (unsigned)i};
        q->cancel_after = i % 7 == 3 ? (int)(RND() % 5) : -1;
    }
    /* 12 pages = 192 tokens for up to 6 sequences of up to ~150 tokens: crowded */
    struct wk_backend *b = open_cpu(12 * PAGE, 6, 48);
    struct wk_sched *s;
    char err[256];
    ck_assert_int_eq(wk_sched_create(b, NULL, &s, err, sizeof err), WK_STATUS_OK);
    /* arrivals spread over the first steps */
    int next = 0;
    wk_status st;
    int guard = 0;
    while (next < NR || !wk_sched_idle(s)) {
        int arrive = (int)(RND() % 3);
        for (int k = 0; k < arrive && next < NR; k++, next++) {
            struct req *q = &reqs[next];
            ck_assert_int_eq(wk_sched_submit(s, q->prompt, q->n_prompt, q->max_new, &q->sp, &k_hooks, q, err,
                                             sizeof err),
                             WK_STATUS_OK);
        }
        wk_sched_step(s, &st, err, sizeof err);
        ck_assert_msg(st == WK_STATUS_OK, "%s", err);
        ck_assert_int_lt(++guard, 100000);
    }
    struct wk_sched_stats ss;
    wk_sched_stats(s, &ss);
    ck_assert_int_eq(ss.pages_free, ss.pages_total);
    ck_assert_int_eq(ss.running + ss.waiting, 0);
    ck_assert_msg(ss.preemptions > 0, "the pool was meant to be too small: no preemption happened");
    ck_assert_msg(ss.prompt_tokens_cached > 0, "no prefix-cache hit");
    fprintf(stderr, "test-sched: %d requests, %llu steps, %llu preemptions, %llu prompt tokens from the cache\n", NR,
            (unsigned long long)ss.steps, (unsigned long long)ss.preemptions,
            (unsigned long long)ss.prompt_tokens_cached);
    wk_sched_free(s);
    wk_backend_free(b);

    for (int i = 0; i < NR; i++) {
        struct req *q = &reqs[i];
        ck_assert_int_eq(q->n_ended, 1);
        ck_assert_int_le(q->n_started, 1);
        int32_t alone[64];
        int n_alone;
        run_alone(q, alone, &n_alone);
        if (q->why == WK_SEQ_CANCELLED) {
            ck_assert_int_le(q->n_out, n_alone);
        } else {
            ck_assert_int_eq(q->n_out, q->max_new);
            ck_assert_int_eq(q->n_out, n_alone);
        }
        for (int k = 0; k < q->n_out; k++)
            ck_assert_msg(q->out[k] == alone[k], "request %d token %d: %d in the crowd, %d alone", i, k, q->out[k],
                          alone[k]);
    }
#undef RND
}
END_TEST

START_TEST(sched_refuses_only_what_cannot_fit) {
    if (!g_have_model) return;
    struct wk_backend *b = open_cpu(4 * PAGE, 4, 32);
    struct wk_sched *s;
    char err[256];
    ck_assert_int_eq(wk_sched_create(b, NULL, &s, err, sizeof err), WK_STATUS_OK);
    static struct req big, fits[3];
    memset(&big, 0, sizeof big);
    big.n_prompt = 60;
    big.max_new = 5; /* 65 tokens > 64 in the pool */
    big.sp.top_p = 1;
    ck_assert_int_eq(wk_sched_submit(s, big.prompt, big.n_prompt, big.max_new, &big.sp, &k_hooks, &big, err, sizeof err),
                     WK_STATUS_OUT_OF_RANGE);
    ck_assert_int_eq(big.n_ended, 0);
    for (int i = 0; i < 3; i++) {
        memset(&fits[i], 0, sizeof fits[i]);
        fits[i].n_prompt = 40; /* each fits alone; together they do not */
        for (int k = 0; k < 40; k++) fits[i].prompt[k] = (int32_t)(k * 7 + i);
        fits[i].max_new = 20;
        fits[i].sp.top_p = 1;
        fits[i].cancel_after = -1;
        ck_assert_int_eq(wk_sched_submit(s, fits[i].prompt, 40, 20, &fits[i].sp, &k_hooks, &fits[i], err, sizeof err),
                         WK_STATUS_OK);
    }
    run_all(s);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(fits[i].n_ended, 1);
        ck_assert_int_eq(fits[i].why, WK_SEQ_DONE);
        ck_assert_int_eq(fits[i].n_out, 20);
    }
    struct wk_sched_stats ss;
    wk_sched_stats(s, &ss);
    ck_assert_int_eq(ss.pages_free, ss.pages_total);
    wk_sched_free(s);
    wk_backend_free(b);
}
END_TEST

int main(void) {
    char path[512], err[512];
    tu_shared_path(path, sizeof path, "models/tiny-qwen2-q8_0.gguf");
    g_have_model = tu_have_file(path, "test-sched model");
    if (g_have_model && wk_model_load(path, &g_model, err, sizeof err) != WK_STATUS_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    Suite *su = suite_create("sched");
    TCase *tp = tcase_create("pages");
    tcase_add_test(tp, pages_alloc_release);
    tcase_add_test(tp, pages_prefix_and_lru);
    tcase_add_test(tp, pages_random_ops);
    suite_add_tcase(su, tp);
    if (g_have_model) {
        TCase *ts = tcase_create("scheduler");
        tcase_set_timeout(ts, 600);
        tcase_add_test(ts, sched_crowded_equals_alone);
        tcase_add_test(ts, sched_refuses_only_what_cannot_fit);
        suite_add_tcase(su, ts);
    }
    const int failed = tu_run_suite(su);
    if (g_have_model) wk_model_free(&g_model);
    if (failed) return 1;
    return g_have_model ? 0 : 77; /* the scheduler half could not run: say so */
}
