/* test-soak.c — a seeded soak through the worker's pipes (issue 9):
 * N requests (default 1,000) with random arrivals, prompt lengths, output
 * lengths, sampling, cancels and shared prompt prefixes, up to 64 in flight,
 * in a KV pool too small for all of them at once (preemption and waiting).
 * Checks:
 *   - every id gets exactly one terminal message (Done or Error), nothing
 *     after it, and Started before any Token;
 *   - every stream equals the same request run alone (a second worker with
 *     --max-batch 1); a cancelled stream is a prefix of it;
 *   - some prompt tokens came from the prefix cache;
 *   - at the end Health shows every page back in the pool, nothing running
 *     or queued.
 * Device: $ORCD_TEST_DEVICE (default cpu). Requests: $ORCD_SOAK_N.
 * Exit 77 (skip) without ../shared/models/stories260K.gguf. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/testproc.h"
#include "tests/testutil.h"
#include "worker.pb-c.h"
#include "worker/frame.h"

#define MAX_INFLIGHT 64
#define MAX_GEN 24
#define TIMEOUT_MS 120000

typedef Orcd__V1__Response Resp;

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "test-soak: FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

struct req {
    uint64_t id;
    int32_t prompt[120];
    int n_prompt;
    uint32_t max_tokens;
    float temperature;
    uint64_t seed;
    int cancel_after;      /* send Cancel after this many tokens; -1 never */
    bool cancel_sent;
    /* what came back */
    bool started, ended, cancelled, error;
    uint32_t cached;
    int32_t toks[MAX_GEN];
    int n_toks;
};

static unsigned g_rng = 20261201u;
static unsigned rnd(unsigned n) {
    g_rng = g_rng * 1103515245u + 12345u;
    return (g_rng >> 8) % n;
}

static struct tu_proc *spawn(const char *model, const char *max_batch, const char *kv_tokens) {
    const char *worker = getenv("ORCD_WORKER");
    const char *dev = getenv("ORCD_TEST_DEVICE");
    if (!worker) fail("ORCD_WORKER is not set");
    const char *argv[] = {worker, "--model", model, "--device", dev && *dev ? dev : "cpu", "--ctx", "256",
                          "--max-batch", max_batch, "--max-queue", "64", "--kv-tokens", kv_tokens,
                          "--step-tokens", "256", "--log-level", "warn", NULL};
    struct tu_proc *p = tu_proc_spawn(argv);
    if (!p) fail("cannot start %s", worker);
    const char *why = "";
    Resp *r = tu_proc_recv(p, TIMEOUT_MS, &why);
    if (!r || r->body_case != ORCD__V1__RESPONSE__BODY_READY) fail("no Ready from the worker (%s)", why);
    orcd__v1__response__free_unpacked(r, NULL);
    return p;
}

static void send_infer(struct tu_proc *p, const struct req *q) {
    Orcd__V1__TokenIds ids = ORCD__V1__TOKEN_IDS__INIT;
    ids.ids = (int32_t *)q->prompt;
    ids.n_ids = (size_t)q->n_prompt;
    Orcd__V1__InferRequest in = ORCD__V1__INFER_REQUEST__INIT;
    in.input_case = ORCD__V1__INFER_REQUEST__INPUT_TOKEN_IDS;
    in.token_ids = &ids;
    in.max_tokens = q->max_tokens;
    in.temperature = q->temperature;
    in.top_k = 40;
    in.seed = q->seed;
    in.ignore_eos = true;
    Orcd__V1__Request r = ORCD__V1__REQUEST__INIT;
    r.id = q->id;
    r.body_case = ORCD__V1__REQUEST__BODY_INFER;
    r.infer = &in;
    if (!tu_proc_send(p, &r)) fail("cannot send request %llu", (unsigned long long)q->id);
}

static void send_simple(struct tu_proc *p, uint64_t id, int kind, uint64_t target) {
    Orcd__V1__Request r = ORCD__V1__REQUEST__INIT;
    Orcd__V1__CancelRequest c = ORCD__V1__CANCEL_REQUEST__INIT;
    Orcd__V1__HealthRequest h = ORCD__V1__HEALTH_REQUEST__INIT;
    r.id = id;
    if (kind == 0) {
        c.target_id = target;
        r.body_case = ORCD__V1__REQUEST__BODY_CANCEL;
        r.cancel = &c;
    } else {
        r.body_case = ORCD__V1__REQUEST__BODY_HEALTH;
        r.health = &h;
    }
    if (!tu_proc_send(p, &r)) fail("cannot send");
}

/* Feed one response to its request; returns the request it ended, or NULL. */
static struct req *feed(struct req *reqs, int n, Resp *m) {
    if (m->body_case == ORCD__V1__RESPONSE__BODY_CANCEL_ACK || m->body_case == ORCD__V1__RESPONSE__BODY_HEALTH)
        return NULL;
    if (m->id == 0 || m->id > (uint64_t)n) fail("a response for unknown id %llu", (unsigned long long)m->id);
    struct req *q = &reqs[m->id - 1];
    if (q->ended) fail("request %llu: a message after its terminal one", (unsigned long long)q->id);
    switch (m->body_case) {
    case ORCD__V1__RESPONSE__BODY_STARTED:
        if (q->started) fail("request %llu: two Started", (unsigned long long)q->id);
        if (m->started->prompt_tokens != (uint32_t)q->n_prompt) fail("request %llu: prompt_tokens", (unsigned long long)q->id);
        q->started = true;
        q->cached = m->started->cached_tokens;
        return NULL;
    case ORCD__V1__RESPONSE__BODY_TOKEN:
        if (!q->started) fail("request %llu: Token before Started", (unsigned long long)q->id);
        if (m->token->index != (uint32_t)q->n_toks || q->n_toks >= MAX_GEN)
            fail("request %llu: token index %u, expected %d", (unsigned long long)q->id, m->token->index, q->n_toks);
        q->toks[q->n_toks++] = m->token->id;
        return NULL;
    case ORCD__V1__RESPONSE__BODY_DONE:
        q->ended = true;
        q->cancelled = m->done->reason == ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
        if (m->done->completion_tokens != (uint32_t)q->n_toks) fail("request %llu: Done counts", (unsigned long long)q->id);
        if (!q->cancelled && q->n_toks != (int)q->max_tokens)
            fail("request %llu: %d tokens, max_tokens %u, reason %d", (unsigned long long)q->id, q->n_toks,
                 q->max_tokens, m->done->reason);
        return q;
    case ORCD__V1__RESPONSE__BODY_ERROR:
        q->ended = true;
        q->error = true;
        fail("request %llu: Error %d: %s", (unsigned long long)q->id, m->error->code, m->error->message);
        return q;
    default:
        fail("unexpected response kind %d", m->body_case);
    }
    return NULL;
}

static Resp *recv_or_fail(struct tu_proc *p) {
    const char *why = "";
    Resp *m = tu_proc_recv(p, TIMEOUT_MS, &why);
    if (!m) fail("no response from the worker: %s", why);
    return m;
}

static void finish(struct tu_proc *p) {
    close(p->to);
    p->to = -1;
    int st = 0;
    waitpid(p->pid, &st, 0);
    p->pid = -1;
    close(p->from);
    wk_frame_reader_free(p->rd);
    free(p->rd);
    free(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("the worker exited with status %d", st);
}

int main(void) {
    char model[512];
    tu_shared_path(model, sizeof model, "models/stories260K.gguf");
    if (!tu_have_file(model, "test-soak model")) return 77;
    const int n = getenv("ORCD_SOAK_N") ? atoi(getenv("ORCD_SOAK_N")) : 1000;
    struct req *reqs = calloc((size_t)n, sizeof *reqs);
    /* a few shared prefixes: 16, 32, 48 tokens (whole pages), and none */
    int32_t prefixes[4][48];
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < 48; i++) prefixes[k][i] = 1 + (int32_t)rnd(511);
    for (int i = 0; i < n; i++) {
        struct req *q = &reqs[i];
        q->id = (uint64_t)i + 1;
        int k = (int)rnd(5), shared = k < 4 ? 16 * (1 + (int)rnd(3)) : 0;
        if (shared) memcpy(q->prompt, prefixes[k], (size_t)shared * sizeof(int32_t));
        q->n_prompt = shared + 1 + (int)rnd(60);
        for (int j = shared; j < q->n_prompt; j++) q->prompt[j] = 1 + (int32_t)rnd(511);
        q->max_tokens = 1 + rnd(MAX_GEN);
        q->temperature = rnd(2) ? 0.9f : 0.0f;
        q->seed = 1 + rnd(1000000);
        q->cancel_after = rnd(10) == 0 ? (int)rnd(4) : -1;
    }

    /* the crowd: 64 sequences at most, a pool of 2,048 tokens (64 × ~100 needed) */
    struct tu_proc *p = spawn(model, "64", "2048");
    int sent = 0, ended = 0, inflight = 0;
    uint64_t ctl = (uint64_t)1 << 40; /* ids of Cancel / Health requests */
    while (ended < n) {
        int arrive = inflight < MAX_INFLIGHT ? (int)rnd(9) : 0;
        for (int k = 0; k < arrive && sent < n && inflight < MAX_INFLIGHT; k++, inflight++) send_infer(p, &reqs[sent++]);
        if (inflight == 0) continue;
        Resp *m = recv_or_fail(p);
        struct req *q = feed(reqs, n, m);
        orcd__v1__response__free_unpacked(m, NULL);
        if (q) {
            ended++;
            inflight--;
        }
        for (int i = 0; i < sent; i++) {
            struct req *c = &reqs[i];
            if (!c->ended && !c->cancel_sent && c->cancel_after >= 0 && c->n_toks >= c->cancel_after) {
                send_simple(p, ctl++, 0, c->id);
                c->cancel_sent = true;
            }
        }
    }
    /* every page back in the pool */
    send_simple(p, ctl++, 1, 0);
    Resp *h = NULL;
    while (!h) {
        Resp *m = recv_or_fail(p);
        if (m->body_case == ORCD__V1__RESPONSE__BODY_HEALTH) h = m;
        else orcd__v1__response__free_unpacked(m, NULL);
    }
    const Orcd__V1__Capacity *cap = h->health->capacity;
    if (!cap) fail("Health has no capacity");
    if (cap->kv_pages_free != cap->kv_pages_total || cap->running != 0 || cap->queued != 0)
        fail("at the end: %u of %u pages free, %u running, %u queued", cap->kv_pages_free, cap->kv_pages_total,
             cap->running, cap->queued);
    fprintf(stderr, "test-soak: %d requests, pages %u/%u free (%u cached), served %llu\n", n, cap->kv_pages_free,
            cap->kv_pages_total, cap->kv_pages_cached, (unsigned long long)h->health->requests_served);
    orcd__v1__response__free_unpacked(h, NULL);
    finish(p);

    /* the same requests alone, one at a time: the same stream (a cancelled
     * one: a prefix of it) */
    struct req *alone = calloc((size_t)n, sizeof *alone);
    struct tu_proc *solo = spawn(model, "1", "2048");
    uint64_t cached = 0;
    int n_cancelled = 0;
    for (int i = 0; i < n; i++) {
        alone[i] = reqs[i];
        struct req *a = &alone[i];
        a->started = a->ended = a->cancelled = false;
        a->n_toks = 0;
        a->cancel_after = -1;
        send_infer(solo, a);
        while (!a->ended) {
            Resp *m = recv_or_fail(solo);
            feed(alone, n, m);
            orcd__v1__response__free_unpacked(m, NULL);
        }
        const struct req *q = &reqs[i];
        cached += q->cached;
        n_cancelled += q->cancelled;
        if (q->n_toks > a->n_toks || (!q->cancelled && q->n_toks != a->n_toks))
            fail("request %d: %d tokens in the crowd, %d alone", i + 1, q->n_toks, a->n_toks);
        for (int k = 0; k < q->n_toks; k++)
            if (q->toks[k] != a->toks[k])
                fail("request %d token %d: %d in the crowd, %d alone", i + 1, k, q->toks[k], a->toks[k]);
    }
    finish(solo);
    if (cached == 0) fail("no prompt token came from the prefix cache");
    fprintf(stderr, "test-soak: every stream equals its run alone (%d cancelled: prefixes); %llu prompt tokens "
            "from the cache\n", n_cancelled, (unsigned long long)cached);
    free(alone);
    free(reqs);
    return 0;
}
