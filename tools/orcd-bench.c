/* orcd-bench — load a model on a device and print one JSON object of timings.
 *
 *   orcd-bench MODEL.gguf [--device cuda|cuda:N|cpu] [--n-prompt 512]
 *              [--n-gen 128] [--runs 3] [--ctx N] [--seed N]
 *
 * Measures, in-process through the backend interface (core/backend.h):
 *   load      wk_model_load + backend create (weights uploaded on cuda)
 *   prefill   forward of n_prompt random token ids (one warm-up, then `runs`
 *             timed runs; median). The last row's logits are copied back, so
 *             the time includes the device finishing its work.
 *   ttft      prefill + the first greedy sample (median)
 *   decode    after a 16-token prompt, n_gen × (forward 1 token + greedy
 *             sample); tokens/s of the median run
 *   bytes per decode token: every tensor's bytes except token_embd, plus one
 *             embedding row, plus token_embd again when the output is tied
 *             (the logits read it all)
 *   achieved bandwidth = bytes per token × decode tokens/s, and its share of
 *             the copy bandwidth measured in the same run (cuda: a 1 GiB
 *             device-to-device cudaMemcpy, read + write bytes / time;
 *             tools/bandwidth.cu)
 * Logs go to stderr; stdout carries only the JSON.
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loader/model.h"
#include "loader/quants.h"
#include "core/backend.h"
#include "worker/backend-open.h"
#include "core/status.h"

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

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (sorts a copy). */
static double median(const double *v, int n) {
    double tmp[64];
    memcpy(tmp, v, sizeof(double) * (size_t)n);
    qsort(tmp, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? tmp[n / 2] : 0.5 * (tmp[n / 2 - 1] + tmp[n / 2]);
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
    fprintf(f, "usage: orcd-bench MODEL.gguf [--device cuda|cuda:N|cpu] [--n-prompt 512] [--n-gen 128]\n"
               "                  [--runs 3] [--ctx N] [--seed N]\n");
}

int main(int argc, char **argv) {
    const char *path = NULL, *device = "cuda";
    int n_prompt = 512, n_gen = 128, runs = 3, n_ctx = 0;
    uint64_t seed = 1234;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *ip = !strcmp(a, "--n-prompt") ? &n_prompt : !strcmp(a, "--n-gen") ? &n_gen
                : !strcmp(a, "--runs") ? &runs : !strcmp(a, "--ctx") ? &n_ctx : NULL;
        if (ip || !strcmp(a, "--device") || !strcmp(a, "--seed")) {
            if (!v) { fprintf(stderr, "orcd-bench: %s needs a value\n", a); return 2; }
            i++;
            if (!strcmp(a, "--device")) { device = v; continue; }
            char *end;
            unsigned long long x = strtoull(v, &end, 0);
            if (*end || *v == '-') { fprintf(stderr, "orcd-bench: %s: bad value '%s'\n", a, v); return 2; }
            if (!ip) { seed = x; continue; }
            if (x > (1u << 24)) { fprintf(stderr, "orcd-bench: %s: %s is too large\n", a, v); return 2; }
            *ip = (int)x;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' || path) {
            fprintf(stderr, "orcd-bench: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            path = a;
        }
    }
    if (!path) { usage(stderr); return 2; }
    if (n_prompt < 1 || n_gen < 1 || runs < 1 || runs > 64) {
        fprintf(stderr, "orcd-bench: --n-prompt and --n-gen must be >= 1, --runs 1..64\n");
        return 2;
    }

    int rc = 1;
    char err[512] = "";
    struct wk_model m;
    bool loaded = false;
    struct wk_backend *b = NULL;
    int32_t *prompt = NULL;
    float *logits = NULL;
    double *t_prefill = NULL, *t_ttft = NULL, *t_decode = NULL;

    double t0 = now_s();
    wk_status s = wk_model_load(path, &m, err, sizeof err);
    if (s) goto fail;
    loaded = true;
    double t_open = now_s() - t0;
    s = wk_backend_open(&m, device, &(struct wk_backend_config){.n_ctx = n_ctx}, &b, err, sizeof err);
    if (s) goto fail;
    double t_load = now_s() - t0;
    fprintf(stderr, "orcd-bench: %s on %s: open %.3fs, load %.3fs, n_ctx %d\n", m.name, b->info.device, t_open,
            t_load, b->n_ctx);
    if (n_prompt > b->n_ctx || DECODE_PROMPT + n_gen > b->n_ctx) {
        s = wk_errf(err, sizeof err, WK_STATUS_INVALID_ARGUMENT,
                    "n_prompt %d or %d + n_gen %d exceeds the context %d (--ctx)", n_prompt, DECODE_PROMPT, n_gen,
                    b->n_ctx);
        goto fail;
    }

    /* random prompt from the vocabulary, fixed seed (splitmix64 stream) */
    prompt = malloc(sizeof(int32_t) * (size_t)(n_prompt > DECODE_PROMPT ? n_prompt : DECODE_PROMPT));
    logits = malloc(sizeof(float) * (size_t)m.hp.n_vocab);
    t_prefill = calloc((size_t)runs, sizeof(double));
    t_ttft = calloc((size_t)runs, sizeof(double));
    t_decode = calloc((size_t)runs, sizeof(double));
    if (!prompt || !logits || !t_prefill || !t_ttft || !t_decode) {
        s = wk_errf(err, sizeof err, WK_STATUS_OOM_HOST, "out of host memory");
        goto fail;
    }
    uint64_t x = seed;
    for (int i = 0; i < (n_prompt > DECODE_PROMPT ? n_prompt : DECODE_PROMPT); i++) {
        uint64_t z = (x += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        prompt[i] = (int32_t)((z ^ (z >> 31)) % (uint64_t)m.hp.n_vocab);
    }
    const struct wk_sampling greedy = {.temperature = 0, .top_k = 0, .top_p = 1, .min_p = 0,
                                       .repetition_penalty = 1, .repeat_last_n = 0, .seed = seed};
    struct wk_sample_out so;

    /* --- prefill: warm-up, then timed runs */
    for (int r = -1; r < runs; r++) {
        double a = now_s();
        s = wk_backend_forward_one(b, prompt, n_prompt, 0, logits, false, err, sizeof err);
        if (s) goto fail;
        double c = now_s();
        s = wk_backend_sample_one(b, &greedy, prompt, (size_t)n_prompt, 0, &so, err, sizeof err);
        if (s) goto fail;
        double d = now_s();
        if (r >= 0) {
            t_prefill[r] = c - a;
            t_ttft[r] = d - a;
        }
    }

    /* --- decode: short prompt, then n_gen × (forward 1 + sample) */
    int32_t *hist = malloc(sizeof(int32_t) * (size_t)(DECODE_PROMPT + n_gen + 1));
    if (!hist) { s = wk_errf(err, sizeof err, WK_STATUS_OOM_HOST, "out of host memory"); goto fail; }
    int32_t first_tokens[8] = {0};
    for (int r = 0; r < runs; r++) {
        memcpy(hist, prompt, sizeof(int32_t) * DECODE_PROMPT);
        s = wk_backend_forward_one(b, hist, DECODE_PROMPT, 0, NULL, false, err, sizeof err);
        if (!s) s = wk_backend_sample_one(b, &greedy, hist, DECODE_PROMPT, 0, &so, err, sizeof err);
        if (s) { free(hist); goto fail; }
        hist[DECODE_PROMPT] = so.token;
        double a = now_s();
        for (int i = 0; i < n_gen && !s; i++) {
            int pos = DECODE_PROMPT + i;
            s = wk_backend_forward_one(b, &hist[pos], 1, pos, NULL, false, err, sizeof err);
            if (!s) s = wk_backend_sample_one(b, &greedy, hist, (size_t)pos + 1, (uint64_t)i + 1, &so, err, sizeof err);
            hist[pos + 1] = so.token;
        }
        t_decode[r] = now_s() - a;
        if (s) { free(hist); goto fail; }
        if (r == 0)
            for (int i = 0; i < 8 && i <= n_gen; i++) first_tokens[i] = hist[DECODE_PROMPT + i];
    }
    free(hist);

    /* --- copy bandwidth of the card */
    double copy_bw = 0;
    char bw_err[256] = "";
    bool is_cuda = !strncmp(b->ops->name, "cuda", 4);
    if (is_cuda && wk_cuda_measure_copy_bandwidth(&copy_bw, bw_err, sizeof bw_err) != WK_STATUS_OK) {
        fprintf(stderr, "orcd-bench: %s\n", bw_err);
        copy_bw = 0;
    }

    double prefill_s = median(t_prefill, runs), ttft_s = median(t_ttft, runs), decode_s = median(t_decode, runs);
    double prefill_tps = n_prompt / prefill_s, decode_tps = n_gen / decode_s;
    uint64_t bpt = decode_bytes_per_token(&m);
    double achieved = (double)bpt * decode_tps;

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
    printf("  \"n_ctx\": %d,\n  \"load_s\": %.4f,\n  \"model_open_s\": %.4f,\n", b->n_ctx, t_load, t_open);
    printf("  \"prefill\": {\"n_prompt\": %d, \"tokens_per_s\": %.2f, \"median_s\": %.6f, \"runs_s\": ", n_prompt,
           prefill_tps, prefill_s);
    json_runs(t_prefill, runs, 1);
    printf("},\n  \"ttft_ms\": %.3f,\n", ttft_s * 1e3);
    printf("  \"decode\": {\"n_prompt\": %d, \"n_gen\": %d, \"tokens_per_s\": %.2f, \"median_s\": %.6f, \"runs_s\": ",
           DECODE_PROMPT, n_gen, decode_tps, decode_s);
    json_runs(t_decode, runs, 1);
    printf(", \"first_tokens\": [");
    for (int i = 0; i < 8 && i <= n_gen; i++) printf("%s%d", i ? ", " : "", first_tokens[i]);
    printf("]},\n  \"decode_bytes_per_token\": %" PRIu64 ",\n  \"achieved_bytes_per_s\": %.4g,\n", bpt, achieved);
    if (copy_bw > 0)
        printf("  \"copy_bytes_per_s\": %.4g,\n  \"bandwidth_fraction\": %.4f,\n  \"decode_bound_tokens_per_s\": %.1f\n",
               copy_bw, achieved / copy_bw, copy_bw / (double)bpt);
    else
        printf("  \"copy_bytes_per_s\": null,\n  \"bandwidth_fraction\": null,\n  \"decode_bound_tokens_per_s\": null\n");
    printf("}\n");
    fflush(stdout);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "orcd-bench: %s (%s)\n", err, wk_status_name(s));
done:
    free(prompt);
    free(logits);
    free(t_prefill);
    free(t_ttft);
    free(t_decode);
    wk_backend_free(b);
    if (loaded) wk_model_free(&m);
    return rc;
}
