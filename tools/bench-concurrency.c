/* bench-concurrency.c — orcd-bench's many-stream run, driven through the
 * batch interface (core/backend.h) the way a serving worker drives it.
 *
 * All streams arrive at t = 0. Each step is built as:
 *   1. one decode row (1 token, .sample) for every stream that has its first
 *      token and fewer than ntg (phased: only once no prompt is left);
 *   2. prompt chunks in stream order while the step's token budget
 *      (b->max_step_tokens) lasts: a stream's chunk is min(what is left of
 *      its prompt, what is left of the budget); the chunk that ends a prompt
 *      carries .sample, and its sample is the stream's first token.
 * forward(), then one sample() for every row that carries .sample; a step is
 * complete when sample() returns (on CUDA that is the synchronization
 * point), and every time below is taken there.
 *
 * Pages: a free stack over the whole pool. A stream takes pages as its
 * positions grow and gives them all back when it has its ntg tokens, so two
 * streams never share a page and the page tables interleave like a server's.
 */
#include "tools/bench-concurrency.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bench_random_tokens(int32_t *dst, int n, uint64_t seed, int stream, int n_vocab) {
    uint64_t x = seed;
    if (stream >= 0) x ^= 0xD1B54A32D192ED03ull * (uint64_t)(stream + 1) + 0x632BE59BD9B4E019ull;
    for (int i = 0; i < n; i++) {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        dst[i] = (int32_t)((z ^ (z >> 31)) % (uint64_t)n_vocab);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_percentile(double *v, int n, double p) {
    if (n < 1) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int k = (int)ceil(p * n) - 1;
    return v[k < 0 ? 0 : k >= n ? n - 1 : k];
}

int bench_pages_per_stream(int npp, int ntg) {
    return (npp + ntg + WK_KV_PAGE_TOKENS - 1) / WK_KV_PAGE_TOKENS;
}

struct stream {
    int32_t *toks;   /* npp prompt tokens, then the generated ones */
    int32_t *pages;  /* page table (max_pages) */
    int n_pages;
    int n_prompt;    /* prompt tokens already run */
    int n_gen;       /* tokens sampled */
    int chunk;       /* tokens this stream carries in the current step */
    double t_first, t_last;
};

static int pages_take(int32_t *free_pages, int *n_free, struct stream *s, int need) {
    while (s->n_pages < need) {
        if (*n_free == 0) return -1;
        s->pages[s->n_pages++] = free_pages[--*n_free];
    }
    return 0;
}

static void pages_give_back(int32_t *free_pages, int *n_free, struct stream *s) {
    while (s->n_pages > 0) free_pages[(*n_free)++] = s->pages[--s->n_pages];
}

wk_status bench_conc_run(struct wk_backend *b, const struct bench_conc_opts *o, int S, bool reverse_pages,
                         struct bench_conc_row *row, int32_t *stream0, char *err, size_t err_len) {
    const int npp = o->npp, ntg = o->ntg, max_pages = bench_pages_per_stream(npp, ntg);
    memset(row, 0, sizeof *row);
    row->n_streams = S;
    if (npp < 1 || ntg < 2 || S < 1)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: npp %d >= 1, ntg %d >= 2, streams %d >= 1",
                       __func__, npp, ntg, S);
    if (S > b->max_seqs || S > b->max_step_tokens || npp + ntg > b->n_ctx ||
        (int64_t)S * max_pages > b->n_kv_pages)
        return wk_errf(err, err_len, WK_STATUS_OUT_OF_RANGE,
                       "%s: %d streams of %d + %d tokens need max_seqs, max_step_tokens >= %d, n_ctx >= %d and "
                       "%lld KV pages (have %d, %d, %d, %d)",
                       __func__, S, npp, ntg, S, npp + ntg, (long long)S * max_pages, b->max_seqs,
                       b->max_step_tokens, b->n_ctx, b->n_kv_pages);

    wk_status st = WK_STATUS_OK;
    struct stream *ss = calloc((size_t)S, sizeof *ss);
    int32_t *free_pages = malloc((size_t)b->n_kv_pages * sizeof *free_pages);
    struct wk_batch_seq *rows = malloc((size_t)S * sizeof *rows);
    int *row_stream = malloc((size_t)S * sizeof *row_stream);
    struct wk_sample_req *reqs = malloc((size_t)S * sizeof *reqs);
    struct wk_sample_out *outs = malloc((size_t)S * sizeof *outs);
    double *tmp = malloc((size_t)S * sizeof *tmp);
    bool ok = ss && free_pages && rows && row_stream && reqs && outs && tmp;
    for (int i = 0; ok && i < S; i++) {
        ss[i].toks = malloc((size_t)(npp + ntg) * sizeof(int32_t));
        ss[i].pages = malloc((size_t)max_pages * sizeof(int32_t));
        ok = ss[i].toks && ss[i].pages;
        if (ok) bench_random_tokens(ss[i].toks, npp, o->seed, i, b->n_vocab);
    }
    if (!ok) {
        st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of host memory", __func__);
        goto done;
    }
    /* Stack of free pages; the top is handed out first. */
    int n_free = b->n_kv_pages;
    for (int i = 0; i < n_free; i++) free_pages[i] = reverse_pages ? i : n_free - 1 - i;

    const struct wk_sampling greedy = {.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0,
                                       .repetition_penalty = 1, .repeat_last_n = 0, .seed = o->seed};
    int n_prefilling = S, n_active = S;
    const double t0 = bench_now();
    double t_prefill_done = 0;
    while (n_active > 0) {
        int nr = 0, budget = b->max_step_tokens;
        const bool decode_ok = !o->phased || n_prefilling == 0;
        for (int i = 0; i < S && decode_ok; i++) {
            struct stream *s = &ss[i];
            if (s->n_gen < 1 || s->n_gen >= ntg) continue;
            const int pos = npp + s->n_gen - 1;
            s->chunk = 1;
            row_stream[nr] = i;
            rows[nr++] = (struct wk_batch_seq){.tokens = &s->toks[pos], .n_tokens = 1, .pos = pos, .sample = true};
            budget--;
        }
        for (int i = 0; i < S && budget > 0; i++) {
            struct stream *s = &ss[i];
            if (s->n_prompt >= npp) continue;
            const int cn = npp - s->n_prompt < budget ? npp - s->n_prompt : budget;
            s->chunk = cn;
            row_stream[nr] = i;
            rows[nr++] = (struct wk_batch_seq){.tokens = &s->toks[s->n_prompt], .n_tokens = cn, .pos = s->n_prompt,
                                               .sample = s->n_prompt + cn == npp};
            budget -= cn;
        }
        int n_sample = 0;
        for (int r = 0; r < nr; r++) {
            struct stream *s = &ss[row_stream[r]];
            if (pages_take(free_pages, &n_free, s, (rows[r].pos + rows[r].n_tokens + WK_KV_PAGE_TOKENS - 1) /
                                                       WK_KV_PAGE_TOKENS)) {
                st = wk_errf(err, err_len, WK_STATUS_RESOURCE_EXHAUSTED, "%s: KV pool of %d pages ran out",
                             __func__, b->n_kv_pages);
                goto done;
            }
            rows[r].pages = s->pages;
            rows[r].n_pages = s->n_pages;
            if (rows[r].sample) {
                const int h = npp + s->n_gen; /* history: prompt + generated so far */
                reqs[n_sample++] = (struct wk_sample_req){
                    .seq = r, .p = &greedy, .history = s->toks, .n_history = (size_t)h, .step = (uint64_t)s->n_gen};
            }
        }
        st = b->ops->forward(b, &(struct wk_batch){.n_seqs = nr, .seqs = rows}, err, err_len);
        if (!st && n_sample) st = b->ops->sample(b, reqs, n_sample, outs, err, err_len);
        if (st) goto done;
        const double t = bench_now() - t0;
        row->n_steps++;
        if (nr > row->max_rows) row->max_rows = nr;
        const bool prefill_before = n_prefilling > 0;
        int64_t decode_rows = 0;
        for (int r = 0, k = 0; r < nr; r++) {
            struct stream *s = &ss[row_stream[r]];
            if (s->n_prompt < npp) {
                s->n_prompt += s->chunk;
                if (s->n_prompt == npp) n_prefilling--;
            } else {
                decode_rows++;
            }
            if (!rows[r].sample) continue;
            s->toks[npp + s->n_gen] = outs[k++].token;
            if (s->n_gen++ == 0) s->t_first = t;
            s->t_last = t;
            if (s->n_gen == ntg) {
                pages_give_back(free_pages, &n_free, s);
                n_active--;
            }
        }
        row->decode_tokens_all += decode_rows;
        if (prefill_before && n_prefilling == 0) t_prefill_done = t;
        else if (!prefill_before) row->decode_tokens += decode_rows;
        row->total_s = t;
    }

    if (n_free != b->n_kv_pages) {
        st = wk_errf(err, err_len, WK_STATUS_INTERNAL, "%s: %d of %d pages came back", __func__, n_free,
                     b->n_kv_pages);
        goto done;
    }
    row->prefill_tokens = (int64_t)S * npp;
    row->prefill_s = t_prefill_done;
    row->decode_s = row->total_s - t_prefill_done;
    row->prefill_tps = t_prefill_done > 0 ? (double)row->prefill_tokens / t_prefill_done : 0;
    row->decode_tps = row->decode_s > 0 ? (double)row->decode_tokens / row->decode_s : 0;
    row->gen_tps = row->total_s > 0 ? (double)S * ntg / row->total_s : 0;
    double sum = 0, mn = INFINITY;
    for (int i = 0; i < S; i++) {
        const double d = ss[i].t_last > ss[i].t_first ? (ntg - 1) / (ss[i].t_last - ss[i].t_first) : 0;
        sum += d;
        if (d < mn) mn = d;
        tmp[i] = ss[i].t_first;
    }
    row->stream_decode_tps = sum / S;
    row->stream_decode_tps_min = mn;
    row->ttft_p50_s = bench_percentile(tmp, S, 0.50);
    row->ttft_p99_s = bench_percentile(tmp, S, 0.99);
    row->ttft_max_s = tmp[S - 1];
    if (stream0) memcpy(stream0, ss[0].toks + npp, (size_t)ntg * sizeof(int32_t));
done:
    for (int i = 0; ss && i < S; i++) free(ss[i].toks), free(ss[i].pages);
    free(ss), free(free_pages), free(rows), free(row_stream), free(reqs), free(outs), free(tmp);
    return st;
}
