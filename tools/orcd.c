/* orcd — command-line client: spawns worker-orcd, sends one Infer request,
 * streams the completion (not the prompt) to stdout, then prints a one-line
 * summary (tokens, time to first token, tokens/s) on stderr.
 *
 *   orcd --model M.gguf --prompt "Once upon a time" --max-tokens 64
 *   orcd --model qwen.gguf --chat "Write a haiku about GPUs." --temperature 0.7 --seed 1
 *
 * The worker is found at --worker PATH, else $ORCD_WORKER, else next to this
 * binary in the build tree (../worker/worker-orcd). Ctrl-C sends Cancel (the
 * stream ends with Done(cancelled)); a second Ctrl-C kills the worker.
 * Exit status: 0 done, 1 error, 2 usage, 130 cancelled by Ctrl-C.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "worker.pb-c.h"
#include "worker/frame.h"

static const char usage[] =
    "usage: orcd --model PATH (--prompt TEXT | --chat TEXT) [options]\n"
    "  --model PATH              GGUF model\n"
    "  --device DEV              auto | cpu | cuda | cuda:N (worker default: auto)\n"
    "  --prompt TEXT             plain-text prompt (BOS added when the model wants one)\n"
    "  --chat TEXT               one user message through the model's chat template\n"
    "  --system TEXT             a system message before --chat\n"
    "  --max-tokens N            tokens to generate (0 = up to the context end; default 0)\n"
    "  --temperature T           0 = greedy (default 0)\n"
    "  --top-k K  --top-p P  --min-p P  --repetition-penalty R\n"
    "  --seed S                  0 = the worker picks one (default 0)\n"
    "  --stop TEXT               stop string (repeatable)\n"
    "  --ignore-eos              keep generating past end-of-generation tokens\n"
    "  --ctx N                   worker context length\n"
    "  --threads N               worker CPU threads\n"
    "  --worker PATH             worker binary\n"
    "  --verbose                 worker logs at info level (default: warnings only)\n";

static volatile sig_atomic_t g_sigint;
static void on_sigint(int sig) {
    (void)sig;
    g_sigint++;
}

static bool num(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

static int send_req(int fd, const Orcd__V1__Request *r) {
    uint8_t *fr;
    size_t len;
    char err[128];
    if (wk_frame_pack(&r->base, &fr, &len, err, sizeof err) != WK_STATUS_OK) return -1;
    wk_status st = wk_write_full(fd, fr, len, err, sizeof err);
    free(fr);
    return st == WK_STATUS_OK ? 0 : -1;
}

static void find_worker(char *buf, size_t n, const char *flag) {
    const char *env = getenv("ORCD_WORKER");
    if (flag) snprintf(buf, n, "%s", flag);
    else if (env && *env) snprintf(buf, n, "%s", env);
    else {
        char self[PATH_MAX];
        ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
        if (l <= 0) {
            snprintf(buf, n, "worker-orcd");
            return;
        }
        self[l] = '\0';
        snprintf(buf, n, "%s/../worker/worker-orcd", dirname(self));
    }
}

static const char *reason_str(Orcd__V1__FinishReason r) {
    switch (r) {
    case ORCD__V1__FINISH_REASON__FINISH_REASON_EOS: return "eos";
    case ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH: return "length";
    case ORCD__V1__FINISH_REASON__FINISH_REASON_STOP: return "stop";
    case ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED: return "cancelled";
    default: return "?";
    }
}

int main(int argc, char **argv) {
    const char *model = NULL, *device = NULL, *prompt = NULL, *chat = NULL, *system = NULL;
    const char *worker_flag = NULL, *ctx = NULL, *threads = NULL;
    bool verbose = false;
    Orcd__V1__InferRequest inf = ORCD__V1__INFER_REQUEST__INIT;
    char **stops = calloc((size_t)argc, sizeof *stops);
    size_t n_stops = 0;
    if (!stops) return 1;

    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
            fputs(usage, stdout);
            return 0;
        }
        if (!strcmp(o, "--ignore-eos")) {
            inf.ignore_eos = 1;
            continue;
        }
        if (!strcmp(o, "--verbose")) {
            verbose = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "orcd: %s: missing value (or unknown option)\n%s", o, usage);
            return 2;
        }
        const char *v = argv[++i];
        double d;
        if (!strcmp(o, "--model")) model = v;
        else if (!strcmp(o, "--device")) device = v;
        else if (!strcmp(o, "--prompt")) prompt = v;
        else if (!strcmp(o, "--chat")) chat = v;
        else if (!strcmp(o, "--system")) system = v;
        else if (!strcmp(o, "--worker")) worker_flag = v;
        else if (!strcmp(o, "--ctx")) ctx = v;
        else if (!strcmp(o, "--threads")) threads = v;
        else if (!strcmp(o, "--stop")) stops[n_stops++] = (char *)v;
        /* numeric fields: range-checked by the worker, which names the field */
        else if (!strcmp(o, "--temperature") && num(v, -INFINITY, INFINITY, &d)) inf.temperature = (float)d;
        else if (!strcmp(o, "--top-p") && num(v, -INFINITY, INFINITY, &d)) inf.top_p = (float)d;
        else if (!strcmp(o, "--min-p") && num(v, -INFINITY, INFINITY, &d)) inf.min_p = (float)d;
        else if (!strcmp(o, "--repetition-penalty") && num(v, -INFINITY, INFINITY, &d)) inf.repetition_penalty = (float)d;
        else if (!strcmp(o, "--top-k") && num(v, 0, UINT32_MAX, &d)) inf.top_k = (uint32_t)d;
        else if (!strcmp(o, "--max-tokens") && num(v, 0, UINT32_MAX, &d)) inf.max_tokens = (uint32_t)d;
        else if (!strcmp(o, "--seed")) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(v, &end, 10);
            if (!*v || *end || errno || *v == '-') goto bad;
            inf.seed = s;
        } else goto bad;
        continue;
    bad:
        fprintf(stderr, "orcd: %s: bad value '%s' (or unknown option)\n%s", o, v, usage);
        return 2;
    }
    if (!model || (!prompt == !chat)) {
        fprintf(stderr, "orcd: --model and exactly one of --prompt / --chat are required\n%s", usage);
        return 2;
    }
    inf.n_stop = n_stops;
    inf.stop = stops;
    Orcd__V1__ChatMessage msgs[2], *msgp[2];
    Orcd__V1__ChatList cl = ORCD__V1__CHAT_LIST__INIT;
    if (prompt) {
        inf.input_case = ORCD__V1__INFER_REQUEST__INPUT_PROMPT;
        inf.prompt = (char *)prompt;
    } else {
        size_t n = 0;
        if (system) {
            orcd__v1__chat_message__init(&msgs[n]);
            msgs[n].role = "system";
            msgs[n].content = (char *)system;
            msgp[n] = &msgs[n];
            n++;
        }
        orcd__v1__chat_message__init(&msgs[n]);
        msgs[n].role = "user";
        msgs[n].content = (char *)chat;
        msgp[n] = &msgs[n];
        n++;
        cl.n_messages = n;
        cl.messages = msgp;
        inf.input_case = ORCD__V1__INFER_REQUEST__INPUT_CHAT;
        inf.chat = &cl;
    }

    /* --- spawn the worker --------------------------------------------------- */
    char worker[PATH_MAX + 32];
    find_worker(worker, sizeof worker, worker_flag);
    const char *wargv[20];
    int na = 0;
    wargv[na++] = worker;
    wargv[na++] = "--model";
    wargv[na++] = model;
    if (device) wargv[na++] = "--device", wargv[na++] = device;
    if (ctx) wargv[na++] = "--ctx", wargv[na++] = ctx;
    if (threads) wargv[na++] = "--threads", wargv[na++] = threads;
    wargv[na++] = "--log-level";
    wargv[na++] = verbose ? "info" : "warn";
    wargv[na] = NULL;

    int to_w[2], from_w[2];
    if (pipe2(to_w, O_CLOEXEC) || pipe2(from_w, O_CLOEXEC)) {
        perror("orcd: pipe");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    pid_t pid = fork();
    if (pid < 0) {
        perror("orcd: fork");
        return 1;
    }
    if (pid == 0) {
        /* own process group: the terminal's Ctrl-C reaches only orcd, which
         * turns it into a Cancel request */
        setpgid(0, 0);
        dup2(to_w[0], STDIN_FILENO);
        dup2(from_w[1], STDOUT_FILENO);
        execv(worker, (char *const *)wargv);
        fprintf(stderr, "orcd: cannot run the worker %s: %s (use --worker or $ORCD_WORKER)\n",
                worker, strerror(errno));
        _exit(127);
    }
    close(to_w[0]);
    close(from_w[1]);
    int wfd = to_w[1], rfd = from_w[0];

    struct sigaction sa = {0};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);

    struct wk_frame_reader *rd = malloc(sizeof *rd);
    if (!rd) return 1;
    wk_frame_reader_init(rd, rfd, 0);

    const uint64_t req_id = 1;
    bool sent = false, cancel_sent = false, finished = false, tty = isatty(STDOUT_FILENO);
    int rc = 1;
    char last = '\n';
    while (!finished) {
        if (g_sigint && !cancel_sent) {
            cancel_sent = true;
            if (sent) {
                Orcd__V1__CancelRequest c = ORCD__V1__CANCEL_REQUEST__INIT;
                c.target_id = req_id;
                Orcd__V1__Request r = ORCD__V1__REQUEST__INIT;
                r.id = 2;
                r.body_case = ORCD__V1__REQUEST__BODY_CANCEL;
                r.cancel = &c;
                send_req(wfd, &r);
            } else {
                break; /* still loading: just stop */
            }
        }
        if (g_sigint > 1) {
            kill(pid, SIGKILL);
            rc = 130;
            break;
        }
        struct wk_frame_info info;
        enum wk_frame_ev ev = wk_frame_reader_next(rd, 100, -1, &info);
        if (ev == WK_FRAME_TIMEOUT) continue;
        if (ev != WK_FRAME_MSG) {
            fprintf(stderr, "orcd: the worker's output ended (%s)\n",
                    ev == WK_FRAME_EOF ? "worker exited" : "malformed frame");
            break;
        }
        Orcd__V1__Response *r = orcd__v1__response__unpack(NULL, (size_t)info.len, info.payload);
        if (!r) {
            fprintf(stderr, "orcd: undecodable response from the worker\n");
            break;
        }
        switch (r->body_case) {
        case ORCD__V1__RESPONSE__BODY_READY:
            if (verbose)
                fprintf(stderr, "[orcd] ready: %s (%s) on %s (%s), load %.2f s\n", r->ready->model->name,
                        r->ready->model->arch, r->ready->device->backend, r->ready->device->name,
                        r->ready->load_seconds);
            if (!sent) {
                Orcd__V1__Request q = ORCD__V1__REQUEST__INIT;
                q.id = req_id;
                q.body_case = ORCD__V1__REQUEST__BODY_INFER;
                q.infer = &inf;
                if (send_req(wfd, &q) != 0) {
                    fprintf(stderr, "orcd: cannot send the request to the worker\n");
                    finished = true;
                }
                sent = true;
            }
            break;
        case ORCD__V1__RESPONSE__BODY_TOKEN: {
            size_t l = strlen(r->token->text);
            if (l) {
                fwrite(r->token->text, 1, l, stdout);
                fflush(stdout);
                last = r->token->text[l - 1];
            }
            break;
        }
        case ORCD__V1__RESPONSE__BODY_STARTED:
            if (verbose)
                fprintf(stderr, "[orcd] started: %u prompt tokens, seed %" PRIu64 "\n",
                        r->started->prompt_tokens, r->started->seed);
            break;
        case ORCD__V1__RESPONSE__BODY_DONE: {
            Orcd__V1__Done *d = r->done;
            size_t l = strlen(d->text);
            if (l) {
                fwrite(d->text, 1, l, stdout);
                last = d->text[l - 1];
            }
            if (tty && last != '\n') fputc('\n', stdout);
            fflush(stdout);
            fprintf(stderr,
                    "[orcd] %u tokens (%s), prompt %u tokens, time to first token %.1f ms, "
                    "%.1f tokens/s, total %.1f ms\n",
                    d->completion_tokens, reason_str(d->reason), d->prompt_tokens,
                    d->time_to_first_token_ms, d->decode_tokens_per_s, d->total_ms);
            rc = d->reason == ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED && g_sigint ? 130 : 0;
            finished = true;
            break;
        }
        case ORCD__V1__RESPONSE__BODY_ERROR: {
            const ProtobufCEnumValue *ev2 =
                protobuf_c_enum_descriptor_get_value(&orcd__v1__error_code__descriptor, r->error->code);
            fprintf(stderr, "orcd: error %s: %s\n", ev2 ? ev2->name : "?", r->error->message);
            rc = 1;
            if (r->id == req_id || r->id == 0) finished = true;
            break;
        }
        default:
            break;
        }
        orcd__v1__response__free_unpacked(r, NULL);
    }

    /* orderly shutdown: Shutdown request, close stdin, wait */
    Orcd__V1__ShutdownRequest sd = ORCD__V1__SHUTDOWN_REQUEST__INIT;
    Orcd__V1__Request q = ORCD__V1__REQUEST__INIT;
    q.id = 3;
    q.body_case = ORCD__V1__REQUEST__BODY_SHUTDOWN;
    q.shutdown = &sd;
    send_req(wfd, &q);
    close(wfd);
    int status = 0;
    for (int i = 0; i < 100; i++) { /* up to 10 s, then kill */
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (i == 99) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        usleep(100000);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0 && rc == 0) rc = 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        fprintf(stderr, "orcd: the worker exited with status %d\n", WEXITSTATUS(status));
    wk_frame_reader_free(rd);
    free(rd);
    close(rfd);
    free(stops);
    return rc;
}
