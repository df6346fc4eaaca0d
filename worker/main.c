/* worker-orcd — one model, one device, length-prefixed protobuf on stdio.
 *
 * Flow: parse args -> start the server threads (Health answers "loading")
 * -> wk_model_load -> wk_backend_create -> Ready (id 0) -> serve until
 * Shutdown / stdin EOF / SIGTERM / SIGINT -> flush -> free -> exit.
 * stdout carries frames only; logs go to stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "loader/model.h"
#include "worker/backend-open.h"
#include "worker/frame.h"
#include "worker/generate.h"
#include "worker/server.h"


static const char usage[] =
    "usage: worker-orcd --model PATH [options]\n"
    "\n"
    "Serves length-prefixed protobuf (proto/worker.proto) on stdin/stdout.\n"
    "\n"
    "  --model PATH        GGUF model file (required)\n"
    "  --device DEV        auto | cpu | cuda | cuda:N (default auto: cuda:0 when a\n"
    "                      CUDA device is usable, else cpu)\n"
    "  --ctx N             positions per sequence (default: the model's training\n"
    "                      context, at most 4096)\n"
    "  --kv-tokens N       KV cache pool in tokens, shared by every sequence\n"
    "                      (default: cpu 4 x ctx; cuda what fits in 90% of the\n"
    "                      free VRAM, at most ctx x max-batch)\n"
    "  --max-batch N       sequences stepped together, at most (default 64)\n"
    "  --step-tokens N     tokens per step: decode rows + prompt chunks (default\n"
    "                      512); a long prompt is prefilled in chunks of this\n"
    "  --max-queue N       Infer requests that may wait for a place in the\n"
    "                      running batch (default 16); more are refused with\n"
    "                      RESOURCE_EXHAUSTED\n"
    "  --max-frame BYTES   largest request frame accepted (default 16M; K/M suffix)\n"
    "  --max-output BYTES  responses queued for stdout before generation pauses\n"
    "                      (default 4M; K/M suffix): a client that stops reading\n"
    "                      pauses generation (Health.output_paused)\n"
    "  --threads N         CPU backend threads (default: one per core)\n"
    "  --log-level L       debug | info | warn | error | off (default info)\n"
    "  --log-json          log one JSON object per line\n"
    "  --help, --version\n"
    "\n"
    "Exit status:\n"
    "  0  clean shutdown (Shutdown request, stdin EOF, SIGTERM, SIGINT)\n"
    "  2  bad command line\n"
    "  3  fatal framing error (bad flag byte, frame truncated at EOF, read error)\n"
    "  4  the model failed to load (reported as Error id 0 on stdout first)\n"
    "  5  stdout closed by its reader (EPIPE)\n"
    "  6  the backend failed irrecoverably (CUDA error)\n";

struct args {
    const char *model;
    const char *device;
    int ctx;
    int max_queue;
    size_t max_frame;
    size_t max_output;
    int threads;
    int kv_tokens, max_batch, step_tokens;
};

static bool parse_int(const char *s, long lo, long hi, long *out) {
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_size(const char *s, size_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || errno || end == s || *s == '-') return false;
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k') mul = 1024, end++;
    else if (*end == 'M' || *end == 'm') mul = 1024 * 1024, end++;
    if (*end == 'i' || *end == 'B') end++;
    if (*end == 'B') end++;
    if (*end) return false;
    v *= mul;
    if (v == 0 || v > UINT32_MAX) return false;
    *out = (size_t)v;
    return true;
}

/* 0 ok, 1 --help/--version printed, 2 usage error */
static int parse_args(int argc, char **argv, struct args *a) {
    *a = (struct args){.device = "auto", .max_queue = 16, .max_frame = WK_FRAME_MAX_DEFAULT,
                      .max_output = 4u << 20};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            fputs(usage, stderr);
            return 1;
        }
        if (!strcmp(o, "--version")) {
            fprintf(stderr, "worker-orcd 0.1.0\n");
            return 1;
        }
        if (!strcmp(o, "--log-json")) {
            wk_log_set_json(true);
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "worker-orcd: %s: missing value or unknown option (see --help)\n", o);
            return 2;
        }
        const char *v = argv[++i];
        long n;
        if (!strcmp(o, "--model")) a->model = v;
        else if (!strcmp(o, "--device")) a->device = v;
        else if (!strcmp(o, "--ctx")) {
            if (!parse_int(v, 0, 1 << 24, &n)) goto bad;
            a->ctx = (int)n;
        } else if (!strcmp(o, "--max-queue")) {
            if (!parse_int(v, 1, 1 << 20, &n)) goto bad;
            a->max_queue = (int)n;
        } else if (!strcmp(o, "--max-frame")) {
            if (!parse_size(v, &a->max_frame)) goto bad;
        } else if (!strcmp(o, "--max-output")) {
            if (!parse_size(v, &a->max_output)) goto bad;
        } else if (!strcmp(o, "--kv-tokens")) {
            if (!parse_int(v, 1, 1 << 28, &n)) goto bad;
            a->kv_tokens = (int)n;
        } else if (!strcmp(o, "--max-batch")) {
            if (!parse_int(v, 1, 1024, &n)) goto bad;
            a->max_batch = (int)n;
        } else if (!strcmp(o, "--step-tokens")) {
            if (!parse_int(v, 1, 65536, &n)) goto bad;
            a->step_tokens = (int)n;
        } else if (!strcmp(o, "--threads")) {
            if (!parse_int(v, 0, 4096, &n)) goto bad;
            a->threads = (int)n;
        } else if (!strcmp(o, "--log-level")) {
            int l = wk_log_level_parse(v);
            if (l < 0) goto bad;
            wk_log_set_level((enum wk_log_level)l);
        } else {
            fprintf(stderr, "worker-orcd: unknown option %s (see --help)\n", o);
            return 2;
        }
        continue;
    bad:
        fprintf(stderr, "worker-orcd: %s: bad value '%s' (see --help)\n", o, v);
        return 2;
    }
    if (!a->model) {
        fprintf(stderr, "worker-orcd: --model is required\n%s", usage);
        return 2;
    }
    enum wk_device_kind kind;
    int index;
    char err[160];
    if (wk_device_parse(a->device, &kind, &index, err, sizeof err) != WK_STATUS_OK) {
        fprintf(stderr, "worker-orcd: --device: %s\n", err);
        return 2;
    }
    return 0;
}

/* --- signals: one thread takes SIGTERM / SIGINT synchronously ------------- */

static pthread_mutex_t g_server_mu = PTHREAD_MUTEX_INITIALIZER;
static struct wk_server *g_server; /* under g_server_mu; NULL once freed */
static sigset_t g_sigs;

static void *signal_main(void *arg) {
    (void)arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&g_sigs, &sig) != 0) continue;
        wk_log(WK_LOG_INFO, "received %s", sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "signal");
        pthread_mutex_lock(&g_server_mu);
        if (g_server) wk_server_shutdown(g_server, WK_EXIT_OK, sig == SIGTERM ? "SIGTERM" : "SIGINT");
        pthread_mutex_unlock(&g_server_mu);
    }
    return NULL;
}

static wk_status create_backend(const struct args *a, const struct wk_model *m,
                                struct wk_backend **b, char *err, size_t err_len) {
    struct wk_backend_config cfg = {.n_ctx = a->ctx, .threads = a->threads, .kv_tokens = a->kv_tokens,
                                    .max_seqs = a->max_batch, .max_step_tokens = a->step_tokens};
    return wk_backend_open(m, a->device, &cfg, b, err, err_len);
}

int main(int argc, char **argv) {
    double t0 = wk_now();
    struct args a;
    int pr = parse_args(argc, argv, &a);
    if (pr) return pr == 1 ? 0 : WK_EXIT_USAGE;

    /* A closed stdout must surface as EPIPE from write(), never kill us. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&g_sigs);
    sigaddset(&g_sigs, SIGTERM);
    sigaddset(&g_sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &g_sigs, NULL); /* inherited by every thread */

    char err[512] = "";
    struct wk_server_config cfg = {.max_frame = a.max_frame, .max_queue = a.max_queue,
                                  .max_output = a.max_output};
    struct wk_server *srv = NULL;
    if (wk_server_create(&cfg, STDIN_FILENO, STDOUT_FILENO, &srv, err, sizeof err) != WK_STATUS_OK) {
        wk_log(WK_LOG_ERROR, "%s", err);
        return 1;
    }
    pthread_mutex_lock(&g_server_mu);
    g_server = srv;
    pthread_mutex_unlock(&g_server_mu);
    pthread_t sig_thread;
    if (pthread_create(&sig_thread, NULL, signal_main, NULL) != 0) {
        wk_log(WK_LOG_ERROR, "cannot start the signal thread");
        return 1;
    }
    pthread_detach(sig_thread);
    if (wk_server_start(srv, err, sizeof err) != WK_STATUS_OK) {
        wk_log(WK_LOG_ERROR, "%s", err);
        return 1;
    }

    wk_log(WK_LOG_INFO, "loading %s (device %s)", a.model, a.device);
    struct wk_model model;
    memset(&model, 0, sizeof model);
    bool have_model = false;
    struct wk_backend *backend = NULL;
    wk_status st = wk_model_load(a.model, &model, err, sizeof err);
    if (st == WK_STATUS_OK) {
        have_model = true;
        st = create_backend(&a, &model, &backend, err, sizeof err);
    }
    if (st != WK_STATUS_OK) {
        wk_log(WK_LOG_ERROR, "load failed: %s: %s", wk_status_name(st), err);
        wk_server_set_failed(srv, st, err);
    } else {
        wk_server_set_ready(srv, &model, backend, wk_now() - t0);
    }

    int status = wk_server_run(srv);
    pthread_mutex_lock(&g_server_mu);
    g_server = NULL;
    pthread_mutex_unlock(&g_server_mu);
    wk_server_destroy(srv);
    wk_backend_free(backend);
    if (have_model) wk_model_free(&model);
    return status;
}
