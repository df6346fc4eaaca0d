/* bench-concurrency.h — orcd-bench's many-stream run (tools/bench-concurrency.c)
 * and the helpers orcd-bench.c shares with it. */
#ifndef ORCD_BENCH_CONCURRENCY_H
#define ORCD_BENCH_CONCURRENCY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"

/* Monotonic clock, seconds. */
double bench_now(void);

/* n random token ids in [0, n_vocab), splitmix64 from seed. stream < 0: the
 * single-stream prompt (the sequence orcd-bench always used); stream >= 0:
 * stream `stream`'s prompt of the concurrency run (distinct per stream). */
void bench_random_tokens(int32_t *dst, int n, uint64_t seed, int stream, int n_vocab);

/* Nearest-rank percentile (p in (0, 1]) of n values; sorts v in place. */
double bench_percentile(double *v, int n, double p);

/* KV pages one stream of npp + ntg tokens holds at most. */
int bench_pages_per_stream(int npp, int ntg);

struct bench_conc_opts {
    int npp;       /* prompt tokens per stream */
    int ntg;       /* generated tokens per stream (>= 2): the first comes
                    * from the prompt's last step, ntg - 1 from decode rows */
    bool phased;   /* llama-batched-bench's order: no decode row until every
                    * prompt is done (default: serve, decode rows and
                    * prefill chunks share each step) */
    uint64_t seed; /* prompts */
};

struct bench_conc_row {
    int n_streams;
    int n_steps;
    int64_t prefill_tokens;     /* n_streams * npp */
    int64_t decode_tokens;      /* decode rows run once every prompt was done */
    int64_t decode_tokens_all;  /* all decode rows: n_streams * (ntg - 1) */
    double total_s;             /* arrival (t = 0) to the last token */
    double prefill_s;           /* arrival to the end of the step that ran the last prompt chunk */
    double decode_s;            /* from then to the last token */
    double prefill_tps;         /* prefill_tokens / prefill_s */
    double decode_tps;          /* decode_tokens / decode_s (llama-batched-bench's S_TG) */
    double gen_tps;             /* n_streams * ntg / total_s (every generated token, end to end) */
    double stream_decode_tps;   /* mean over streams of (ntg - 1) / (last token - first token) */
    double stream_decode_tps_min;
    double ttft_p50_s, ttft_p99_s, ttft_max_s; /* arrival to the first sampled token */
    int max_rows;               /* most sequences in one step */
};

/* One run: n_streams streams arrive at t = 0, each with its own prompt
 * (bench_random_tokens stream 0 .. n_streams-1) and its own pages from a
 * small page allocator (reverse_pages: hands out pages from the top of the
 * pool down, so a rerun sees other page ids). Greedy, ntg tokens each.
 * stream0 (optional) receives stream 0's ntg generated tokens. Quiet: the
 * caller prints progress. */
wk_status bench_conc_run(struct wk_backend *b, const struct bench_conc_opts *o, int n_streams, bool reverse_pages,
                         struct bench_conc_row *row, int32_t *stream0, char *err, size_t err_len);

#endif
