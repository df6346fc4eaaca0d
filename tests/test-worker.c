/* test-worker.c — integration tests: spawn the real worker binary
 * ($ORCD_WORKER) and drive it through pipes, as a pool manager would.
 *
 * Every read has a deadline (poll), so a hung worker fails the test instead
 * of hanging it. Models: ../shared/models/stories260K.gguf (llama, SPM with
 * byte fallback) and tiny-qwen2-f32.gguf (qwen2, ChatML); tests skip with a
 * "SKIP" line when a model is absent. Expected greedy outputs come from the
 * llama.cpp reference logs in ../shared/reference, parsed at run time.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "loader/chat.h"
#include "loader/gguf.h"
#include "loader/quants.h"
#include "loader/model.h"
#include "loader/tokenizer.h"
#include "tests/testproc.h"
#include "tests/testutil.h"
#include "worker.pb-c.h"
#include "core/backend.h"
#include "worker/backend-open.h"
#include "worker/frame.h"
#include "worker/infer.h"

#define TIMEOUT_MS 20000
#define MAXTOK 4096

typedef Orcd__V1__Response Resp;

/* --- the worker process ----------------------------------------------------- */


static const char *model_path(const char *file) {
    static char buf[4][1024];
    static int k;
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", file);
    k = (k + 1) % 4;
    return tu_shared_path(buf[k], sizeof buf[k], rel);
}

/* The tests are split in groups by what they need (see main): a group whose
 * models or reference logs are absent is skipped as a whole (exit 77, which
 * meson reports as SKIP), so inside a test a missing file is a failure. */
static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}
static void need_model(const char *file) {
    ck_assert_msg(file_exists(model_path(file)), "%s not found (the group's check let it through)",
                  model_path(file));
}

/* The worker's device: cpu, or $ORCD_TEST_DEVICE (e.g. cuda on the GPU machine). */
static const char *test_device(void) {
    const char *d = getenv("ORCD_TEST_DEVICE");
    return d && *d ? d : "cpu";
}

/* "cpu" or "cuda" (what DeviceInfo.backend reports) */
static const char *test_backend(void) { return strncmp(test_device(), "cuda", 4) ? "cpu" : "cuda"; }

/* Spawn the worker on a model (a path under ../shared/models or absolute)
 * with extra args (NULL-terminated). Does not wait for Ready. */
static struct tu_proc *spawn_raw(const char *model, const char *const *extra) {
    const char *worker = getenv("ORCD_WORKER");
    ck_assert_msg(worker && *worker, "ORCD_WORKER is not set");
    const char *argv[32];
    int n = 0;
    argv[n++] = worker;
    argv[n++] = "--model";
    argv[n++] = model[0] == '/' ? model : model_path(model);
    argv[n++] = "--device";
    argv[n++] = test_device();
    argv[n++] = "--log-level";
    argv[n++] = getenv("ORCD_TEST_LOG") ? getenv("ORCD_TEST_LOG") : "warn";
    for (int i = 0; extra && extra[i] && n < 31; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    struct tu_proc *p = tu_proc_spawn(argv);
    ck_assert_msg(p != NULL, "cannot start %s", worker);
    return p;
}

static void send_raw(struct tu_proc *p, const void *buf, size_t len) {
    ck_assert(tu_proc_send_raw(p, buf, len));
}

static void send_req(struct tu_proc *p, const Orcd__V1__Request *r) { ck_assert(tu_proc_send(p, r)); }

/* Next response, or NULL at EOF / timeout (*why says which). */
static Resp *recv_resp_opt(struct tu_proc *p, int timeout_ms, const char **why) {
    const char *w = "";
    Resp *r = tu_proc_recv(p, timeout_ms, &w);
    ck_assert_msg(r != NULL || strcmp(w, "undecodable") != 0, "undecodable response frame");
    if (why) *why = w;
    return r;
}

static Resp *recv_resp(struct tu_proc *p) {
    const char *why = "";
    Resp *r = recv_resp_opt(p, TIMEOUT_MS, &why);
    ck_assert_msg(r != NULL, "no response from the worker: %s", why);
    return r;
}

/* Wait for exit; returns the exit status, or -(signal). Fails on timeout. */
static int wait_exit(struct tu_proc *p, int timeout_ms) {
    int status = 0;
    for (int waited = 0;; waited += 10) {
        pid_t w = waitpid(p->pid, &status, WNOHANG);
        if (w == p->pid) break;
        if (waited >= timeout_ms) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            ck_abort_msg("the worker did not exit within %d ms", timeout_ms);
        }
        usleep(10000);
    }
    p->pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static void close_stdin(struct tu_proc *p) {
    if (p->to >= 0) close(p->to);
    p->to = -1;
}

static void proc_free(struct tu_proc *p) {
    if (!p) return;
    close_stdin(p);
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
    }
    close(p->from);
    wk_frame_reader_free(p->rd);
    free(p->rd);
    free(p);
}

static Resp *expect_ready(struct tu_proc *p) {
    Resp *r = recv_resp(p);
    if (r->body_case == ORCD__V1__RESPONSE__BODY_ERROR)
        ck_abort_msg("worker failed to load: %s", r->error->message);
    ck_assert_int_eq(r->body_case, ORCD__V1__RESPONSE__BODY_READY);
    ck_assert_uint_eq(r->id, 0);
    return r;
}

static struct tu_proc *spawn_ready(const char *model, const char *const *extra) {
    struct tu_proc *p = spawn_raw(model, extra);
    orcd__v1__response__free_unpacked(expect_ready(p), NULL);
    return p;
}

/* --- requests ---------------------------------------------------------------- */

static void req_infer(struct tu_proc *p, uint64_t id, Orcd__V1__InferRequest *inf) {
    Orcd__V1__Request r = ORCD__V1__REQUEST__INIT;
    r.id = id;
    r.body_case = ORCD__V1__REQUEST__BODY_INFER;
    r.infer = inf;
    send_req(p, &r);
}

static void req_cancel(struct tu_proc *p, uint64_t id, uint64_t target) {
    Orcd__V1__CancelRequest c = ORCD__V1__CANCEL_REQUEST__INIT;
    c.target_id = target;
    Orcd__V1__Request r = ORCD__V1__REQUEST__INIT;
    r.id = id;
    r.body_case = ORCD__V1__REQUEST__BODY_CANCEL;
    r.cancel = &c;
    send_req(p, &r);
}

static void req_health(struct tu_proc *p, uint64_t id) {
    Orcd__V1__HealthRequest h = ORCD__V1__HEALTH_REQUEST__INIT;
    Orcd__V1__Request r = ORCD__V1__REQUEST__INIT;
    r.id = id;
    r.body_case = ORCD__V1__REQUEST__BODY_HEALTH;
    r.health = &h;
    send_req(p, &r);
}

static void req_shutdown(struct tu_proc *p, uint64_t id) {
    Orcd__V1__ShutdownRequest s = ORCD__V1__SHUTDOWN_REQUEST__INIT;
    Orcd__V1__Request r = ORCD__V1__REQUEST__INIT;
    r.id = id;
    r.body_case = ORCD__V1__REQUEST__BODY_SHUTDOWN;
    r.shutdown = &s;
    send_req(p, &r);
}

static Orcd__V1__InferRequest mk_prompt(const char *prompt, uint32_t max_tokens) {
    Orcd__V1__InferRequest q = ORCD__V1__INFER_REQUEST__INIT;
    q.input_case = ORCD__V1__INFER_REQUEST__INPUT_PROMPT;
    q.prompt = (char *)prompt;
    q.max_tokens = max_tokens;
    return q;
}

/* UTF-8 check written here, independent of the worker's own. */
static bool utf8_ok_n(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], need, min;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) need = 1, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) need = 2, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) need = 3, cp = c & 0x07, min = 0x10000;
        else return false;
        if (i + need >= n) return false;
        for (unsigned k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += need + 1;
    }
    return true;
}
static bool utf8_ok(const char *s) { return utf8_ok_n(s, strlen(s)); }

/* An Error.message speaks of the request, never of our functions. */
static void expect_client_message(const char *msg) {
    ck_assert_msg(utf8_ok(msg), "Error.message is not valid UTF-8");
    ck_assert_msg(!strstr(msg, "wk_") && !strstr(msg, "gguf_") && !strstr(msg, "__"),
                  "Error.message names an internal function: %s", msg);
}

/* --- collecting one request's stream ------------------------------------------ */

struct run {
    bool started, done, error;
    uint32_t prompt_tokens;
    uint64_t seed;
    int n;
    int32_t ids[MAXTOK];
    char *texts[MAXTOK];  /* each event's text */
    char text[65536];     /* all event texts + Done.text */
    Orcd__V1__FinishReason reason;
    uint32_t completion_tokens;
    double ttft_ms, decode_tps, total_ms;
    Orcd__V1__ErrorCode code;
    char message[512];
    int n_other;          /* responses for other ids seen meanwhile */
};

static void run_free(struct run *r) {
    for (int i = 0; i < r->n; i++) free(r->texts[i]);
    memset(r, 0, sizeof *r);
}

/* Apply one response to r when it belongs to id; true once r has ended. */
static bool run_feed(struct run *r, uint64_t id, const Resp *m) {
    if (m->id != id) {
        r->n_other++;
        return false;
    }
    switch (m->body_case) {
    case ORCD__V1__RESPONSE__BODY_STARTED:
        ck_assert_msg(!r->started && r->n == 0, "request %" PRIu64 ": Started twice or late", id);
        r->started = true;
        r->prompt_tokens = m->started->prompt_tokens;
        r->seed = m->started->seed;
        return false;
    case ORCD__V1__RESPONSE__BODY_TOKEN: {
        ck_assert_msg(r->started, "request %" PRIu64 ": Token before Started", id);
        ck_assert_int_lt(r->n, MAXTOK);
        ck_assert_uint_eq(m->token->index, (uint32_t)r->n);
        const char *t = m->token->text;
        ck_assert_msg(utf8_ok(t), "request %" PRIu64 ": token %d text is not valid UTF-8", id, r->n);
        r->ids[r->n] = m->token->id;
        r->texts[r->n] = strdup(t);
        strncat(r->text, t, sizeof r->text - strlen(r->text) - 1);
        r->n++;
        return false;
    }
    case ORCD__V1__RESPONSE__BODY_DONE:
        r->done = true;
        r->reason = m->done->reason;
        r->completion_tokens = m->done->completion_tokens;
        r->ttft_ms = m->done->time_to_first_token_ms;
        r->decode_tps = m->done->decode_tokens_per_s;
        r->total_ms = m->done->total_ms;
        ck_assert_msg(utf8_ok(m->done->text), "Done.text is not valid UTF-8");
        strncat(r->text, m->done->text, sizeof r->text - strlen(r->text) - 1);
        return true;
    case ORCD__V1__RESPONSE__BODY_ERROR:
        r->error = true;
        r->code = m->error->code;
        expect_client_message(m->error->message);
        snprintf(r->message, sizeof r->message, "%s", m->error->message);
        return true;
    default:
        ck_abort_msg("request %" PRIu64 ": unexpected response case %d", id, m->body_case);
        return true;
    }
}

static void collect(struct tu_proc *p, uint64_t id, struct run *r) {
    for (;;) {
        Resp *m = recv_resp(p);
        bool end = run_feed(r, id, m);
        orcd__v1__response__free_unpacked(m, NULL);
        if (end) return;
    }
}

static void infer(struct tu_proc *p, uint64_t id, Orcd__V1__InferRequest *q, struct run *r) {
    memset(r, 0, sizeof *r);
    req_infer(p, id, q);
    collect(p, id, r);
}

/* A short request that must succeed: the worker is still serving. */
static void expect_serving(struct tu_proc *p, uint64_t id) {
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", 4);
    struct run *r = calloc(1, sizeof *r);
    infer(p, id, &q, r);
    ck_assert_msg(r->done, "request %" PRIu64 " failed: %s", id, r->message);
    ck_assert_int_eq(r->n, 4);
    ck_assert_int_eq(r->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH);
    run_free(r);
    free(r);
}

static void expect_error(struct tu_proc *p, uint64_t id, Orcd__V1__InferRequest *q,
                         Orcd__V1__ErrorCode code, const char *needle) {
    struct run *r = calloc(1, sizeof *r);
    infer(p, id, q, r);
    ck_assert_msg(r->error, "request %" PRIu64 ": expected an error naming '%s'", id, needle);
    ck_assert_msg(!r->started, "request %" PRIu64 ": Started before a validation error", id);
    ck_assert_int_eq(r->code, code);
    ck_assert_msg(strstr(r->message, needle), "error '%s' does not name '%s'", r->message, needle);
    run_free(r);
    free(r);
}

/* --- llama.cpp reference logs --------------------------------------------------- */

struct ref {
    int n_prompt, n_gen;
    int32_t prompt_ids[512], gen_ids[512];
    char text[8192]; /* the raw completion text */
};

static int parse_ids(const char *line, int32_t *out, int max) {
    int n = 0;
    const char *p = strchr(line, ':');
    if (!p) return 0;
    p++;
    while (n < max) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        out[n++] = (int32_t)v;
        p = end;
    }
    return n;
}

/* rel under ../shared/reference; false (SKIP printed) when absent. */
static bool load_ref(const char *rel, struct ref *r) {
    char path[1024], full[300];
    snprintf(full, sizeof full, "reference/%s", rel);
    tu_shared_path(path, sizeof path, full);
    ck_assert_msg(file_exists(path), "%s not found (the group's check let it through)", path);
    size_t len = 0;
    char *buf = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(buf);
    buf = realloc(buf, len + 1);
    buf[len] = '\0';
    memset(r, 0, sizeof *r);
    const char *marker = "---- text (raw) ----\n";
    char *raw = strstr(buf, marker);
    ck_assert_ptr_nonnull(raw);
    snprintf(r->text, sizeof r->text, "%s", raw + strlen(marker));
    size_t tl = strlen(r->text);
    if (tl && r->text[tl - 1] == '\n') r->text[tl - 1] = '\0'; /* the file's own newline */
    *raw = '\0';
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (!strncmp(line, "prompt_ids:", 11)) r->n_prompt = parse_ids(line, r->prompt_ids, 512);
        else if (!strncmp(line, "gen_ids:", 8)) r->n_gen = parse_ids(line, r->gen_ids, 512);
    }
    free(buf);
    ck_assert_int_gt(r->n_prompt, 0);
    ck_assert_int_gt(r->n_gen, 0);
    return true;
}

#define STORIES "stories260K.gguf"
#define QWEN "tiny-qwen2-f32.gguf"

/* A long generation on stories260K: up to the end of its context. */
static Orcd__V1__InferRequest long_request(void) {
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", 0);
    q.ignore_eos = 1;
    return q;
}

/* Read until the first Token of id (asserting Started came first). */
static void wait_first_token(struct tu_proc *p, uint64_t id, struct run *r) {
    while (r->n == 0) {
        Resp *m = recv_resp(p);
        bool end = run_feed(r, id, m);
        orcd__v1__response__free_unpacked(m, NULL);
        ck_assert_msg(!end, "request %" PRIu64 " ended before its first token: %s", id, r->message);
    }
}

/* Cancel target (request id cid) and read until both the CancelAck and the
 * end of target's stream came, in whichever order. Returns found. */
static bool cancel_and_finish(struct tu_proc *p, uint64_t cid, uint64_t target, struct run *r) {
    req_cancel(p, cid, target);
    bool acked = false, found = false;
    while (!acked || !(r->done || r->error)) {
        Resp *m = recv_resp(p);
        if (m->id == cid && m->body_case == ORCD__V1__RESPONSE__BODY_CANCEL_ACK) {
            ck_assert_uint_eq(m->cancel_ack->target_id, target);
            acked = true;
            found = m->cancel_ack->found;
        } else {
            ck_assert_uint_eq(m->id, target);
            run_feed(r, target, m);
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    return found;
}

// --- tests: start-up ------------------------------------------------------------

START_TEST(test_ready_and_health) {
    need_model(STORIES);
    struct tu_proc *p = spawn_raw(STORIES, NULL);
    Resp *rd = expect_ready(p);
    ck_assert_str_eq(rd->ready->model->arch, "llama");
    ck_assert_uint_eq(rd->ready->model->vocab_size, 512);
    ck_assert_uint_gt(rd->ready->model->parameters, 200000);
    ck_assert_uint_gt(rd->ready->model->context_length, 0);
    ck_assert_str_eq(rd->ready->device->backend, test_backend());
    ck_assert(rd->ready->load_seconds > 0);
    orcd__v1__response__free_unpacked(rd, NULL);

    req_health(p, 77);
    Resp *h = recv_resp(p);
    ck_assert_uint_eq(h->id, 77);
    ck_assert_int_eq(h->body_case, ORCD__V1__RESPONSE__BODY_HEALTH);
    ck_assert_int_eq(h->health->state, ORCD__V1__HEALTH_STATE__HEALTH_STATE_READY);
    ck_assert_ptr_nonnull(h->health->model);
    ck_assert_str_eq(h->health->model->arch, "llama");
    ck_assert_uint_eq(h->health->running_id, 0);
    ck_assert_uint_eq(h->health->queue_depth, 0);
    ck_assert_uint_eq(h->health->requests_served, 0);
    orcd__v1__response__free_unpacked(h, NULL);

    expect_serving(p, 5);
    req_health(p, 78);
    h = recv_resp(p);
    ck_assert_uint_eq(h->health->requests_served, 1);
    orcd__v1__response__free_unpacked(h, NULL);
    proc_free(p);
}
END_TEST

START_TEST(test_health_before_ready_is_loading) {
    need_model(STORIES);
    struct tu_proc *p = spawn_raw(STORIES, NULL);
    req_health(p, 9); /* may arrive before or after the load ends */
    bool ready = false, health = false;
    while (!ready || !health) {
        Resp *m = recv_resp(p);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_READY) ready = true;
        if (m->body_case == ORCD__V1__RESPONSE__BODY_HEALTH) {
            health = true;
            ck_assert_uint_eq(m->id, 9);
            if (!ready) { /* answered while loading */
                ck_assert_int_eq(m->health->state, ORCD__V1__HEALTH_STATE__HEALTH_STATE_LOADING);
                ck_assert_ptr_null(m->health->model);
            } else {
                ck_assert_int_eq(m->health->state, ORCD__V1__HEALTH_STATE__HEALTH_STATE_READY);
            }
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    proc_free(p);
}
END_TEST

START_TEST(test_health_while_loading_fifo) {
    /* The model path is a FIFO: the worker's load blocks in open() until we
     * open the other end, so "loading" lasts as long as the test wants. */
    char dir[] = "/tmp/orcd-fifo-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/model.gguf", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    struct tu_proc *p = spawn_raw(fifo, NULL);
    Orcd__V1__InferRequest q = mk_prompt("Once", 2);
    req_infer(p, 5, &q); /* accepted into the queue while loading */
    req_health(p, 6);
    Resp *m = recv_resp(p);
    ck_assert_uint_eq(m->id, 6);
    ck_assert_int_eq(m->body_case, ORCD__V1__RESPONSE__BODY_HEALTH);
    ck_assert_int_eq(m->health->state, ORCD__V1__HEALTH_STATE__HEALTH_STATE_LOADING);
    ck_assert_ptr_null(m->health->model);
    ck_assert_uint_eq(m->health->queue_depth, 1);
    orcd__v1__response__free_unpacked(m, NULL);
    /* now let the load fail: Error id 0, the queued request is refused, exit 4 */
    int fd = open(fifo, O_WRONLY); /* releases the worker's open() */
    ck_assert_int_ge(fd, 0);
    close(fd);
    bool err0 = false, err5 = false;
    for (;;) {
        const char *why = "";
        Resp *r = recv_resp_opt(p, TIMEOUT_MS, &why);
        if (!r) {
            ck_assert_str_eq(why, "eof");
            break;
        }
        ck_assert_int_eq(r->body_case, ORCD__V1__RESPONSE__BODY_ERROR);
        if (r->id == 0) err0 = true;
        if (r->id == 5) {
            ck_assert_int_eq(r->error->code, ORCD__V1__ERROR_CODE__UNAVAILABLE);
            err5 = true;
        }
        orcd__v1__response__free_unpacked(r, NULL);
    }
    ck_assert(err0 && err5);
    ck_assert_int_eq(wait_exit(p, 10000), 4);
    proc_free(p);
    unlink(fifo);
    rmdir(dir);
}
END_TEST

START_TEST(test_load_failure) {
    /* a missing file, then a file that is not GGUF: Error id 0, exit 4 */
    const char *bad[2] = {"/nonexistent/model.gguf", NULL};
    char tmp[] = "/tmp/orcd-test-XXXXXX";
    int fd = mkstemp(tmp);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, "this is not a gguf file at all\n", 31), 31);
    close(fd);
    bad[1] = tmp;
    for (int i = 0; i < 2; i++) {
        struct tu_proc *p = spawn_raw(bad[i], NULL);
        Resp *m = recv_resp(p);
        ck_assert_int_eq(m->body_case, ORCD__V1__RESPONSE__BODY_ERROR);
        ck_assert_uint_eq(m->id, 0);
        ck_assert_str_ne(m->error->message, "");
        expect_client_message(m->error->message);
        ck_assert_int_ne(m->error->code, ORCD__V1__ERROR_CODE__OK);
        orcd__v1__response__free_unpacked(m, NULL);
        ck_assert_int_eq(wait_exit(p, 10000), 4);
        proc_free(p);
    }
    unlink(tmp);
}
END_TEST

START_TEST(test_load_failure_after_eof_exits_4) {
    /* Bug fixed 2026-11-27: stdin reached EOF while the model was still
     * loading (a clean-stop request), then the load failed: the worker exited
     * 0. A supervisor must see the failed load: exit 4 whatever came first. */
    char dir[] = "/tmp/orcd-fifo-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char fifo[64];
    snprintf(fifo, sizeof fifo, "%s/model.gguf", dir);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    struct tu_proc *p = spawn_raw(fifo, NULL);
    req_health(p, 6); /* answered while loading: the worker is up */
    Resp *m = recv_resp(p);
    ck_assert_int_eq(m->body_case, ORCD__V1__RESPONSE__BODY_HEALTH);
    orcd__v1__response__free_unpacked(m, NULL);
    close(p->to); /* EOF on stdin while loading */
    p->to = -1;
    usleep(100 * 1000);
    int fd = open(fifo, O_WRONLY); /* releases the worker's open(): the load fails */
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(wait_exit(p, 10000), 4);
    proc_free(p);
    unlink(fifo);
    rmdir(dir);
}
END_TEST

START_TEST(test_bad_command_line) {
    const char *extra[] = {"--ctx", "lots", NULL};
    struct tu_proc *p = spawn_raw(STORIES, extra);
    ck_assert_int_eq(wait_exit(p, 10000), 2);
    proc_free(p);
}
END_TEST

// --- tests: generation ------------------------------------------------------------

START_TEST(test_greedy_reference_stories) {
    static struct ref ref_storage; /* static: an early return (skip) leaks nothing */
    struct ref *ref = &ref_storage;
    memset(ref, 0, sizeof *ref);
    need_model(STORIES);
    ck_assert(load_ref("stories260K/once.txt", ref));
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", (uint32_t)ref->n_gen);
    struct run *r = calloc(1, sizeof *r);
    infer(p, 1, &q, r);
    ck_assert_msg(r->done, "error: %s", r->message);
    ck_assert_uint_eq(r->prompt_tokens, (uint32_t)ref->n_prompt);
    ck_assert_int_eq(r->n, ref->n_gen);
    for (int i = 0; i < ref->n_gen; i++)
        ck_assert_msg(r->ids[i] == ref->gen_ids[i], "token %d: got %d, reference %d", i, r->ids[i],
                      ref->gen_ids[i]);
    ck_assert_str_eq(r->text, ref->text);
    ck_assert_int_eq(r->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH);
    ck_assert_uint_eq(r->completion_tokens, (uint32_t)ref->n_gen);
    ck_assert(r->ttft_ms > 0 && r->decode_tps > 0 && r->total_ms >= r->ttft_ms);
    fprintf(stderr, "PERF stories260K %s: %d tokens, time to first token %.2f ms, decode %.1f tokens/s\n",
            test_device(), r->n, r->ttft_ms, r->decode_tps);
    run_free(r);
    free(r);
    proc_free(p);
}
END_TEST

START_TEST(test_greedy_reference_qwen_prompt) {
    static struct ref ref_storage; /* static: an early return (skip) leaks nothing */
    struct ref *ref = &ref_storage;
    memset(ref, 0, sizeof *ref);
    need_model(QWEN);
    ck_assert(load_ref("tiny-qwen2/f32.once.txt", ref));
    struct tu_proc *p = spawn_ready(QWEN, NULL);
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", (uint32_t)ref->n_gen);
    q.ignore_eos = 1; /* as the reference ran */
    struct run *r = calloc(1, sizeof *r);
    infer(p, 1, &q, r);
    ck_assert_msg(r->done, "error: %s", r->message);
    ck_assert_uint_eq(r->prompt_tokens, (uint32_t)ref->n_prompt);
    ck_assert_int_eq(r->n, ref->n_gen);
    for (int i = 0; i < ref->n_gen; i++)
        ck_assert_msg(r->ids[i] == ref->gen_ids[i], "token %d: got %d, reference %d", i, r->ids[i],
                      ref->gen_ids[i]);
    run_free(r);

    /* a longer run for the throughput figure */
    q.max_tokens = 256;
    infer(p, 2, &q, r);
    ck_assert(r->done && r->n == 256);
    fprintf(stderr, "PERF tiny-qwen2-f32 %s: %d tokens, time to first token %.2f ms, decode %.1f tokens/s\n",
            test_device(), r->n, r->ttft_ms, r->decode_tps);
    run_free(r);
    free(r);
    proc_free(p);
}
END_TEST

START_TEST(test_chat_chatml_reference) {
    /* The reference ran llama.cpp on the ChatML text of one user turn
     * (prompt_ids). The worker's chat path must end its prompt with exactly
     * those ids (the model's Qwen template may put a default system turn
     * before them), and generate what the reference generated from them. */
    static struct ref ref_storage; /* static: an early return (skip) leaks nothing */
    struct ref *ref = &ref_storage;
    memset(ref, 0, sizeof *ref);
    need_model(QWEN);
    ck_assert(load_ref("tiny-qwen2/f32.chat.txt", ref));
    struct tu_proc *p = spawn_ready(QWEN, NULL);
    Orcd__V1__ChatMessage m = ORCD__V1__CHAT_MESSAGE__INIT, *mp = &m;
    m.role = "user";
    m.content = "Write a haiku about GPUs.";
    Orcd__V1__ChatList cl = ORCD__V1__CHAT_LIST__INIT;
    cl.n_messages = 1;
    cl.messages = &mp;
    Orcd__V1__InferRequest q = ORCD__V1__INFER_REQUEST__INIT;
    q.input_case = ORCD__V1__INFER_REQUEST__INPUT_CHAT;
    q.chat = &cl;
    q.max_tokens = (uint32_t)ref->n_gen;
    q.ignore_eos = 1;
    struct run *r = calloc(1, sizeof *r), *rt = calloc(1, sizeof *rt);
    infer(p, 1, &q, r);
    ck_assert_msg(r->done, "error: %s", r->message);
    ck_assert_uint_ge(r->prompt_tokens, (uint32_t)ref->n_prompt);

    /* the template's tokens, from the library the worker uses */
    struct wk_model *model = calloc(1, sizeof *model);
    char err[256];
    ck_assert_int_eq(wk_model_load(model_path(QWEN), model, err, sizeof err), WK_STATUS_OK);
    struct wk_chat_msg cm = {.role = "user", .content = "Write a haiku about GPUs."};
    int32_t *ids = NULL;
    size_t n_ids = 0;
    ck_assert_int_eq(wk_chat_tokenize(&model->vocab, &cm, 1, &ids, &n_ids, err, sizeof err), WK_STATUS_OK);
    ck_assert_uint_eq(n_ids, r->prompt_tokens);
    ck_assert_mem_eq(ids + n_ids - (size_t)ref->n_prompt, ref->prompt_ids,
                     sizeof(int32_t) * (size_t)ref->n_prompt);
    /* the same ids as token_ids give the same stream as the chat request */
    Orcd__V1__TokenIds ti = ORCD__V1__TOKEN_IDS__INIT;
    ti.n_ids = n_ids;
    ti.ids = ids;
    Orcd__V1__InferRequest qt = q;
    qt.input_case = ORCD__V1__INFER_REQUEST__INPUT_TOKEN_IDS;
    qt.token_ids = &ti;
    infer(p, 2, &qt, rt);
    ck_assert_int_eq(rt->n, r->n);
    ck_assert_mem_eq(rt->ids, r->ids, sizeof(int32_t) * (size_t)r->n);
    run_free(rt);
    /* and the reference's own prompt ids reproduce its greedy tokens */
    ti.n_ids = (size_t)ref->n_prompt;
    ti.ids = ref->prompt_ids;
    infer(p, 3, &qt, rt);
    ck_assert_int_eq(rt->n, ref->n_gen);
    for (int i = 0; i < ref->n_gen; i++)
        ck_assert_msg(rt->ids[i] == ref->gen_ids[i], "token %d: got %d, reference %d", i, rt->ids[i],
                      ref->gen_ids[i]);
    run_free(rt);
    free(rt);
    free(ids);
    wk_model_free(model);
    free(model);
    run_free(r);

    /* content cannot inject control tokens: "<|im_end|>" in content is plain
     * text (several tokens), so the prompt grows by more than one token */
    m.content = "";
    q.max_tokens = 1;
    infer(p, 12, &q, r);
    ck_assert(r->done);
    uint32_t base = r->prompt_tokens;
    run_free(r);
    m.content = "<|im_end|>";
    infer(p, 13, &q, r);
    ck_assert(r->done);
    ck_assert_uint_gt(r->prompt_tokens, base + 1);
    run_free(r);
    /* the same text as a plain prompt is also not a control token */
    Orcd__V1__InferRequest q2 = mk_prompt("<|im_end|>", 1);
    infer(p, 14, &q2, r);
    ck_assert(r->done);
    ck_assert_uint_gt(r->prompt_tokens, 1);
    run_free(r);

    /* a role the templates do not know */
    m.role = "wizard";
    m.content = "hi";
    expect_error(p, 5, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "role");
    expect_serving(p, 6);
    free(r);
    proc_free(p);
}
END_TEST

START_TEST(test_chat_unknown_template) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__ChatMessage m = ORCD__V1__CHAT_MESSAGE__INIT, *mp = &m;
    m.role = "user";
    m.content = "hello";
    Orcd__V1__ChatList cl = ORCD__V1__CHAT_LIST__INIT;
    cl.n_messages = 1;
    cl.messages = &mp;
    Orcd__V1__InferRequest q = ORCD__V1__INFER_REQUEST__INIT;
    q.input_case = ORCD__V1__INFER_REQUEST__INPUT_CHAT;
    q.chat = &cl;
    q.max_tokens = 4;
    struct run *r = calloc(1, sizeof *r);
    infer(p, 1, &q, r);
    ck_assert(r->error);
    ck_assert_int_eq(r->code, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT);
    ck_assert_msg(strstr(r->message, "template"), "message: %s", r->message);
    ck_assert_msg(!strncmp(r->message, "chat: ", 6), "message: %s", r->message);
    /* a role outside system/user/assistant, named in the request's terms */
    m.role = "robot";
    infer(p, 3, &q, r);
    ck_assert(r->error);
    ck_assert_int_eq(r->code, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT);
    ck_assert_msg(strstr(r->message, "chat.messages[0].role") && strstr(r->message, "\"robot\""),
                  "message: %s", r->message);
    free(r);
    expect_serving(p, 2);
    proc_free(p);
}
END_TEST

START_TEST(test_seeded_sampling_deterministic) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", 64);
    q.temperature = 0.8f;
    q.seed = 1234;
    q.ignore_eos = 1;
    struct run *first = calloc(1, sizeof *first), *r = calloc(1, sizeof *r);
    infer(p, 100, &q, first);
    ck_assert(first->done && first->n == 64);
    ck_assert_uint_eq(first->seed, 1234);
    for (int k = 1; k < 10; k++) {
        infer(p, 100 + (uint64_t)k, &q, r);
        ck_assert(r->done);
        ck_assert_int_eq(r->n, first->n);
        ck_assert_mem_eq(r->ids, first->ids, sizeof(int32_t) * (size_t)first->n);
        ck_assert_str_eq(r->text, first->text);
        run_free(r);
    }
    /* a second worker process gives the same stream */
    struct tu_proc *p2 = spawn_ready(STORIES, NULL);
    infer(p2, 1, &q, r);
    ck_assert_mem_eq(r->ids, first->ids, sizeof(int32_t) * (size_t)first->n);
    run_free(r);
    proc_free(p2);
    /* a different seed gives a different stream */
    q.seed = 4321;
    infer(p, 200, &q, r);
    ck_assert(r->done && r->n == 64);
    ck_assert_msg(memcmp(r->ids, first->ids, sizeof(int32_t) * 64) != 0,
                  "seeds 1234 and 4321 gave the same 64 tokens");
    run_free(r);
    /* seed 0: the worker picks one, reports it, and it reproduces the stream */
    q.seed = 0;
    infer(p, 201, &q, r);
    ck_assert(r->done);
    uint64_t picked = r->seed;
    ck_assert_uint_ne(picked, 0);
    struct run *again = calloc(1, sizeof *again);
    q.seed = picked;
    infer(p, 202, &q, again);
    ck_assert_int_eq(again->n, r->n);
    ck_assert_mem_eq(again->ids, r->ids, sizeof(int32_t) * (size_t)r->n);
    run_free(again);
    run_free(r);
    run_free(first);
    free(again);
    free(first);
    free(r);
    proc_free(p);
}
END_TEST

START_TEST(test_logprobs) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", 8);
    q.logprobs = 5;
    req_infer(p, 1, &q);
    int tokens = 0;
    for (bool end = false; !end;) {
        Resp *m = recv_resp(p);
        ck_assert_uint_eq(m->id, 1);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_TOKEN) {
            Orcd__V1__Token *t = m->token;
            ck_assert_uint_eq(t->n_top_logprobs, 5);
            ck_assert(t->logprob <= 0.0f);
            /* greedy: the chosen token is the most likely one */
            ck_assert_int_eq(t->top_logprobs[0]->id, t->id);
            ck_assert(fabsf(t->top_logprobs[0]->logprob - t->logprob) < 1e-5f);
            for (int i = 1; i < 5; i++)
                ck_assert(t->top_logprobs[i]->logprob <= t->top_logprobs[i - 1]->logprob);
            for (int i = 0; i < 5; i++) ck_assert(utf8_ok(t->top_logprobs[i]->text));
            tokens++;
        }
        end = m->body_case == ORCD__V1__RESPONSE__BODY_DONE || m->body_case == ORCD__V1__RESPONSE__BODY_ERROR;
        orcd__v1__response__free_unpacked(m, NULL);
    }
    ck_assert_int_eq(tokens, 8);
    proc_free(p);
}
END_TEST

START_TEST(test_token_ids_input) {
    static struct ref ref_storage; /* static: an early return (skip) leaks nothing */
    struct ref *ref = &ref_storage;
    memset(ref, 0, sizeof *ref);
    need_model(STORIES);
    ck_assert(load_ref("stories260K/once.txt", ref));
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__TokenIds ti = ORCD__V1__TOKEN_IDS__INIT;
    ti.n_ids = (size_t)ref->n_prompt;
    ti.ids = ref->prompt_ids;
    Orcd__V1__InferRequest q = ORCD__V1__INFER_REQUEST__INIT;
    q.input_case = ORCD__V1__INFER_REQUEST__INPUT_TOKEN_IDS;
    q.token_ids = &ti;
    q.max_tokens = 20;
    struct run *r = calloc(1, sizeof *r);
    infer(p, 1, &q, r);
    ck_assert(r->done);
    ck_assert_uint_eq(r->prompt_tokens, (uint32_t)ref->n_prompt);
    ck_assert_mem_eq(r->ids, ref->gen_ids, 20 * sizeof(int32_t));
    run_free(r);
    free(r);
    proc_free(p);
}
END_TEST

// --- tests: stop strings, UTF-8 ---------------------------------------------------

START_TEST(test_stop_string_split_across_tokens) {
    static struct ref ref_storage; /* static: an early return (skip) leaks nothing */
    struct ref *ref = &ref_storage;
    memset(ref, 0, sizeof *ref);
    need_model(STORIES);
    ck_assert(load_ref("stories260K/once.txt", ref));
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    /* " named" and " Lily" are separate tokens (395 317): "med Li" spans them */
    const char *stop = "med Li";
    const char *at = strstr(ref->text, stop);
    ck_assert_ptr_nonnull(at);
    char *never = "purple elephant";
    char *stops[2] = {never, (char *)stop};
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", (uint32_t)ref->n_gen);
    q.n_stop = 2;
    q.stop = stops;
    struct run *r = calloc(1, sizeof *r);
    infer(p, 1, &q, r);
    ck_assert(r->done);
    ck_assert_int_eq(r->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_STOP);
    ck_assert_uint_eq(strlen(r->text), (size_t)(at - ref->text));
    ck_assert_int_eq(strncmp(r->text, ref->text, (size_t)(at - ref->text)), 0);
    for (int i = 0; i < r->n; i++) {
        ck_assert_ptr_null(strstr(r->texts[i], "med"));
        ck_assert_ptr_null(strstr(r->texts[i], "Li"));
    }
    /* the stream stopped at the token completing the stop string */
    int last = r->n - 1;
    ck_assert_int_eq(r->ids[last], 317); /* " Lily" */
    run_free(r);

    /* a stop string whose prefix shows up but never completes: the held-back
     * text is released, and the tail ("do" of "do not") is flushed at the end */
    char *stops2[1] = {"do not"};
    q.n_stop = 1;
    q.stop = stops2;
    infer(p, 2, &q, r);
    ck_assert(r->done);
    ck_assert_int_eq(r->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH);
    ck_assert_str_eq(r->text, ref->text);
    run_free(r);
    free(r);
    proc_free(p);
}
END_TEST

/* The bytes a token stands for, read from the vocabulary text itself: SPM
 * "<0xNN>" byte tokens and "▁" for a space; byte-level BPE symbols via the
 * GPT-2 byte table. Returns the length written to out. */
static int gpt2_byte_of(uint32_t cp) {
    /* bytes_to_unicode(): printable bytes map to themselves, the others to 256+ */
    static int table[512];
    static bool init;
    if (!init) {
        for (int i = 0; i < 512; i++) table[i] = -1;
        int n = 0;
        for (int b = 0; b < 256; b++) {
            bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
            if (keep) table[b] = b;
            else table[256 + n++] = b;
        }
        init = true;
    }
    return cp < 512 ? table[cp] : -1;
}


static size_t token_bytes(const struct wk_vocab *v, int32_t id, unsigned char *out) {
    const char *t = wk_token_text(v, id);
    size_t n = 0;
    if (!t) return 0;
    unsigned hex;
    if (v->type == WK_VOCAB_SPM) {
        if (strlen(t) == 6 && sscanf(t, "<0x%2X>", &hex) == 1) {
            out[0] = (unsigned char)hex;
            return 1;
        }
        for (const char *s = t; *s;) {
            if (!strncmp(s, "\xe2\x96\x81", 3)) out[n++] = ' ', s += 3;
            else out[n++] = (unsigned char)*s++;
        }
        return n;
    }
    /* BPE: decode the UTF-8 symbols back to bytes */
    const unsigned char *s = (const unsigned char *)t;
    while (*s) {
        uint32_t cp;
        if (*s < 0x80) cp = *s++;
        else if ((*s & 0xE0) == 0xC0) cp = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F), s += 2;
        else return 0; /* specials: not byte symbols */
        int b = gpt2_byte_of(cp);
        if (b < 0) return 0;
        out[n++] = (unsigned char)b;
    }
    return n;
}

/* Index of the first multi-byte character whose bytes come from two or more
 * tokens, or -1. tok_of[k] = token index of byte k. */
static int split_char_at(const unsigned char *b, size_t n, const int *tok_of) {
    for (size_t i = 0; i < n; i++) {
        int need = b[i] >= 0xF0 ? 3 : b[i] >= 0xE0 ? 2 : b[i] >= 0xC2 ? 1 : 0;
        if (b[i] >= 0xF5 || need == 0 || i + (size_t)need >= n) continue;
        if (!utf8_ok_n((const char *)b + i, (size_t)need + 1)) continue;
        if (tok_of[i] != tok_of[i + (size_t)need]) return (int)i;
    }
    return -1;
}

START_TEST(test_utf8_split_across_tokens) {
    /* tiny-qwen2 has random weights and a byte-level vocabulary, so sampling
     * at a high temperature draws raw byte tokens; search seeds until a valid
     * multi-byte character arrives split over several tokens. In every run,
     * every event's text must be valid UTF-8; in the found run, the character
     * must come out whole. */
    need_model(QWEN);
    struct wk_model *model = calloc(1, sizeof *model);
    char err[256];
    ck_assert_int_eq(wk_model_load(model_path(QWEN), model, err, sizeof err), WK_STATUS_OK);
    struct tu_proc *p = spawn_ready(QWEN, NULL);
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", 96);
    q.temperature = 1.5f;
    q.ignore_eos = 1;
    struct run *r = calloc(1, sizeof *r);
    static unsigned char bytes[96 * 64];
    static int tok_of[96 * 64];
    bool found = false;
    int runs = 0;
    for (uint64_t seed = 1; seed <= 400 && !found; seed++, runs++) {
        q.seed = seed;
        infer(p, seed, &q, r); /* asserts UTF-8 validity of every event */
        ck_assert(r->done);
        size_t n = 0;
        bool clean = true;
        for (int i = 0; i < r->n; i++) {
            size_t k = token_bytes(&model->vocab, r->ids[i], bytes + n);
            if (k == 0 && r->ids[i] >= 256) clean = false; /* a special token: skip this run */
            for (size_t j = 0; j < k; j++) tok_of[n + j] = i;
            n += k;
        }
        int at = clean ? split_char_at(bytes, n, tok_of) : -1;
        if (at >= 0) {
            /* the split character sits whole inside one event (invalid bytes
             * elsewhere become U+FFFD and do not disturb it) */
            found = true;
            int need = bytes[at] >= 0xF0 ? 4 : bytes[at] >= 0xE0 ? 3 : 2;
            char ch[5] = {0};
            memcpy(ch, bytes + at, (size_t)need);
            bool whole = false;
            for (int i = 0; i < r->n; i++)
                if (strstr(r->texts[i], ch)) whole = true;
            ck_assert_msg(whole, "seed %" PRIu64 ": the split character never came out whole", seed);
            /* all bytes valid: the streamed text is exactly them */
            if (utf8_ok_n((const char *)bytes, n)) {
                ck_assert_uint_eq(strlen(r->text), n);
                ck_assert_mem_eq(r->text, bytes, n);
            }
            fprintf(stderr, "utf8: seed %" PRIu64 " splits a %d-byte character over tokens %d..%d\n",
                    seed, need, tok_of[at], tok_of[at + need - 1]);
        }
        run_free(r);
    }
    ck_assert_msg(found, "no multi-byte character split across tokens in %d sampled runs", runs);
    free(r);
    wk_model_free(model);
    free(model);
    proc_free(p);
}
END_TEST

// --- tests: cancel, health, queue -------------------------------------------------

START_TEST(test_cancel_running) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__InferRequest q = long_request();
    struct run *r = calloc(1, sizeof *r);
    req_infer(p, 10, &q);
    while (r->n < 3) {
        Resp *m = recv_resp(p);
        ck_assert(!run_feed(r, 10, m));
        orcd__v1__response__free_unpacked(m, NULL);
    }
    req_cancel(p, 11, 10);
    bool acked = false;
    while (!r->done) {
        Resp *m = recv_resp(p);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_CANCEL_ACK) {
            ck_assert_uint_eq(m->id, 11);
            ck_assert_uint_eq(m->cancel_ack->target_id, 10);
            ck_assert(m->cancel_ack->found);
            acked = true;
        } else {
            run_feed(r, 10, m);
            ck_assert(!r->error);
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    ck_assert(acked);
    ck_assert_int_eq(r->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
    ck_assert_uint_eq(r->completion_tokens, (uint32_t)r->n);
    ck_assert_uint_lt(r->completion_tokens + r->prompt_tokens, 2048);
    run_free(r);
    free(r);
    /* again (already finished) and an unknown id: found = false */
    for (uint64_t target = 10; target <= 999; target += 989) {
        req_cancel(p, 12, target);
        Resp *m = recv_resp(p);
        ck_assert_int_eq(m->body_case, ORCD__V1__RESPONSE__BODY_CANCEL_ACK);
        ck_assert_uint_eq(m->cancel_ack->target_id, target);
        ck_assert(!m->cancel_ack->found);
        orcd__v1__response__free_unpacked(m, NULL);
    }
    expect_serving(p, 13);
    proc_free(p);
}
END_TEST

START_TEST(test_health_during_generation) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__InferRequest q = long_request();
    struct run *r = calloc(1, sizeof *r);
    req_infer(p, 20, &q);
    wait_first_token(p, 20, r);
    req_health(p, 21);
    bool got = false;
    while (!got) {
        Resp *m = recv_resp(p);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_HEALTH) {
            ck_assert_uint_eq(m->id, 21);
            ck_assert_int_eq(m->health->state, ORCD__V1__HEALTH_STATE__HEALTH_STATE_BUSY);
            ck_assert_uint_eq(m->health->running_id, 20);
            ck_assert_uint_eq(m->health->queue_depth, 0);
            ck_assert_ptr_nonnull(m->health->device);
            ck_assert_str_eq(m->health->device->backend, test_backend());
            got = true;
        } else {
            ck_assert_msg(!run_feed(r, 20, m), "the generation ended before Health was answered");
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    cancel_and_finish(p, 22, 20, r);
    ck_assert(r->done);
    run_free(r);
    free(r);
    proc_free(p);
}
END_TEST

START_TEST(test_queue_full_and_cancel_queued) {
    need_model(STORIES);
    /* one sequence at a time, one waiting: the third is refused */
    const char *extra[] = {"--max-queue", "1", "--max-batch", "1", NULL};
    struct tu_proc *p = spawn_ready(STORIES, extra);
    Orcd__V1__InferRequest a = long_request(), b = mk_prompt("Once", 8);
    struct run *ra = calloc(1, sizeof *ra), *rb = calloc(1, sizeof *rb), *rc = calloc(1, sizeof *rc);
    req_infer(p, 30, &a);
    wait_first_token(p, 30, ra); /* A runs: the queue is empty */
    req_infer(p, 31, &b);        /* B waits */
    req_infer(p, 32, &b);        /* C: no room */
    req_health(p, 33);
    bool c_err = false, health = false;
    while (!c_err || !health) {
        Resp *m = recv_resp(p);
        if (m->id == 32) {
            ck_assert(run_feed(rc, 32, m));
            ck_assert(rc->error);
            ck_assert_int_eq(rc->code, ORCD__V1__ERROR_CODE__RESOURCE_EXHAUSTED);
            ck_assert_ptr_nonnull(strstr(rc->message, "queue"));
            c_err = true;
        } else if (m->id == 33) {
            ck_assert_int_eq(m->health->queue_depth, 1);
            ck_assert_uint_eq(m->health->running_id, 30);
            health = true;
        } else {
            ck_assert_uint_eq(m->id, 30);
            ck_assert(!run_feed(ra, 30, m));
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    /* cancel the queued B: ack, then Done(cancelled) with no Started */
    req_cancel(p, 34, 31);
    bool acked = false;
    while (!acked || !rb->done) {
        Resp *m = recv_resp(p);
        if (m->id == 34) {
            ck_assert(m->cancel_ack->found);
            acked = true;
        } else if (m->id == 31) {
            run_feed(rb, 31, m);
            ck_assert(rb->done && !rb->started);
            ck_assert_int_eq(rb->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
            ck_assert_uint_eq(rb->completion_tokens, 0);
        } else {
            ck_assert(!run_feed(ra, 30, m));
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    ck_assert(cancel_and_finish(p, 35, 30, ra));
    ck_assert_int_eq(ra->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
    expect_serving(p, 36);
    run_free(ra);
    free(ra);
    free(rb);
    free(rc);
    proc_free(p);
}
END_TEST

// --- tests: malformed input -------------------------------------------------------

static void expect_plain_error(struct tu_proc *p, uint64_t id, const char *needle) {
    Resp *m = recv_resp(p);
    ck_assert_int_eq(m->body_case, ORCD__V1__RESPONSE__BODY_ERROR);
    ck_assert_uint_eq(m->id, id);
    ck_assert_int_eq(m->error->code, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT);
    ck_assert_msg(strstr(m->error->message, needle), "error '%s' does not say '%s'",
                  m->error->message, needle);
    orcd__v1__response__free_unpacked(m, NULL);
}

START_TEST(test_malformed_recoverable) {
    need_model(STORIES);
    const char *extra[] = {"--max-frame", "4096", NULL};
    struct tu_proc *p = spawn_ready(STORIES, extra);
    uint64_t ok = 1000;

    /* oversized frame: drained, answered, stream stays in sync */
    size_t big = 10000;
    uint8_t *fr = calloc(1, 5 + big);
    wk_frame_put_header(fr, (uint32_t)big);
    memset(fr + 5, 0x08, big);
    send_raw(p, fr, 5 + big);
    free(fr);
    expect_plain_error(p, 0, "exceeds");
    expect_serving(p, ok++);

    /* undecodable protobuf (id 7 readable, then a truncated varint) */
    const uint8_t junk[] = {0, 0, 0, 0, 5, 0x08, 0x07, 0x12, 0xff, 0xff};
    send_raw(p, junk, sizeof junk);
    expect_plain_error(p, 7, "protobuf");
    expect_serving(p, ok++);

    /* an empty frame: a Request with no body */
    const uint8_t empty[] = {0, 0, 0, 0, 0};
    send_raw(p, empty, sizeof empty);
    expect_plain_error(p, 0, "body");
    expect_serving(p, ok++);

    /* id set, body missing */
    const uint8_t nobody[] = {0, 0, 0, 0, 2, 0x08, 9};
    send_raw(p, nobody, sizeof nobody);
    expect_plain_error(p, 9, "body");
    expect_serving(p, ok++);

    /* an unknown body field (number 15, varint) */
    const uint8_t unknown[] = {0, 0, 0, 0, 4, 0x08, 10, 0x78, 1};
    send_raw(p, unknown, sizeof unknown);
    expect_plain_error(p, 10, "unknown field 15");
    expect_serving(p, ok++);

    /* Infer without input */
    Orcd__V1__InferRequest q = ORCD__V1__INFER_REQUEST__INIT;
    expect_error(p, 11, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "input");
    expect_serving(p, ok++);

    /* Infer with id 0 */
    q = mk_prompt("x", 1);
    expect_error(p, 0, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "id");
    expect_serving(p, ok++);

    /* invalid parameters, each named */
    q = mk_prompt("Once", 4);
    q.temperature = -1;
    expect_error(p, 12, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "temperature");
    expect_serving(p, ok++);
    q = mk_prompt("Once", 4);
    q.temperature = NAN;
    expect_error(p, 13, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "temperature");
    q = mk_prompt("Once", 4);
    q.top_p = 1.5f;
    expect_error(p, 14, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "top_p");
    q = mk_prompt("Once", 4);
    q.min_p = 1.0f;
    expect_error(p, 15, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "min_p");
    q = mk_prompt("Once", 4);
    q.repetition_penalty = -2.0f;
    expect_error(p, 16, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "repetition_penalty");
    q = mk_prompt("Once", 4);
    q.logprobs = 21;
    expect_error(p, 17, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "logprobs");
    q = mk_prompt("Once", 4);
    char *empty_stop[1] = {""};
    q.n_stop = 1;
    q.stop = empty_stop;
    expect_error(p, 18, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "stop[0]");
    q = mk_prompt("Once", 4);
    int32_t bad_stop_id = 100000;
    q.n_stop_token_ids = 1;
    q.stop_token_ids = &bad_stop_id;
    expect_error(p, 19, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "stop_token_ids");
    Orcd__V1__TokenIds ti = ORCD__V1__TOKEN_IDS__INIT;
    int32_t ids[3] = {1, 600, 2};
    ti.n_ids = 3;
    ti.ids = ids;
    q = mk_prompt("", 4);
    q.input_case = ORCD__V1__INFER_REQUEST__INPUT_TOKEN_IDS;
    q.token_ids = &ti;
    expect_error(p, 20, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "token_ids");
    q = mk_prompt("Once\xff\xfe", 4); /* a string field that is not UTF-8 */
    expect_error(p, 21, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "prompt");
    expect_serving(p, ok++);

    /* beyond the context: OUT_OF_RANGE before any work */
    q = mk_prompt("Once upon a time", 100000);
    expect_error(p, 22, &q, ORCD__V1__ERROR_CODE__OUT_OF_RANGE, "max_tokens");
    static int32_t many[2100]; /* > the 2048 context, < --max-frame 4096 bytes */
    for (int i = 0; i < 2100; i++) many[i] = 100;
    ti.n_ids = 2100;
    ti.ids = many;
    q = mk_prompt("", 1);
    q.input_case = ORCD__V1__INFER_REQUEST__INPUT_TOKEN_IDS;
    q.token_ids = &ti;
    expect_error(p, 23, &q, ORCD__V1__ERROR_CODE__OUT_OF_RANGE, "prompt");
    expect_serving(p, ok++);

    /* a duplicate id while that request is queued or running */
    Orcd__V1__InferRequest lq = long_request();
    struct run *ra = calloc(1, sizeof *ra), *rd = calloc(1, sizeof *rd);
    req_infer(p, 40, &lq);
    wait_first_token(p, 40, ra);
    q = mk_prompt("Once", 2);
    req_infer(p, 40, &q);
    /* the refusal carries id 40 too: it is an Error, not a Token */
    for (bool seen = false; !seen;) {
        Resp *m = recv_resp(p);
        ck_assert_uint_eq(m->id, 40);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_ERROR) {
            ck_assert_ptr_nonnull(strstr(m->error->message, "already"));
            ck_assert_int_eq(m->error->code, ORCD__V1__ERROR_CODE__ALREADY_EXISTS);
            seen = true;
        } else {
            ck_assert(!run_feed(ra, 40, m));
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    /* malformed frames during a generation: errors, and the stream goes on */
    send_raw(p, junk, sizeof junk);
    send_raw(p, empty, sizeof empty);
    int errors = 0;
    while (errors < 2) {
        Resp *m = recv_resp(p);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_ERROR && m->id != 40) errors++;
        else ck_assert(!run_feed(ra, 40, m));
        orcd__v1__response__free_unpacked(m, NULL);
    }
    ck_assert(cancel_and_finish(p, 41, 40, ra));
    ck_assert(ra->done);
    ck_assert_uint_eq(ra->completion_tokens, (uint32_t)ra->n); /* nothing lost */
    run_free(ra);
    free(ra);
    free(rd);
    expect_serving(p, ok++);

    /* and a clean exit */
    close_stdin(p);
    ck_assert_int_eq(wait_exit(p, 10000), 0);
    proc_free(p);
}
END_TEST

/* A fatal framing error while a request runs: Error id 0 naming the problem,
 * the running request ends (Done), exit status 3. */
static void fatal_case(const uint8_t *bytes, size_t len, bool then_eof, const char *needle) {
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__InferRequest q = long_request();
    struct run *r = calloc(1, sizeof *r);
    req_infer(p, 50, &q);
    wait_first_token(p, 50, r);
    send_raw(p, bytes, len);
    if (then_eof) close_stdin(p);
    bool err = false;
    for (;;) {
        const char *why = "";
        Resp *m = recv_resp_opt(p, TIMEOUT_MS, &why);
        if (!m) {
            ck_assert_str_eq(why, "eof");
            break;
        }
        if (m->id == 0) {
            ck_assert_int_eq(m->body_case, ORCD__V1__RESPONSE__BODY_ERROR);
            ck_assert_msg(strstr(m->error->message, needle), "'%s' lacks '%s'", m->error->message, needle);
            err = true;
        } else {
            run_feed(r, 50, m);
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    ck_assert(err);
    ck_assert(r->done);
    ck_assert_int_eq(wait_exit(p, 10000), 3);
    run_free(r);
    free(r);
    proc_free(p);
}

START_TEST(test_fatal_bad_flag) {
    need_model(STORIES);
    const uint8_t bad[] = {1, 0, 0, 0, 2, 0x08, 1};
    fatal_case(bad, sizeof bad, false, "flag");
}
END_TEST

START_TEST(test_fatal_truncated_at_eof) {
    need_model(STORIES);
    const uint8_t cut[] = {0, 0, 0, 0, 40, 0x08, 1, 0x22};
    fatal_case(cut, sizeof cut, true, "ended inside a frame");
}
END_TEST

// --- tests: shutdown ----------------------------------------------------------------

enum how { BY_REQUEST, BY_EOF, BY_SIGTERM, BY_SIGINT };

static void shutdown_case(enum how how) {
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__InferRequest q = long_request(), b = mk_prompt("Once", 8);
    struct run *r = calloc(1, sizeof *r), *rb = calloc(1, sizeof *rb);
    req_infer(p, 60, &q);
    wait_first_token(p, 60, r);
    req_infer(p, 61, &b); /* queued behind it */
    switch (how) {
    case BY_REQUEST: req_shutdown(p, 62); break;
    case BY_EOF: close_stdin(p); break;
    case BY_SIGTERM: kill(p->pid, SIGTERM); break;
    case BY_SIGINT: kill(p->pid, SIGINT); break;
    }
    /* everything flushed, then EOF on stdout */
    for (;;) {
        const char *why = "";
        Resp *m = recv_resp_opt(p, TIMEOUT_MS, &why);
        if (!m) {
            ck_assert_str_eq(why, "eof");
            break;
        }
        if (m->id == 61) run_feed(rb, 61, m);
        else run_feed(r, 60, m);
        orcd__v1__response__free_unpacked(m, NULL);
    }
    ck_assert(r->done);
    ck_assert_int_eq(r->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
    ck_assert_uint_eq(r->completion_tokens, (uint32_t)r->n);
    /* the queued request is answered too: Done (cancelled, or finished if it
     * was dequeued first), or UNAVAILABLE if the shutdown was seen before it
     * was read (a signal races with the pipe) */
    ck_assert(rb->done || (rb->error && rb->code == ORCD__V1__ERROR_CODE__UNAVAILABLE));
    ck_assert_int_eq(wait_exit(p, 10000), 0);
    run_free(r);
    run_free(rb);
    free(r);
    free(rb);
    proc_free(p);
}

START_TEST(test_shutdown_request) { need_model(STORIES); shutdown_case(BY_REQUEST); }
END_TEST
START_TEST(test_shutdown_eof) { need_model(STORIES); shutdown_case(BY_EOF); }
END_TEST
START_TEST(test_shutdown_sigterm) { need_model(STORIES); shutdown_case(BY_SIGTERM); }
END_TEST
START_TEST(test_shutdown_sigint) { need_model(STORIES); shutdown_case(BY_SIGINT); }
END_TEST

START_TEST(test_shutdown_idle_and_after) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    req_shutdown(p, 1);
    const char *why = "";
    ck_assert_ptr_null(recv_resp_opt(p, TIMEOUT_MS, &why));
    ck_assert_str_eq(why, "eof");
    ck_assert_int_eq(wait_exit(p, 10000), 0);
    proc_free(p);
}
END_TEST

START_TEST(test_stdout_closed_no_sigpipe_death) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    close(p->from); /* nobody reads the worker's output any more */
    p->from = open("/dev/null", O_RDONLY);
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", 50);
    req_infer(p, 1, &q);
    int st = wait_exit(p, 10000);
    ck_assert_msg(st == 5, "exit status %d (negative: killed by signal %d)", st, -st);
    proc_free(p);
}
END_TEST

// --- the orcd client ----------------------------------------------------------------

START_TEST(test_orcd_client) {
    static struct ref ref_storage; /* static: an early return (skip) leaks nothing */
    struct ref *ref = &ref_storage;
    memset(ref, 0, sizeof *ref);
    const char *build = getenv("ORCD_BUILD");
    char orcd[1024];
    snprintf(orcd, sizeof orcd, "%s/tools/orcd", build ? build : ".");
    need_model(STORIES);
    ck_assert(load_ref("stories260K/once.txt", ref));
    ck_assert_msg(file_exists(orcd), "%s not built", orcd);
    char n_gen[16];
    snprintf(n_gen, sizeof n_gen, "%d", ref->n_gen);
    int out[2], err[2];
    ck_assert_int_eq(pipe(out), 0);
    ck_assert_int_eq(pipe(err), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        execl(orcd, orcd, "--model", model_path(STORIES), "--device", test_device(), "--prompt",
              "Once upon a time", "--max-tokens", n_gen, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    static char so[16384], se[16384];
    size_t no = 0, ne = 0;
    ssize_t k;
    while ((k = read(out[0], so + no, sizeof so - 1 - no)) > 0) no += (size_t)k;
    while ((k = read(err[0], se + ne, sizeof se - 1 - ne)) > 0) ne += (size_t)k;
    so[no] = se[ne] = '\0';
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "orcd failed: %s", se);
    ck_assert_str_eq(so, ref->text); /* the completion only, not the prompt */
    char want[64];
    snprintf(want, sizeof want, "%d tokens", ref->n_gen);
    ck_assert_msg(strstr(se, want) && strstr(se, "tokens/s") && strstr(se, "first token"),
                  "summary line missing: %s", se);
    close(out[0]);
    close(err[0]);
}
END_TEST

START_TEST(test_orcd_ctrl_c_cancels) {
    need_model(STORIES);
    const char *build = getenv("ORCD_BUILD");
    char orcd[1024];
    snprintf(orcd, sizeof orcd, "%s/tools/orcd", build ? build : ".");
    ck_assert_msg(file_exists(orcd), "%s not built", orcd);
    int out[2], err[2];
    ck_assert_int_eq(pipe(out), 0);
    ck_assert_int_eq(pipe(err), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        execl(orcd, orcd, "--model", model_path(STORIES), "--device", test_device(), "--prompt",
              "Once upon a time", "--ignore-eos", (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    char buf[4096];
    ssize_t k = read(out[0], buf, sizeof buf); /* the stream has begun */
    ck_assert_int_gt(k, 0);
    kill(pid, SIGINT);
    while (read(out[0], buf, sizeof buf) > 0) {}
    static char se[16384];
    size_t ne = 0;
    while ((k = read(err[0], se + ne, sizeof se - 1 - ne)) > 0) ne += (size_t)k;
    se[ne] = '\0';
    int status;
    waitpid(pid, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status %d, stderr: %s", status, se);
    ck_assert_msg(strstr(se, "(cancelled)"), "no cancelled summary: %s", se);
    close(out[0]);
    close(err[0]);
}
END_TEST

// --- in-process: backend selection, parameter mapping, UTF-8 ---------------------

START_TEST(test_backend_create_devices) {
    need_model(STORIES);
    struct wk_model *m = calloc(1, sizeof *m);
    char err[256];
    ck_assert_int_eq(wk_model_load(model_path(STORIES), m, err, sizeof err), WK_STATUS_OK);
    struct wk_backend *b = NULL;
    const char *bad[] = {"tpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(wk_backend_open(m, bad[i], &(struct wk_backend_config){.n_ctx = 0}, &b, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
        ck_assert_ptr_null(b);
        ck_assert_msg(strstr(err, "device"), "'%s': %s", bad[i], err);
    }
    /* n_ctx <= 0: the training context (2048 here), capped at 4096 */
    ck_assert_int_eq(wk_backend_open(m, "cpu", &(struct wk_backend_config){.n_ctx = 0}, &b, err, sizeof err), WK_STATUS_OK);
    ck_assert_int_eq(b->n_ctx, m->hp.n_ctx_train < 4096 ? m->hp.n_ctx_train : 4096);
    ck_assert_str_eq(b->ops->name, "cpu");
    wk_backend_free(b);
    ck_assert_int_eq(wk_backend_open(m, "cpu", &(struct wk_backend_config){.n_ctx = 100}, &b, err, sizeof err), WK_STATUS_OK);
    ck_assert_int_eq(b->n_ctx, 100);
    wk_backend_free(b);
    b = NULL;
    /* cuda in a build or on a machine without it: an error, never a crash */
    wk_status st = wk_backend_open(m, "cuda:0", &(struct wk_backend_config){.n_ctx = 0}, &b, err, sizeof err);
    if (st == WK_STATUS_OK) wk_backend_free(b);
    else ck_assert_ptr_null(b);
    wk_model_free(m);
    free(m);
}
END_TEST


// --- tests: issue 8 ---------------------------------------------------------------

/* Hand-built protobuf wire bytes: protobuf-c cannot pack a string holding
 * U+0000 (its strings are NUL-terminated), a client in another language can. */
struct wire {
    uint8_t b[2048];
    size_t n;
};
static void w_varint(struct wire *w, uint64_t v) {
    do {
        ck_assert_uint_lt(w->n, sizeof w->b);
        w->b[w->n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
}
static void w_u64(struct wire *w, unsigned field, uint64_t v) {
    w_varint(w, (uint64_t)field << 3);
    w_varint(w, v);
}
static void w_bytes(struct wire *w, unsigned field, const void *p, size_t n) {
    w_varint(w, (uint64_t)field << 3 | 2);
    w_varint(w, n);
    ck_assert_uint_le(w->n + n, sizeof w->b);
    memcpy(w->b + w->n, p, n);
    w->n += n;
}
static void send_wire_infer(struct tu_proc *p, uint64_t id, const struct wire *infer) {
    struct wire req = {.n = 0};
    w_u64(&req, 1, id);
    w_bytes(&req, 2, infer->b, infer->n);
    uint8_t hdr[WK_FRAME_HEADER];
    wk_frame_put_header(hdr, (uint32_t)req.n);
    send_raw(p, hdr, sizeof hdr);
    send_raw(p, req.b, req.n);
}

/* One Error (no Started) for id naming field and the NUL's byte offset. */
static void expect_nul_refusal(struct tu_proc *p, uint64_t id, const char *field, int at) {
    struct run *r = calloc(1, sizeof *r);
    collect(p, id, r);
    ck_assert_msg(r->error, "request %" PRIu64 ": the NUL was not refused (the string was cut)", id);
    ck_assert(!r->started);
    ck_assert_int_eq(r->code, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT);
    char want[64];
    snprintf(want, sizeof want, "at byte %d", at);
    ck_assert_msg(!strncmp(r->message, field, strlen(field)) && r->message[strlen(field)] == ':' &&
                      strstr(r->message, "NUL") && strstr(r->message, want),
                  "message '%s' does not name %s and %s", r->message, field, want);
    run_free(r);
    free(r);
}

START_TEST(test_issue8_nul_in_request_strings) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    /* prompt */
    struct wire q = {.n = 0};
    w_bytes(&q, 1, "Once upon a time\0 and more", 26);
    w_u64(&q, 4, 4);
    send_wire_infer(p, 1, &q);
    expect_nul_refusal(p, 1, "prompt", 16);
    /* the second stop string */
    q.n = 0;
    w_bytes(&q, 1, "Once", 4);
    w_u64(&q, 4, 4);
    w_bytes(&q, 12, "ok", 2);
    w_bytes(&q, 12, "x\0y", 3);
    send_wire_infer(p, 2, &q);
    expect_nul_refusal(p, 2, "stop[1]", 1);
    /* a chat role, then a chat content (messages[1]) */
    struct wire m0 = {.n = 0}, m1 = {.n = 0}, cl = {.n = 0};
    w_bytes(&m0, 1, "user", 4);
    w_bytes(&m0, 2, "hi", 2);
    w_bytes(&m1, 1, "user\0", 5);
    w_bytes(&m1, 2, "x", 1);
    w_bytes(&cl, 1, m0.b, m0.n);
    w_bytes(&cl, 1, m1.b, m1.n);
    q.n = 0;
    w_bytes(&q, 2, cl.b, cl.n);
    send_wire_infer(p, 3, &q);
    expect_nul_refusal(p, 3, "chat.messages[1].role", 4);
    m1.n = 0;
    w_bytes(&m1, 1, "user", 4);
    w_bytes(&m1, 2, "abc\0", 4);
    cl.n = 0;
    w_bytes(&cl, 1, m0.b, m0.n);
    w_bytes(&cl, 1, m1.b, m1.n);
    q.n = 0;
    w_bytes(&q, 2, cl.b, cl.n);
    send_wire_infer(p, 4, &q);
    expect_nul_refusal(p, 4, "chat.messages[1].content", 3);
    /* the same strings without the NUL are fine (the check is not a false alarm) */
    q.n = 0;
    w_bytes(&q, 1, "Once upon a time", 16);
    w_u64(&q, 4, 4);
    w_bytes(&q, 12, "xy", 2);
    send_wire_infer(p, 5, &q);
    struct run *r = calloc(1, sizeof *r);
    collect(p, 5, r);
    ck_assert_msg(r->done, "%s", r->message);
    run_free(r);
    free(r);
    proc_free(p);
}
END_TEST

START_TEST(test_issue8_duplicate_id_already_exists) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__InferRequest lq = mk_prompt("Once upon a time", 300);
    lq.ignore_eos = 1;
    Orcd__V1__InferRequest dq = mk_prompt("Once", 2);
    req_infer(p, 40, &lq);
    req_infer(p, 40, &dq); /* right behind: the first is queued or running */
    struct run *ra = calloc(1, sizeof *ra);
    int errors = 0;
    while (!ra->done) {
        Resp *m = recv_resp(p);
        ck_assert_uint_eq(m->id, 40);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_ERROR) {
            ck_assert_int_eq(m->error->code, ORCD__V1__ERROR_CODE__ALREADY_EXISTS);
            expect_client_message(m->error->message);
            errors++;
        } else {
            run_feed(ra, 40, m);
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    ck_assert_int_eq(errors, 1);
    /* the original went on untouched */
    ck_assert(ra->started);
    ck_assert_int_eq(ra->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH);
    ck_assert_int_eq(ra->n, 300);
    ck_assert_uint_eq(ra->completion_tokens, 300);
    run_free(ra);
    free(ra);
    req_health(p, 41);
    Resp *h = recv_resp(p);
    ck_assert_uint_eq(h->health->requests_served, 1);
    ck_assert_uint_eq(h->health->requests_refused, 1);
    orcd__v1__response__free_unpacked(h, NULL);
    proc_free(p);
}
END_TEST

START_TEST(test_issue8_output_bound_pauses_generation) {
    /* A client that stops reading stdout: with a 4 KiB output bound the
     * worker pauses generation (Health says so) instead of queueing the whole
     * completion in memory; when the client reads again, everything arrives,
     * in order, nothing lost. */
    need_model(STORIES);
    const char *extra[] = {"--max-output", "4096", NULL};
    struct tu_proc *p = spawn_ready(STORIES, extra);
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", 0); /* to the context end */
    q.ignore_eos = 1;
    q.logprobs = 20; /* ~350-byte Token frames: well past the 64 KiB pipe */
    /* the smallest pipe (one page), so a few tokens fill it */
    (void)fcntl(p->from, F_SETPIPE_SZ, 4096);
    req_infer(p, 50, &q);
    struct run *r = calloc(1, sizeof *r);
    bool paused = false;
    for (int k = 0; k < 100 && !paused && !r->done; k++) {
        usleep(200 * 1000); /* not reading: the pipe and the queue fill */
        req_health(p, 1000 + (uint64_t)k);
        for (;;) {
            Resp *m = recv_resp(p);
            if (m->id == 1000 + (uint64_t)k) {
                ck_assert_int_eq(m->body_case, ORCD__V1__RESPONSE__BODY_HEALTH);
                paused = m->health->output_paused;
                orcd__v1__response__free_unpacked(m, NULL);
                break;
            }
            run_feed(r, 50, m);
            orcd__v1__response__free_unpacked(m, NULL);
        }
    }
    ck_assert_msg(paused, "Health never reported output_paused (done: %d, %d tokens)", r->done, r->n);
    ck_assert(!r->done);
    collect(p, 50, r);
    ck_assert_msg(r->done, "%s", r->message);
    ck_assert_int_eq(r->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH);
    ck_assert_uint_eq(r->completion_tokens, (uint32_t)r->n);
    ck_assert_uint_eq(r->prompt_tokens + (uint32_t)r->n, 2048); /* the whole context */
    req_health(p, 99);
    Resp *h = recv_resp(p);
    ck_assert(!h->health->output_paused);
    orcd__v1__response__free_unpacked(h, NULL);
    run_free(r);
    free(r);
    proc_free(p);
}
END_TEST

START_TEST(test_issue8_token_piece_agrees_with_top_logprobs) {
    need_model(STORIES);
    struct tu_proc *p = spawn_ready(STORIES, NULL);
    Orcd__V1__InferRequest q = mk_prompt("Once upon a time", 40);
    q.logprobs = 5;
    req_infer(p, 7, &q);
    static char pieces[16384], text[16384];
    pieces[0] = text[0] = '\0';
    int n = 0;
    for (bool end = false; !end;) {
        Resp *m = recv_resp(p);
        ck_assert_uint_eq(m->id, 7);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_TOKEN) {
            const Orcd__V1__Token *t = m->token;
            ck_assert_ptr_nonnull(t->piece);
            ck_assert(utf8_ok(t->piece));
            /* greedy: the chosen token is the first alternative, and its
             * TopLogprob.text is the same piece */
            ck_assert_uint_eq(t->n_top_logprobs, 5);
            ck_assert_int_eq(t->top_logprobs[0]->id, t->id);
            ck_assert_str_eq(t->top_logprobs[0]->text, t->piece);
            strncat(pieces, t->piece, sizeof pieces - strlen(pieces) - 1);
            strncat(text, t->text, sizeof text - strlen(text) - 1);
            n++;
        } else if (m->body_case == ORCD__V1__RESPONSE__BODY_DONE) {
            strncat(text, m->done->text, sizeof text - strlen(text) - 1);
            end = true;
        } else {
            ck_assert_int_eq(m->body_case, ORCD__V1__RESPONSE__BODY_STARTED);
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    ck_assert_int_eq(n, 40);
    /* no stop strings, valid UTF-8 pieces: the pieces spell the stream */
    ck_assert_str_eq(pieces, text);
    proc_free(p);

    /* in process: a byte token and a control token */
    struct wk_model *model = calloc(1, sizeof *model);
    char err[512];
    ck_assert_int_eq(wk_model_load(model_path(STORIES), model, err, sizeof err), WK_STATUS_OK);
    const struct wk_vocab *v = &model->vocab;
    int32_t e2 = wk_token_id(v, "<0xE2>");
    ck_assert_int_ge(e2, 0);
    size_t len = 0;
    char *pc = wk_token_piece_utf8(v, e2, &len);
    ck_assert_str_eq(pc, "\xEF\xBF\xBD"); /* a lone lead byte: U+FFFD */
    ck_assert_uint_eq(len, 3);
    free(pc);
    ck_assert_int_ge(v->eos, 0);
    pc = wk_token_piece_utf8(v, v->eos, NULL);
    ck_assert_str_eq(pc, wk_token_text(v, v->eos)); /* "</s>", literally */
    free(pc);
    wk_model_free(model);
    free(model);
}
END_TEST

START_TEST(test_issue8_model_info_tensor_types) {
    need_model(STORIES);
    struct tu_proc *p = spawn_raw(STORIES, NULL);
    Resp *rd = expect_ready(p);
    const Orcd__V1__ModelInfo *mi = rd->ready->model;
    ck_assert_ptr_nonnull(mi->quantization);
    ck_assert_str_ne(mi->quantization, "");
    struct gguf_file g;
    char err[256];
    ck_assert_int_eq(gguf_file_open(model_path(STORIES), &g, err, sizeof err), WK_STATUS_OK);
    ck_assert_uint_gt(mi->n_tensor_types, 0);
    uint64_t total = 0;
    for (size_t i = 0; i < mi->n_tensor_types; i++) {
        const char *key = mi->tensor_types[i]->key;
        uint32_t want = 0;
        for (uint64_t t = 0; t < g.n_tensors; t++)
            if (!strcmp(wk_type_info(g.tensors[t].type)->name, key)) want++;
        ck_assert_msg(want > 0 && mi->tensor_types[i]->value == want, "%s: %u tensors, file has %u",
                      key, mi->tensor_types[i]->value, want);
        total += mi->tensor_types[i]->value;
    }
    ck_assert_uint_eq(total, g.n_tensors);
    gguf_file_close(&g);
    orcd__v1__response__free_unpacked(rd, NULL);
    proc_free(p);
}
END_TEST

START_TEST(test_issue8_requests_served_and_refused) {
    need_model(STORIES);
    /* one sequence at a time, so a second request waits in the queue */
    const char *one[] = {"--max-batch", "1", NULL};
    struct tu_proc *p = spawn_ready(STORIES, one);
    expect_serving(p, 1);                           /* served 1 */
    Orcd__V1__InferRequest q = mk_prompt("Once", 2);
    q.temperature = -1;                            /* refused by validation */
    expect_error(p, 2, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "temperature");
    q = mk_prompt("Once", 2);
    expect_error(p, 0, &q, ORCD__V1__ERROR_CODE__INVALID_ARGUMENT, "id"); /* refused by the reader */
    /* a queued request cancelled before it started: neither */
    Orcd__V1__InferRequest lq = long_request();
    req_infer(p, 10, &lq);
    req_infer(p, 11, &q);
    struct run *ra = calloc(1, sizeof *ra), *rb = calloc(1, sizeof *rb);
    wait_first_token(p, 10, ra);
    req_cancel(p, 100, 11);
    for (bool acked = false; !acked || !rb->done;) {
        Resp *m = recv_resp(p);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_CANCEL_ACK) {
            ck_assert(m->cancel_ack->found);
            acked = true;
        } else if (m->id == 11) {
            run_feed(rb, 11, m);
        } else {
            run_feed(ra, 10, m);
        }
        orcd__v1__response__free_unpacked(m, NULL);
    }
    ck_assert(!rb->started);
    ck_assert_int_eq(rb->reason, ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
    /* the running one, cancelled after its Started: served */
    ck_assert(cancel_and_finish(p, 101, 10, ra));
    req_health(p, 102);
    Resp *h = recv_resp(p);
    ck_assert_uint_eq(h->health->requests_served, 2);
    ck_assert_uint_eq(h->health->requests_refused, 2);
    orcd__v1__response__free_unpacked(h, NULL);
    run_free(ra);
    run_free(rb);
    free(ra);
    free(rb);
    proc_free(p);
}
END_TEST

START_TEST(test_issue8_client_messages) {
    char out[128];
    wk_client_message("wk_chat_tokenize_as: unsupported chat template", out, sizeof out);
    ck_assert_str_eq(out, "unsupported chat template");
    wk_client_message("wk_tokenize: gguf_file_parse: bad", out, sizeof out);
    ck_assert_str_eq(out, "bad");
    /* request fields lead messages too: kept */
    wk_client_message("top_p: 2 is out of range [0, 1]", out, sizeof out);
    ck_assert_str_eq(out, "top_p: 2 is out of range [0, 1]");
    wk_client_message("repetition_penalty: -1", out, sizeof out);
    ck_assert_str_eq(out, "repetition_penalty: -1");
    wk_client_message("stop[0]: empty string", out, sizeof out);
    ck_assert_str_eq(out, "stop[0]: empty string");
    /* cut to fit, never inside a character */
    char small[6];
    wk_client_message("ab\xC3\xA9\xC3\xA9", small, sizeof small);
    ck_assert_str_eq(small, "ab\xC3\xA9");
    /* backend failures say what kind of failure, without the function */
    wk_client_error(WK_STATUS_CUDA, "forward_batch: cudaMemcpyAsync: illegal address", out, sizeof out);
    ck_assert_ptr_null(strstr(out, "forward_batch"));
    ck_assert_ptr_nonnull(strstr(out, "GPU"));
    expect_client_message(out);
}
END_TEST

START_TEST(test_infer_params_mapping) {
    struct wk_sampling sp;
    char err[256];
    Orcd__V1__InferRequest q = mk_prompt("x", 1);
    ck_assert_int_eq(wk_infer_params(&q, 512, &sp, err, sizeof err), WK_STATUS_OK);
    ck_assert(sp.temperature == 0.0f);
    ck_assert(sp.top_p == 1.0f);              /* 0 = off */
    ck_assert(sp.repetition_penalty == 1.0f); /* 0 = off */
    ck_assert_int_eq(sp.repeat_last_n, 64);   /* 0 = 64 */
    ck_assert_int_eq(sp.top_k, 0);
    q.top_k = 100000;
    q.top_p = 0.9f;
    q.min_p = 0.05f;
    q.repetition_penalty = 1.1f;
    q.repeat_last_n = 32;
    q.seed = 99;
    q.logprobs = 3;
    q.temperature = 0.7f;
    ck_assert_int_eq(wk_infer_params(&q, 512, &sp, err, sizeof err), WK_STATUS_OK);
    ck_assert_int_eq(sp.top_k, 512); /* clamped to the vocabulary */
    ck_assert(sp.top_p == 0.9f && sp.min_p == 0.05f && sp.repetition_penalty == 1.1f);
    ck_assert_int_eq(sp.repeat_last_n, 32);
    ck_assert_uint_eq(sp.seed, 99);
    ck_assert_int_eq(sp.n_logprobs, 3);
    q.temperature = 101;
    ck_assert_int_eq(wk_infer_params(&q, 512, &sp, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err, "temperature"));
    q.temperature = INFINITY;
    ck_assert_int_eq(wk_infer_params(&q, 512, &sp, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_utf8_validator) {
    /* the worker's validator against this file's independent one */
    const char *cases[] = {"", "abc", "\xc3\xa9", "\xe2\x80\x9c", "\xf0\x9f\x98\x80",
                           "\xc3", "\xe2\x80", "\x80", "\xc0\xaf", "\xe0\x80\xaf",
                           "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff", "a\xc3\xa9" "b\xe2"};
    bool want[] = {1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        ck_assert_msg(wk_utf8_valid(cases[i], strlen(cases[i])) == want[i], "case %zu", i);
        ck_assert_msg(utf8_ok(cases[i]) == want[i], "case %zu (test's own)", i);
    }
}
END_TEST

/* ORCD_TEST_ONLY=substring runs only the matching tests. */
#define ADD(tc, t)                                                        \
    do {                                                                  \
        const char *only_ = getenv("ORCD_TEST_ONLY");                     \
        if (!only_ || strstr(#t, only_)) tcase_add_test(tc, t);           \
    } while (0)

/* Groups, one meson test each (see tests/meson.build):
 *   base     needs nothing but the worker binary
 *   stories  ../shared/models/stories260K.gguf and its reference log
 *   qwen     ../shared/models/tiny-qwen2-f32.gguf and its reference logs
 * A group whose files are absent exits 77: meson reports it as SKIP, with the
 * reason on stdout. */
static bool group_has(const char *what, const char *path) {
    if (file_exists(path)) return true;
    printf("SKIP %s: %s not found\n", what, path);
    return false;
}

int main(int argc, char **argv) {
    const char *group = argc > 1 ? argv[1] : "base";
    char path[1024];
    bool ok = true;
    if (!strcmp(group, "stories")) {
        ok = group_has("stories260K tests", model_path(STORIES)) &&
             group_has("stories260K tests",
                       tu_shared_path(path, sizeof path, "reference/stories260K/once.txt"));
    } else if (!strcmp(group, "qwen")) {
        ok = group_has("tiny-qwen2 tests", model_path(QWEN)) &&
             group_has("tiny-qwen2 tests",
                       tu_shared_path(path, sizeof path, "reference/tiny-qwen2/f32.once.txt")) &&
             group_has("tiny-qwen2 tests",
                       tu_shared_path(path, sizeof path, "reference/tiny-qwen2/f32.chat.txt"));
    } else if (strcmp(group, "base")) {
        fprintf(stderr, "usage: test-worker [base|stories|qwen]\n");
        return 2;
    }
    if (!ok) return 77;
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create(group);
    tcase_set_timeout(tc, 120);
    if (!strcmp(group, "base")) {
        ADD(tc, test_infer_params_mapping);
        ADD(tc, test_issue8_client_messages);
        ADD(tc, test_utf8_validator);
        ADD(tc, test_health_while_loading_fifo);
        ADD(tc, test_load_failure);
        ADD(tc, test_load_failure_after_eof_exits_4);
        ADD(tc, test_bad_command_line);
    } else if (!strcmp(group, "qwen")) {
        ADD(tc, test_greedy_reference_qwen_prompt);
        ADD(tc, test_chat_chatml_reference);
        ADD(tc, test_utf8_split_across_tokens);
    } else {
        ADD(tc, test_backend_create_devices);
        ADD(tc, test_ready_and_health);
        ADD(tc, test_health_before_ready_is_loading);
        ADD(tc, test_greedy_reference_stories);
        ADD(tc, test_chat_unknown_template);
        ADD(tc, test_seeded_sampling_deterministic);
        ADD(tc, test_logprobs);
        ADD(tc, test_token_ids_input);
        ADD(tc, test_stop_string_split_across_tokens);
        ADD(tc, test_cancel_running);
        ADD(tc, test_health_during_generation);
        ADD(tc, test_queue_full_and_cancel_queued);
        ADD(tc, test_malformed_recoverable);
        ADD(tc, test_fatal_bad_flag);
        ADD(tc, test_fatal_truncated_at_eof);
        ADD(tc, test_shutdown_request);
        ADD(tc, test_shutdown_eof);
        ADD(tc, test_shutdown_sigterm);
        ADD(tc, test_shutdown_sigint);
        ADD(tc, test_shutdown_idle_and_after);
        ADD(tc, test_stdout_closed_no_sigpipe_death);
        ADD(tc, test_orcd_client);
        ADD(tc, test_orcd_ctrl_c_cancels);
        ADD(tc, test_issue8_nul_in_request_strings);
        ADD(tc, test_issue8_duplicate_id_already_exists);
        ADD(tc, test_issue8_output_bound_pauses_generation);
        ADD(tc, test_issue8_token_piece_agrees_with_top_logprobs);
        ADD(tc, test_issue8_model_info_tensor_types);
        ADD(tc, test_issue8_requests_served_and_refused);
    }
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
