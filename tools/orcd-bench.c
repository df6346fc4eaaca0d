/* orcd-bench — load a model on a device and print one JSON object of timings.
 *
 *   orcd-bench MODEL.gguf [--device cuda|cuda:N|cpu|auto] [--modes LIST]
 *              [--n-prompt 512[,4096,16384...]] [--n-gen 128] [--runs 3]
 *              [--concurrency] [--npl 1,2,4,8,16,32,64] [--npp 128] [--ntg 128]
 *              [--sched serve|phased] [--step-tokens 512] [--ctx N]
 *              [--kv-tokens N] [--threads N] [--seed N]
 *
 * Modes (--modes, a comma list; default prefill,decode; any of --concurrency,
 * --npl, --npp, --ntg, --sched adds concurrency; "all" = all three). Every
 * mode runs in-process through the batch interface (core/backend.h) on one
 * backend, sized for all of them (n_ctx, kv_tokens, max_seqs below):
 *   load      wk_model_load + backend create (weights uploaded on cuda)
 *   prefill   for each length of --n-prompt: that many random token ids (one
 *             sequence, pages 0, 1, ...) in steps of --step-tokens tokens (the
 *             chunk; the last one carries .sample), then the first greedy
 *             sample. One warm-up, then `runs` timed runs; median. The step
 *             completes when sample() returns, so prefill time and time to
 *             first token are the same span: tokens/s = n_prompt / that.
 *             The first length is also reported as "prefill" / "ttft_ms".
 *   decode    after a 16-token prompt and its first token, n_gen steps of
 *             (forward 1 token + greedy sample); tokens/s of the median run
 *   bytes per decode token: every tensor's bytes except token_embd, plus one
 *             embedding row, plus token_embd again when the output is tied
 *             (the logits read it all)
 *   achieved bandwidth = bytes per token × decode tokens/s, and its share of
 *             the copy bandwidth measured in the same run (cuda: a 1 GiB
 *             device-to-device cudaMemcpy, read + write bytes / time;
 *             tools/bandwidth.cu)
 *   concurrency  llama-batched-bench's shape (-npp 128 -ntg 128 -npl
 *             1,2,...,64): for each S of --npl, S streams arrive at t = 0,
 *             each with its own --npp random prompt and its own KV pages,
 *             and generate --ntg greedy tokens (the first from the prompt's
 *             last step, ntg - 1 from decode rows). Each step carries every
 *             decode row and prompt chunks up to --step-tokens tokens in all
 *             (serve; phased: no decode row before every prompt is done, as
 *             llama-batched-bench). tools/bench-concurrency.c has the details;
 *             docs/benchmarks.md what each field means. Before the sweep,
 *             stream 0 runs alone (other page ids): each row's "invariant"
 *             says whether stream 0 generated the same tokens in the batch.
 *             Each S runs once; the alone run is the warm-up.
 * Sizing, unless --ctx / --kv-tokens say otherwise: n_ctx = the longest of
 * the prefill lengths, 16 + n_gen and npp + ntg; kv_tokens = n_ctx, or
 * max(npl) × (npp + ntg rounded up to pages) + 4 pages when larger;
 * max_seqs = max(npl) (1 without concurrency); max_step_tokens = --step-tokens.
 * Logs go to stderr; stdout carries only the JSON.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/status.h"
#include "loader/model.h"
#include "loader/quants.h"
#include "tools/bench-concurrency.h"
#include "worker/backend-open.h"

/* Device-to-device copy bandwidth of the current CUDA device, in bytes (read +
 * written) per second. tools/bandwidth.cu in CUDA builds. */
wk_status wk_cuda_measure_copy_bandwidth(double *bytes_per_s, char *err, size_t n);

#ifndef WK_HAVE_CUDA_BANDWIDTH
wk_status wk_cuda_measure_copy_bandwidth(double *bytes_per_s, char *err, size_t n) {
    *bytes_per_s = 0;
    return wk_errf(err, n, WK_STATUS_UNAVAILABLE, "%s: built without CUDA", __func__);
}
#endif

#define DECODE_PROMPT 16
#define MAX_LIST 32
#define MAX_RUNS 64

enum { MODE_PREFILL = 1, MODE_DECODE = 2, MODE_CONC = 4 };

/* Median of n values (sorts a copy). */
static double median(const double *v, int n) {
    double tmp[MAX_RUNS];
    memcpy(tmp, v, sizeof(double) * (size_t)n);
    const double lo = bench_percentile(tmp, n, 0.5); /* sorts tmp */
    return n % 2 ? lo : 0.5 * (lo + tmp[n / 2]);
}

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

static void json_runs(const double *v, int n, double scale) {
    putchar('[');
    for (int i = 0; i < n; i++) printf("%s%.6g", i ? ", " : "", v[i] * scale);
    putchar(']');
}

static void json_tokens(const int32_t *v, int n) {
    putchar('[');
    for (int i = 0; i < n; i++) printf("%s%d", i ? ", " : "", v[i]);
    putchar(']');
}

/* Bytes of weights one decode step reads (see the file comment). */
static uint64_t decode_bytes_per_token(const struct wk_model *m) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        const struct gguf_tensor_info *t = &m->gguf.tensors[i];
        if (t->name.len == 17 && !memcmp(t->name.ptr, "token_embd.weight", 17)) continue;
        sum += t->nbytes;
    }
    sum += wk_row_bytes(m->tok_embd.type, m->hp.n_embd);
    if (m->tied_output) sum += m->tok_embd.nbytes;
    return sum;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: orcd-bench MODEL.gguf [options]     (or -m MODEL.gguf)\n"
            "  --device D          cuda (default), cuda:N, cpu, auto\n"
            "  --modes LIST        of prefill,decode,concurrency or all (default prefill,decode;\n"
            "                      the concurrency options below add concurrency)\n"
            "  --n-prompt LIST     prefill lengths, e.g. 512,4096,16384 (default 512)\n"
            "  --n-gen N           decode: tokens after a 16-token prompt (default 128)\n"
            "  --runs N            timed runs of prefill and decode, median reported (default 3)\n"
            "  --concurrency       run the many-stream sweep with its defaults\n"
            "  --npl LIST          stream counts (default 1,2,4,8,16,32,64)   (also -npl)\n"
            "  --npp N             prompt tokens per stream (default 128)     (also -npp)\n"
            "  --ntg N             generated tokens per stream (default 128)  (also -ntg)\n"
            "  --sched serve|phased  serve (default): decode rows and prompt chunks share steps;\n"
            "                      phased: every prompt first, as llama-batched-bench\n"
            "  --step-tokens N     tokens per step, the prefill chunk (max_step_tokens; default 512)\n"
            "  --ctx N             positions per sequence (default: what the modes need)\n"
            "  --kv-tokens N       KV pool in tokens (default: what the modes need)\n"
            "  --threads N         cpu worker threads (default: one per core, at most 8)\n"
            "  --seed N            prompt seed (default 1234)\n"
            "JSON on stdout, progress on stderr. Fields: docs/benchmarks.md.\n");
}

/* "1,2,4" -> v[]; 0 on error. */
static int parse_list(const char *s, int *v, int max, int lo, int hi) {
    int n = 0;
    while (*s) {
        char *end;
        long x = strtol(s, &end, 10);
        if (end == s || x < lo || x > hi || n == max || (*end && *end != ',')) return 0;
        v[n++] = (int)x;
        s = *end ? end + 1 : end;
    }
    return n;
}

/* One prompt of n tokens in chunks of max_step_tokens over pages 0, 1, ...,
 * then the first greedy sample; returns the steps run. */
static wk_status prefill_once(struct wk_backend *b, const int32_t *toks, int n, const int32_t *pages,
                              const struct wk_sampling *greedy, struct wk_sample_out *so, int *n_steps, char *err,
                              size_t err_len) {
    wk_status s = WK_STATUS_OK;
    *n_steps = 0;
    for (int done = 0; done < n && !s; (*n_steps)++) {
        const int cn = n - done < b->max_step_tokens ? n - done : b->max_step_tokens;
        struct wk_batch_seq q = {.tokens = toks + done, .n_tokens = cn, .pos = done, .pages = pages,
                                 .n_pages = (done + cn + WK_KV_PAGE_TOKENS - 1) / WK_KV_PAGE_TOKENS,
                                 .sample = done + cn == n};
        s = b->ops->forward(b, &(struct wk_batch){1, &q}, err, err_len);
        done += cn;
    }
    if (!s) {
        struct wk_sample_req r = {.seq = 0, .p = greedy, .history = toks, .n_history = (size_t)n, .step = 0};
        s = b->ops->sample(b, &r, 1, so, err, err_len);
    }
    return s;
}

/* One decode step of the single sequence at pos. */
static wk_status decode_step(struct wk_backend *b, int32_t *hist, int pos, const int32_t *pages,
                             const struct wk_sampling *greedy, uint64_t step, char *err, size_t err_len) {
    struct wk_batch_seq q = {.tokens = &hist[pos], .n_tokens = 1, .pos = pos, .pages = pages,
                             .n_pages = pos / WK_KV_PAGE_TOKENS + 1, .sample = true};
    wk_status s = b->ops->forward(b, &(struct wk_batch){1, &q}, err, err_len);
    if (s) return s;
    struct wk_sample_req r = {.seq = 0, .p = greedy, .history = hist, .n_history = (size_t)pos + 1, .step = step};
    struct wk_sample_out so;
    s = b->ops->sample(b, &r, 1, &so, err, err_len);
    hist[pos + 1] = so.token;
    return s;
}

struct prefill_res {
    int n_prompt, n_steps;
    double runs[MAX_RUNS], median_s;
};

int main(int argc, char **argv) {
    const char *path = NULL, *device = "cuda", *modes_arg = NULL;
    int n_gen = 128, runs = 3, n_ctx = 0, kv_tokens = 0, threads = 0, step_tokens = 512;
    int npp = 128, ntg = 128, phased = 0, conc_asked = 0;
    int lens[MAX_LIST] = {512}, n_lens = 1;
    int npl[MAX_LIST] = {1, 2, 4, 8, 16, 32, 64}, n_npl = 7;
    uint64_t seed = 1234;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--concurrency")) {
            conc_asked = 1;
            continue;
        }
        if (a[0] != '-') {
            if (path) {
                fprintf(stderr, "orcd-bench: unexpected argument '%s'\n", a);
                return 2;
            }
            path = a;
            continue;
        }
        /* -npl -npp -ntg as llama.cpp spells them */
        if (!strcmp(a, "-npl") || !strcmp(a, "-npp") || !strcmp(a, "-ntg"))
            a = !strcmp(a, "-npl") ? "--npl" : !strcmp(a, "-npp") ? "--npp" : "--ntg";
        int *ip = !strcmp(a, "--n-gen") ? &n_gen : !strcmp(a, "--runs") ? &runs : !strcmp(a, "--ctx") ? &n_ctx
                : !strcmp(a, "--kv-tokens") ? &kv_tokens : !strcmp(a, "--threads") ? &threads
                : !strcmp(a, "--step-tokens") ? &step_tokens : !strcmp(a, "--npp") ? &npp
                : !strcmp(a, "--ntg") ? &ntg : NULL;
        bool known = ip || !strcmp(a, "--device") || !strcmp(a, "--seed") || !strcmp(a, "-m") ||
                     !strcmp(a, "--model") || !strcmp(a, "--modes") || !strcmp(a, "--n-prompt") ||
                     !strcmp(a, "--npl") || !strcmp(a, "--sched");
        if (!known) {
            fprintf(stderr, "orcd-bench: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "orcd-bench: %s needs a value\n", argv[i]);
            return 2;
        }
        i++;
        if (!strcmp(a, "--device")) device = v;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) path = v;
        else if (!strcmp(a, "--modes")) modes_arg = v;
        else if (!strcmp(a, "--n-prompt")) {
            if (!(n_lens = parse_list(v, lens, MAX_LIST, 1, 1 << 20))) goto bad_value;
        } else if (!strcmp(a, "--npl")) {
            if (!(n_npl = parse_list(v, npl, MAX_LIST, 1, 4096))) goto bad_value;
            conc_asked = 1;
        } else if (!strcmp(a, "--sched")) {
            if (strcmp(v, "serve") && strcmp(v, "phased")) goto bad_value;
            phased = !strcmp(v, "phased");
            conc_asked = 1;
        } else {
            char *end;
            unsigned long long x = strtoull(v, &end, 0);
            if (*end || *v == '-' || *v == 0) goto bad_value;
            if (!ip) {
                seed = x;
                continue;
            }
            if (x > (1u << 24)) goto bad_value;
            *ip = (int)x;
            if (ip == &npp || ip == &ntg) conc_asked = 1;
        }
        continue;
    bad_value:
        fprintf(stderr, "orcd-bench: %s: bad value '%s'\n", argv[i - 1], v);
        return 2;
    }
    int modes = MODE_PREFILL | MODE_DECODE;
    if (modes_arg) {
        modes = 0;
        for (const char *p = modes_arg; *p;) {
            size_t l = strcspn(p, ",");
            if (l == 3 && !strncmp(p, "all", 3)) modes |= MODE_PREFILL | MODE_DECODE | MODE_CONC;
            else if (l == 7 && !strncmp(p, "prefill", 7)) modes |= MODE_PREFILL;
            else if (l == 6 && !strncmp(p, "decode", 6)) modes |= MODE_DECODE;
            else if (l == 11 && !strncmp(p, "concurrency", 11)) modes |= MODE_CONC;
            else {
                fprintf(stderr, "orcd-bench: --modes: unknown mode '%.*s'\n", (int)l, p);
                return 2;
            }
            p += l + (p[l] == ',');
        }
    }
    if (conc_asked) modes |= MODE_CONC;
    if (!path) {
        usage(stderr);
        return 2;
    }
    if (n_gen < 1 || runs < 1 || runs > MAX_RUNS || npp < 1 || ntg < 2 || step_tokens < 1) {
        fprintf(stderr, "orcd-bench: --n-gen, --npp, --step-tokens must be >= 1, --ntg >= 2, --runs 1..%d\n",
                MAX_RUNS);
        return 2;
    }
    int max_s = 1, max_len = 0;
    for (int i = 0; i < n_npl && (modes & MODE_CONC); i++) max_s = npl[i] > max_s ? npl[i] : max_s;
    for (int i = 0; i < n_lens && (modes & MODE_PREFILL); i++) max_len = lens[i] > max_len ? lens[i] : max_len;
    if ((modes & MODE_CONC) && max_s > step_tokens) {
        fprintf(stderr, "orcd-bench: %d streams need --step-tokens >= %d (one decode row each)\n", max_s, max_s);
        return 2;
    }

    /* Sizing (see the file comment). */
    int need_ctx = max_len;
    if ((modes & MODE_DECODE) && DECODE_PROMPT + n_gen > need_ctx) need_ctx = DECODE_PROMPT + n_gen;
    if ((modes & MODE_CONC) && npp + ntg > need_ctx) need_ctx = npp + ntg;
    struct wk_backend_config cfg = {.n_ctx = n_ctx > 0 ? n_ctx : need_ctx, .max_seqs = max_s,
                                    .max_step_tokens = step_tokens, .threads = threads};
    int64_t kv = ((int64_t)cfg.n_ctx + WK_KV_PAGE_TOKENS - 1) / WK_KV_PAGE_TOKENS * WK_KV_PAGE_TOKENS;
    if (modes & MODE_CONC) {
        int64_t c = ((int64_t)max_s * bench_pages_per_stream(npp, ntg) + 4) * WK_KV_PAGE_TOKENS;
        if (c > kv) kv = c;
    }
    cfg.kv_tokens = kv_tokens > 0 ? kv_tokens : (int)kv;

    int rc = 1;
    char err[512] = "";
    struct wk_model m;
    bool loaded = false;
    struct wk_backend *b = NULL;
    int32_t *prompt = NULL, *pages = NULL, *hist = NULL, *alone = NULL, *got = NULL;
    struct prefill_res *pre = calloc((size_t)n_lens, sizeof *pre);
    struct bench_conc_row *rows = calloc((size_t)n_npl, sizeof *rows);
    bool *invariant = calloc((size_t)n_npl, sizeof *invariant);
    struct bench_conc_row alone_row = {0};
    double t_decode[MAX_RUNS] = {0};
    int32_t first_tokens[8] = {0};
    wk_status s = WK_STATUS_OK;
    if (!pre || !rows || !invariant) {
        s = wk_errf(err, sizeof err, WK_STATUS_OOM_HOST, "out of host memory");
        goto fail;
    }

    double t0 = bench_now();
    s = wk_model_load(path, &m, err, sizeof err);
    if (s) goto fail;
    loaded = true;
    double t_open = bench_now() - t0;
    s = wk_backend_open(&m, device, &cfg, &b, err, sizeof err);
    if (s) goto fail;
    double t_load = bench_now() - t0;
    fprintf(stderr,
            "orcd-bench: %s on %s: open %.3fs, load %.3fs, n_ctx %d, %d KV pages, max_seqs %d, "
            "max_step_tokens %d\n",
            m.name, b->info.device, t_open, t_load, b->n_ctx, b->n_kv_pages, b->max_seqs, b->max_step_tokens);
    /* positions the single sequence of prefill / decode uses, and its buffers */
    const int need_single = (modes & MODE_DECODE) && DECODE_PROMPT + n_gen > max_len ? DECODE_PROMPT + n_gen : max_len;
    const int single = need_single > DECODE_PROMPT + n_gen + 1 ? need_single : DECODE_PROMPT + n_gen + 1;
    if (need_single > b->n_ctx) {
        s = wk_errf(err, sizeof err, WK_STATUS_INVALID_ARGUMENT, "%s of %d tokens exceeds the context %d (--ctx)",
                    need_single == max_len ? "the longest prompt" : "16 + n_gen", need_single, b->n_ctx);
        goto fail;
    }
    if ((int64_t)b->n_kv_pages * WK_KV_PAGE_TOKENS < need_single) {
        s = wk_errf(err, sizeof err, WK_STATUS_INVALID_ARGUMENT, "%d KV pages hold fewer than %d tokens (--kv-tokens)",
                    b->n_kv_pages, need_single);
        goto fail;
    }

    /* random prompt from the vocabulary, fixed seed; the single sequence owns pages 0, 1, ... */
    prompt = malloc(sizeof(int32_t) * (size_t)single);
    pages = malloc(sizeof(int32_t) * (size_t)(single / WK_KV_PAGE_TOKENS + 1));
    hist = malloc(sizeof(int32_t) * (size_t)(DECODE_PROMPT + n_gen + 1));
    alone = malloc(sizeof(int32_t) * (size_t)ntg);
    got = malloc(sizeof(int32_t) * (size_t)ntg);
    if (!prompt || !pages || !hist || !alone || !got) {
        s = wk_errf(err, sizeof err, WK_STATUS_OOM_HOST, "out of host memory");
        goto fail;
    }
    bench_random_tokens(prompt, single, seed, -1, m.hp.n_vocab);
    for (int i = 0; i <= single / WK_KV_PAGE_TOKENS; i++) pages[i] = i;
    const struct wk_sampling greedy = {.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0,
                                       .repetition_penalty = 1, .repeat_last_n = 0, .seed = seed};
    struct wk_sample_out so;

    /* --- prefill: per length, warm-up, then timed runs */
    for (int li = 0; li < n_lens && (modes & MODE_PREFILL); li++) {
        struct prefill_res *p = &pre[li];
        p->n_prompt = lens[li];
        for (int r = -1; r < runs; r++) {
            double a = bench_now();
            s = prefill_once(b, prompt, lens[li], pages, &greedy, &so, &p->n_steps, err, sizeof err);
            if (s) goto fail;
            if (r >= 0) p->runs[r] = bench_now() - a;
        }
        p->median_s = median(p->runs, runs);
        fprintf(stderr, "orcd-bench: prefill %d tokens (%d steps): %.1f tokens/s, ttft %.2f ms\n", lens[li],
                p->n_steps, lens[li] / p->median_s, p->median_s * 1e3);
    }

    /* --- decode: 16-token prompt and its first token, then n_gen × (forward 1 + sample) */
    for (int r = 0; r < runs && (modes & MODE_DECODE); r++) {
        int steps;
        memcpy(hist, prompt, sizeof(int32_t) * DECODE_PROMPT);
        s = prefill_once(b, hist, DECODE_PROMPT, pages, &greedy, &so, &steps, err, sizeof err);
        if (s) goto fail;
        hist[DECODE_PROMPT] = so.token;
        double a = bench_now();
        for (int i = 0; i < n_gen && !s; i++)
            s = decode_step(b, hist, DECODE_PROMPT + i, pages, &greedy, (uint64_t)i + 1, err, sizeof err);
        t_decode[r] = bench_now() - a;
        if (s) goto fail;
        if (r == 0)
            for (int i = 0; i < 8 && i <= n_gen; i++) first_tokens[i] = hist[DECODE_PROMPT + i];
    }
    if (modes & MODE_DECODE)
        fprintf(stderr, "orcd-bench: decode %d tokens: %.1f tokens/s\n", n_gen, n_gen / median(t_decode, runs));

    /* --- concurrency: stream 0 alone (warm-up and reference), then each S */
    const struct bench_conc_opts co = {.npp = npp, .ntg = ntg, .phased = phased, .seed = seed};
    if (modes & MODE_CONC) {
        s = bench_conc_run(b, &co, 1, true, &alone_row, alone, err, sizeof err);
        if (s) goto fail;
        fprintf(stderr, "orcd-bench: stream 0 alone: %d + %d tokens in %.3f s\n", npp, ntg, alone_row.total_s);
    }
    for (int i = 0; i < n_npl && (modes & MODE_CONC); i++) {
        s = bench_conc_run(b, &co, npl[i], false, &rows[i], got, err, sizeof err);
        if (s) goto fail;
        invariant[i] = !memcmp(got, alone, sizeof(int32_t) * (size_t)ntg);
        const struct bench_conc_row *r = &rows[i];
        fprintf(stderr,
                "orcd-bench: %3d streams: decode %.1f tokens/s (%.1f per stream), prefill %.1f tokens/s, "
                "ttft p50 %.1f ms p99 %.1f ms, total %.3f s, %d steps, invariant %s\n",
                npl[i], r->decode_tps, r->stream_decode_tps, r->prefill_tps, r->ttft_p50_s * 1e3,
                r->ttft_p99_s * 1e3, r->total_s, r->n_steps, invariant[i] ? "yes" : "NO");
    }

    /* --- copy bandwidth of the card */
    double copy_bw = 0;
    char bw_err[256] = "";
    bool is_cuda = !strncmp(b->ops->name, "cuda", 4);
    if (is_cuda && (modes & MODE_DECODE) &&
        wk_cuda_measure_copy_bandwidth(&copy_bw, bw_err, sizeof bw_err) != WK_STATUS_OK) {
        fprintf(stderr, "orcd-bench: %s\n", bw_err);
        copy_bw = 0;
    }

    uint64_t bpt = decode_bytes_per_token(&m);
    printf("{\n  \"model\": ");
    json_str(path);
    printf(",\n  \"name\": ");
    json_str(m.name);
    printf(",\n  \"arch\": ");
    json_str(m.arch_name);
    printf(",\n  \"ftype\": ");
    json_str(m.ftype_name);
    printf(",\n  \"n_params\": %" PRIu64 ",\n  \"weight_bytes\": %" PRIu64 ",\n", m.n_params, m.weight_bytes);
    printf("  \"backend\": ");
    json_str(b->ops->name);
    printf(",\n  \"device\": ");
    json_str(b->info.device);
    printf(",\n  \"mem_total\": %" PRIu64 ", \"mem_weights\": %" PRIu64 ", \"mem_kv\": %" PRIu64
           ", \"mem_scratch\": %" PRIu64 ",\n",
           b->info.mem_total, b->info.mem_weights, b->info.mem_kv, b->info.mem_scratch);
    printf("  \"n_ctx\": %d, \"n_kv_pages\": %d, \"kv_page_tokens\": %d, \"max_seqs\": %d, \"max_step_tokens\": %d,\n",
           b->n_ctx, b->n_kv_pages, WK_KV_PAGE_TOKENS, b->max_seqs, b->max_step_tokens);
    printf("  \"load_s\": %.4f,\n  \"model_open_s\": %.4f,\n", t_load, t_open);
    if (modes & MODE_PREFILL) {
        printf("  \"prefill\": {\"n_prompt\": %d, \"tokens_per_s\": %.2f, \"median_s\": %.6f, \"runs_s\": ",
               pre[0].n_prompt, pre[0].n_prompt / pre[0].median_s, pre[0].median_s);
        json_runs(pre[0].runs, runs, 1);
        printf("},\n  \"ttft_ms\": %.3f,\n  \"prefill_chunk\": %d,\n  \"prefill_lengths\": [", pre[0].median_s * 1e3,
               b->max_step_tokens);
        for (int i = 0; i < n_lens; i++) {
            printf("%s\n    {\"n_prompt\": %d, \"steps\": %d, \"tokens_per_s\": %.2f, \"ttft_ms\": %.3f, \"runs_s\": ",
                   i ? "," : "", pre[i].n_prompt, pre[i].n_steps, pre[i].n_prompt / pre[i].median_s,
                   pre[i].median_s * 1e3);
            json_runs(pre[i].runs, runs, 1);
            putchar('}');
        }
        printf("\n  ],\n");
    } else {
        printf("  \"prefill\": null,\n  \"ttft_ms\": null,\n  \"prefill_lengths\": [],\n");
    }
    if (modes & MODE_DECODE) {
        double decode_s = median(t_decode, runs), decode_tps = n_gen / decode_s, achieved = (double)bpt * decode_tps;
        printf("  \"decode\": {\"n_prompt\": %d, \"n_gen\": %d, \"tokens_per_s\": %.2f, \"median_s\": %.6f, "
               "\"runs_s\": ",
               DECODE_PROMPT, n_gen, decode_tps, decode_s);
        json_runs(t_decode, runs, 1);
        printf(", \"first_tokens\": ");
        json_tokens(first_tokens, n_gen < 7 ? n_gen + 1 : 8);
        printf("},\n  \"decode_bytes_per_token\": %" PRIu64 ",\n  \"achieved_bytes_per_s\": %.4g,\n", bpt, achieved);
        if (copy_bw > 0)
            printf("  \"copy_bytes_per_s\": %.4g,\n  \"bandwidth_fraction\": %.4f,\n  \"decode_bound_tokens_per_s\": "
                   "%.1f,\n",
                   copy_bw, achieved / copy_bw, copy_bw / (double)bpt);
        else
            printf("  \"copy_bytes_per_s\": null,\n  \"bandwidth_fraction\": null,\n  \"decode_bound_tokens_per_s\": "
                   "null,\n");
    } else {
        printf("  \"decode\": null,\n  \"decode_bytes_per_token\": %" PRIu64 ",\n", bpt);
    }
    if (modes & MODE_CONC) {
        printf("  \"concurrency\": {\"npp\": %d, \"ntg\": %d, \"sched\": \"%s\", \"step_tokens\": %d,\n", npp, ntg,
               phased ? "phased" : "serve", b->max_step_tokens);
        printf("    \"alone\": {\"total_s\": %.6f, \"ttft_ms\": %.3f, \"decode_tokens_per_s\": %.2f, \"first_tokens\": ",
               alone_row.total_s, alone_row.ttft_p50_s * 1e3, alone_row.decode_tps);
        json_tokens(alone, ntg < 8 ? ntg : 8);
        printf("},\n    \"rows\": [");
        for (int i = 0; i < n_npl; i++) {
            const struct bench_conc_row *r = &rows[i];
            printf("%s\n      {\"streams\": %d, \"decode_tokens_per_s\": %.2f, \"stream_decode_tokens_per_s\": %.2f, "
                   "\"stream_decode_tokens_per_s_min\": %.2f, \"prefill_tokens_per_s\": %.2f, "
                   "\"gen_tokens_per_s\": %.2f, \"ttft_p50_ms\": %.3f, \"ttft_p99_ms\": %.3f, \"ttft_max_ms\": %.3f, "
                   "\"total_s\": %.6f, \"prefill_s\": %.6f, \"decode_s\": %.6f, \"prefill_tokens\": %" PRId64
                   ", \"decode_tokens\": %" PRId64 ", \"decode_tokens_all\": %" PRId64
                   ", \"steps\": %d, \"max_rows\": %d, \"invariant\": %s}",
                   i ? "," : "", r->n_streams, r->decode_tps, r->stream_decode_tps, r->stream_decode_tps_min,
                   r->prefill_tps, r->gen_tps, r->ttft_p50_s * 1e3, r->ttft_p99_s * 1e3, r->ttft_max_s * 1e3,
                   r->total_s, r->prefill_s, r->decode_s, r->prefill_tokens, r->decode_tokens, r->decode_tokens_all,
                   r->n_steps, r->max_rows, invariant[i] ? "true" : "false");
        }
        printf("\n    ]},\n");
    } else {
        printf("  \"concurrency\": null,\n");
    }
    printf("  \"seed\": %" PRIu64 "\n}\n", seed);
    fflush(stdout);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "orcd-bench: %s (%s)\n", err, wk_status_name(s));
done:
    free(prompt), free(pages), free(hist), free(alone), free(got);
    free(pre), free(rows), free(invariant);
    wk_backend_free(b);
    if (loaded) wk_model_free(&m);
    return rc;
}
