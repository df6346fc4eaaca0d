/* server.c — reader thread, bounded queue, generation loop (the scheduler's
 * thread), single writer (see server.h for the contract and the exit
 * statuses). */
#include "worker/server.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "loader/model.h"
#include "loader/quants.h"
#include "worker.pb-c.h"
#include "worker/frame.h"
#include "worker/generate.h"
#include "worker/request.h"
#include "worker/scheduler.h"
#include "core/log.h"

#define DEFAULT_MAX_QUEUE 16
#define DEFAULT_MAX_OUTPUT (4u << 20)
/* The reader stops reading stdin while this much more than --max-output is
 * queued (see "Output bound" below). */
#define READER_SLACK (256u << 10)

/* A request handed to the scheduler: added by the generation thread, removed
 * when its stream ends (request on_end); the reader looks ids up and sets
 * cancel. Under mu. */
struct inflight {
    struct inflight *next;  /* oldest first */
    Orcd__V1__Request *req; /* owned (protobuf-c unpacked) */
    atomic_bool cancel;
    bool started;
    bool ended;             /* its Done or Error is queued: no longer found */
};

struct pending {
    Orcd__V1__Request *req; /* owned (protobuf-c unpacked) */
    double t_enqueue;
};

struct outframe {
    struct outframe *next;
    size_t len;
    uint8_t data[]; /* header + payload */
};

struct wk_server {
    struct wk_server_config cfg;
    int in_fd, out_fd;
    double t_start;

    /* --- state, under mu ------------------------------------------------- */
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* queue non-empty or stopping */
    struct pending *q;          /* ring of cfg.max_queue */
    int q_head, q_len;
    bool loaded, failed, stopping;
    int exit_status;
    struct inflight *inflight;  /* requests the scheduler holds, oldest first */
    struct wk_sched_stats cap;  /* the scheduler after its last step (for Health) */
    uint64_t served;            /* Infer requests that got a Started */
    uint64_t refused;           /* Infer requests answered by a lone Error */
    struct wk_sched *sched;     /* created in set_ready; used by the generation thread only */
    bool backend_broken;        /* a step failed with a CUDA error: stop */

    /* model facts for Ready / Health (set once in set_ready) */
    const struct wk_model *model;
    struct wk_backend *backend;
    Orcd__V1__ModelInfo minfo;
    Orcd__V1__DeviceInfo dinfo;
    Orcd__V1__ModelInfo__TensorTypesEntry *tt;  /* minfo.tensor_types, owned */
    Orcd__V1__ModelInfo__TensorTypesEntry **ttp;

    /* --- writer, under wmu ------------------------------------------------ */
    pthread_mutex_t wmu;
    pthread_cond_t wcv;     /* a frame was queued, or closing */
    pthread_cond_t wspace;  /* the writer wrote a frame (or the wait is over) */
    struct outframe *whead, *wtail;
    size_t wbytes;    /* bytes queued, the frame being written included */
    bool wclosing;    /* flush what is queued, then exit */
    bool wbroken;     /* out_fd failed: drop everything */
    bool wnowait;     /* shutting down: nothing waits for room any more */
    bool gen_paused;  /* the generation thread waits for room (Health.output_paused) */

    pthread_t reader, writer;
    bool reader_started, writer_started;
    int wake[2];      /* write a byte to wake[1] to stop the reader */
};

// --- writer -------------------------------------------------------------------
//
// Output bound. Every frame goes through one queue to the writer thread. The
// generation thread (the only producer whose output is unbounded: one frame a
// token) waits before queueing while --max-output bytes or more are queued, so a
// client that stops reading stdout pauses generation instead of growing our
// memory; Health then reports output_paused. The reader thread never waits on
// that bound: its replies (Health, CancelAck, Errors) are small, one per
// request frame, so Health is answered at once however full the queue is.
// The reader's own output is bounded by backpressure on stdin instead: while
// more than --max-output + READER_SLACK bytes are queued, it stops reading
// new frames until the writer catches up (a client that neither reads stdout
// nor stops writing stdin then blocks on its own write). Shutdown ends every
// wait (wnowait): the running request is cancelled within one step, so what
// is queued past the bound after that is a few frames.

static struct outframe *make_frame(const Orcd__V1__Response *r) {
    char err[256];
    uint8_t *frame = NULL;
    size_t len = 0;
    if (wk_frame_pack(&r->base, &frame, &len, err, sizeof err) != WK_STATUS_OK) {
        wk_log(WK_LOG_ERROR, "%s: %s", __func__, err);
        return NULL;
    }
    struct outframe *of = malloc(sizeof *of + len);
    if (!of) {
        wk_log(WK_LOG_ERROR, "%s: out of memory for a %zu-byte frame", __func__, len);
        free(frame);
        return NULL;
    }
    of->next = NULL;
    of->len = len;
    memcpy(of->data, frame, len);
    free(frame);
    return of;
}

/* Queue a frame for the writer (takes it; NULL is ignored). Never blocks. */
static void enqueue(struct wk_server *s, struct outframe *of) {
    if (!of) return;
    pthread_mutex_lock(&s->wmu);
    if (s->wbroken) {
        pthread_mutex_unlock(&s->wmu);
        free(of);
        return;
    }
    if (s->wtail) s->wtail->next = of;
    else s->whead = of;
    s->wtail = of;
    s->wbytes += of->len;
    pthread_cond_signal(&s->wcv);
    pthread_mutex_unlock(&s->wmu);
}

/* Generation thread: wait until fewer than --max-output bytes are queued. */
static void wait_output_room(struct wk_server *s) {
    pthread_mutex_lock(&s->wmu);
    if (s->wbytes >= s->cfg.max_output && !s->wbroken && !s->wnowait) {
        s->gen_paused = true;
        wk_log(WK_LOG_DEBUG, "output queue full (%zu bytes): generation paused", s->wbytes);
        while (s->wbytes >= s->cfg.max_output && !s->wbroken && !s->wnowait)
            pthread_cond_wait(&s->wspace, &s->wmu);
        s->gen_paused = false;
        wk_log(WK_LOG_DEBUG, "output queue drained: generation resumes");
    }
    pthread_mutex_unlock(&s->wmu);
}

/* Reader thread: wait while the queue is far past the bound (see above). */
static void wait_reader_room(struct wk_server *s) {
    size_t hard = s->cfg.max_output + READER_SLACK;
    pthread_mutex_lock(&s->wmu);
    while (s->wbytes > hard && !s->wbroken && !s->wnowait) pthread_cond_wait(&s->wspace, &s->wmu);
    pthread_mutex_unlock(&s->wmu);
}

/* Queue one response for the writer thread. Never blocks on out_fd. */
static void send_response(struct wk_server *s, const Orcd__V1__Response *r) {
    enqueue(s, make_frame(r));
}

/* Responses that are not the running request's (errors the reader sends). */
static void send_cb(void *ctx, const Orcd__V1__Response *r) { send_response(ctx, r); }

static struct inflight *inflight_find(struct wk_server *s, uint64_t id) {
    for (struct inflight *f = s->inflight; f; f = f->next)
        if (f->req->id == id && !f->ended) return f;
    return NULL;
}

/* Responses of the requests the scheduler runs (generation thread; may wait
 * for output room, never while holding mu). Started counts the request as
 * served. */
static void emit_cb(void *ctx, const Orcd__V1__Response *r) {
    struct wk_server *s = ctx;
    struct outframe *of = make_frame(r);
    wait_output_room(s);
    pthread_mutex_lock(&s->mu);
    struct inflight *f = inflight_find(s, r->id);
    if (f && r->body_case == ORCD__V1__RESPONSE__BODY_STARTED && !f->started) {
        f->started = true;
        s->served++;
    }
    /* the end of its stream: a Cancel or a reused id read after the client
     * saw it no longer finds the request */
    if (f && (r->body_case == ORCD__V1__RESPONSE__BODY_DONE || r->body_case == ORCD__V1__RESPONSE__BODY_ERROR))
        f->ended = true;
    enqueue(s, of);
    pthread_mutex_unlock(&s->mu);
}

/* A request's stream ended (its Done or Error is queued): forget it, so a
 * Cancel read after the client saw the end answers found = false. */
static void request_ended(void *ctx, uint64_t id, bool started, wk_status st) {
    struct wk_server *s = ctx;
    (void)started;
    pthread_mutex_lock(&s->mu);
    for (struct inflight **pf = &s->inflight; *pf; pf = &(*pf)->next) {
        if ((*pf)->req->id != id) continue;
        struct inflight *f = *pf;
        *pf = f->next;
        orcd__v1__request__free_unpacked(f->req, NULL);
        free(f);
        break;
    }
    if (st == WK_STATUS_CUDA || st == WK_STATUS_CUBLAS) s->backend_broken = true;
    pthread_mutex_unlock(&s->mu);
}

static void send_error(struct wk_server *s, uint64_t id, wk_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void send_error(struct wk_server *s, uint64_t id, wk_status st, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    wk_log(WK_LOG_WARN, "request %" PRIu64 ": %s: %s", id, wk_status_grpc(st), msg);
    char client[512];
    wk_client_error(st, msg, client, sizeof client);
    wk_emit_error(send_cb, s, id, st, client);
}

static void *writer_main(void *arg) {
    struct wk_server *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->wmu);
        while (!s->whead && !s->wclosing) pthread_cond_wait(&s->wcv, &s->wmu);
        struct outframe *of = s->whead;
        if (!of) { /* closing and empty */
            pthread_mutex_unlock(&s->wmu);
            break;
        }
        s->whead = of->next;
        if (!s->whead) s->wtail = NULL;
        pthread_mutex_unlock(&s->wmu);

        char err[256];
        wk_status st = wk_write_full(s->out_fd, of->data, of->len, err, sizeof err);
        pthread_mutex_lock(&s->wmu);
        s->wbytes -= of->len;
        pthread_cond_broadcast(&s->wspace);
        pthread_mutex_unlock(&s->wmu);
        free(of);
        if (st != WK_STATUS_OK) {
            int e = errno;
            wk_log(WK_LOG_ERROR, "writer: %s; %s", err,
                   e == EPIPE ? "the reader of stdout is gone, shutting down"
                              : "output failed, shutting down");
            pthread_mutex_lock(&s->wmu);
            s->wbroken = true;
            while (s->whead) {
                struct outframe *n = s->whead->next;
                free(s->whead);
                s->whead = n;
            }
            s->wtail = NULL;
            s->wbytes = 0;
            pthread_cond_broadcast(&s->wspace);
            pthread_mutex_unlock(&s->wmu);
            wk_server_shutdown(s, WK_EXIT_OUTPUT, "stdout closed");
            break;
        }
    }
    return NULL;
}

// --- state helpers (mu held) ----------------------------------------------------

static void send_cancelled_done(struct wk_server *s, uint64_t id) {
    Orcd__V1__Done d = ORCD__V1__DONE__INIT;
    d.reason = ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
    Orcd__V1__Response r = ORCD__V1__RESPONSE__INIT;
    r.id = id;
    r.body_case = ORCD__V1__RESPONSE__BODY_DONE;
    r.done = &d;
    send_response(s, &r);
}

static bool queue_has_id(struct wk_server *s, uint64_t id) {
    for (int i = 0; i < s->q_len; i++)
        if (s->q[(s->q_head + i) % s->cfg.max_queue].req->id == id) return true;
    return false;
}

/* Remove the queued request with this id; true if it was there. */
static bool queue_remove(struct wk_server *s, uint64_t id) {
    int cap = s->cfg.max_queue;
    for (int i = 0; i < s->q_len; i++) {
        struct pending *p = &s->q[(s->q_head + i) % cap];
        if (p->req->id != id) continue;
        orcd__v1__request__free_unpacked(p->req, NULL);
        for (int j = i; j + 1 < s->q_len; j++)
            s->q[(s->q_head + j) % cap] = s->q[(s->q_head + j + 1) % cap];
        s->q_len--;
        return true;
    }
    return false;
}

/* Answer everything still queued: Done(cancelled), or Error when the model
 * never loaded. */
static void queue_drain(struct wk_server *s) {
    int cap = s->cfg.max_queue;
    while (s->q_len > 0) {
        struct pending *p = &s->q[s->q_head];
        uint64_t id = p->req->id;
        orcd__v1__request__free_unpacked(p->req, NULL);
        s->q_head = (s->q_head + 1) % cap;
        s->q_len--;
        if (s->failed) {
            s->refused++;
            send_error(s, id, WK_STATUS_UNAVAILABLE, "the model failed to load");
        } else {
            send_cancelled_done(s, id);
        }
    }
}

// --- reader -------------------------------------------------------------------

/* Requests waiting for the running batch: in the queue, or held by the
 * scheduler but not yet started (under mu). */
static int n_waiting(const struct wk_server *s) {
    int n = s->q_len;
    for (const struct inflight *f = s->inflight; f; f = f->next) n += !f->started;
    return n;
}

/* The scheduler's capacity: pages as of its last step, sequences now
 * (under mu). */
static void fill_capacity(const struct wk_server *s, Orcd__V1__Capacity *c) {
    const struct wk_sched_stats *st = &s->cap;
    c->kv_page_tokens = WK_KV_PAGE_TOKENS;
    c->kv_pages_total = (uint32_t)st->pages_total;
    c->kv_pages_free = (uint32_t)st->pages_free;
    c->kv_pages_cached = (uint32_t)st->pages_cached;
    c->kv_tokens_total = (uint64_t)st->pages_total * WK_KV_PAGE_TOKENS;
    c->kv_tokens_free = (uint64_t)st->pages_free * WK_KV_PAGE_TOKENS;
    c->max_batch = (uint32_t)st->max_seqs;
    c->max_step_tokens = (uint32_t)st->max_step_tokens;
    int running = 0;
    for (const struct inflight *f = s->inflight; f; f = f->next) running += f->started && !f->ended;
    c->running = (uint32_t)running;
    c->queued = (uint32_t)n_waiting(s);
}

static void answer_health(struct wk_server *s, uint64_t id) {
    Orcd__V1__Health h = ORCD__V1__HEALTH__INIT;
    pthread_mutex_lock(&s->mu);
    if (s->failed) h.state = ORCD__V1__HEALTH_STATE__HEALTH_STATE_FAILED;
    else if (s->stopping) h.state = ORCD__V1__HEALTH_STATE__HEALTH_STATE_DRAINING;
    else if (!s->loaded) h.state = ORCD__V1__HEALTH_STATE__HEALTH_STATE_LOADING;
    else if (s->inflight) h.state = ORCD__V1__HEALTH_STATE__HEALTH_STATE_BUSY;
    else h.state = ORCD__V1__HEALTH_STATE__HEALTH_STATE_READY;
    if (s->loaded) {
        h.model = &s->minfo;
        h.device = &s->dinfo;
    }
    Orcd__V1__Capacity cap = ORCD__V1__CAPACITY__INIT;
    if (s->loaded) {
        fill_capacity(s, &cap);
        h.capacity = &cap;
    }
    h.queue_depth = (uint32_t)n_waiting(s);
    h.requests_served = s->served;
    h.requests_refused = s->refused;
    pthread_mutex_lock(&s->wmu);
    h.output_paused = s->gen_paused;
    pthread_mutex_unlock(&s->wmu);
    for (const struct inflight *f = s->inflight; f && !h.running_id; f = f->next)
        if (f->started && !f->ended) h.running_id = f->req->id;
    h.uptime_seconds = wk_now() - s->t_start;
    Orcd__V1__Response r = ORCD__V1__RESPONSE__INIT;
    r.id = id;
    r.body_case = ORCD__V1__RESPONSE__BODY_HEALTH;
    r.health = &h;
    send_response(s, &r); /* packs now: minfo/dinfo are read under mu */
    pthread_mutex_unlock(&s->mu);
}

static void answer_cancel(struct wk_server *s, uint64_t id, uint64_t target) {
    bool found = false, queued = false;
    pthread_mutex_lock(&s->mu);
    struct inflight *f = target != 0 ? inflight_find(s, target) : NULL;
    if (f) {
        atomic_store(&f->cancel, true);
        found = true;
    } else if (target != 0 && queue_remove(s, target)) {
        found = queued = true;
    }
    Orcd__V1__CancelAck a = ORCD__V1__CANCEL_ACK__INIT;
    a.target_id = target;
    a.found = found;
    Orcd__V1__Response r = ORCD__V1__RESPONSE__INIT;
    r.id = id;
    r.body_case = ORCD__V1__RESPONSE__BODY_CANCEL_ACK;
    r.cancel_ack = &a;
    send_response(s, &r);
    if (queued) send_cancelled_done(s, target);
    pthread_mutex_unlock(&s->mu);
    wk_log(WK_LOG_INFO, "cancel %" PRIu64 ": %s", target,
           !found ? "not found" : queued ? "removed from the queue" : "running request stopping");
}

/* Takes ownership of req. */
static void handle_infer(struct wk_server *s, Orcd__V1__Request *req) {
    uint64_t id = req->id;
    const char *why = NULL;
    wk_status st = WK_STATUS_OK;
    char msg[160];
    pthread_mutex_lock(&s->mu);
    if (id == 0) {
        st = WK_STATUS_INVALID_ARGUMENT;
        why = "id: must be non-zero for infer (id 0 is the worker's own)";
    } else if (req->infer->input_case == ORCD__V1__INFER_REQUEST__INPUT__NOT_SET) {
        st = WK_STATUS_INVALID_ARGUMENT;
        why = "infer.input: one of prompt, chat or token_ids is required";
    } else if (s->stopping || s->failed) {
        st = WK_STATUS_UNAVAILABLE;
        why = s->failed ? "the model failed to load" : "the worker is shutting down";
    } else if (inflight_find(s, id) || queue_has_id(s, id)) {
        st = WK_STATUS_ALREADY_EXISTS;
        why = "id: a request with this id is already running or queued (that one goes on)";
    } else if (n_waiting(s) >= s->cfg.max_queue) {
        st = WK_STATUS_RESOURCE_EXHAUSTED;
        snprintf(msg, sizeof msg, "queue full: %d requests waiting for the running batch (--max-queue %d)",
                 n_waiting(s), s->cfg.max_queue);
        why = msg;
    }
    if (st == WK_STATUS_OK) {
        struct pending *p = &s->q[(s->q_head + s->q_len) % s->cfg.max_queue];
        p->req = req;
        p->t_enqueue = wk_now();
        s->q_len++;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        wk_log(WK_LOG_DEBUG, "request %" PRIu64 ": queued", id);
        return;
    }
    s->refused++;
    pthread_mutex_unlock(&s->mu);
    send_error(s, id, st, "%s", why);
    orcd__v1__request__free_unpacked(req, NULL);
}

static void handle_payload(struct wk_server *s, const uint8_t *payload, size_t len) {
    Orcd__V1__Request *req = orcd__v1__request__unpack(NULL, len, payload);
    if (!req) {
        char hex[3 * 8 + 1] = "";
        for (size_t i = 0; i < len && i < 8; i++) snprintf(hex + 3 * i, 4, " %02x", payload[i]);
        send_error(s, wk_frame_peek_id(payload, len), WK_STATUS_BAD_FRAME,
                   "request: protobuf decoding failed (%zu bytes, first:%s)", len,
                   len ? hex : " none");
        return;
    }
    switch (req->body_case) {
    case ORCD__V1__REQUEST__BODY_INFER: {
        /* a U+0000 in a string field would have cut it at unpack: refuse */
        char field[64];
        uint64_t at = 0;
        if (wk_request_find_nul(payload, len, field, sizeof field, &at)) {
            pthread_mutex_lock(&s->mu);
            s->refused++;
            pthread_mutex_unlock(&s->mu);
            send_error(s, req->id, WK_STATUS_INVALID_ARGUMENT,
                       "%s: contains a NUL character (U+0000) at byte %" PRIu64
                       ", which is not accepted in request text",
                       field, at);
            break;
        }
        handle_infer(s, req);
        return; /* owned by the queue or freed */
    }
    case ORCD__V1__REQUEST__BODY_HEALTH:
        answer_health(s, req->id);
        break;
    case ORCD__V1__REQUEST__BODY_CANCEL:
        answer_cancel(s, req->id, req->cancel->target_id);
        break;
    case ORCD__V1__REQUEST__BODY_SHUTDOWN:
        wk_log(WK_LOG_INFO, "request %" PRIu64 ": shutdown", req->id);
        wk_server_shutdown(s, WK_EXIT_OK, "shutdown request");
        break;
    default:
        if (req->base.n_unknown_fields > 0)
            send_error(s, req->id, WK_STATUS_INVALID_ARGUMENT,
                       "request: no known body (unknown field %u); expected one of infer, cancel, "
                       "health, shutdown",
                       req->base.unknown_fields[0].tag);
        else
            send_error(s, req->id, WK_STATUS_INVALID_ARGUMENT,
                       "request: body missing; expected one of infer, cancel, health, shutdown");
        break;
    }
    orcd__v1__request__free_unpacked(req, NULL);
}

static void *reader_main(void *arg) {
    struct wk_server *s = arg;
    struct wk_frame_reader *r = malloc(sizeof *r);
    if (!r) {
        wk_log(WK_LOG_ERROR, "reader: out of memory");
        wk_server_shutdown(s, WK_EXIT_PROTOCOL, "reader out of memory");
        return NULL;
    }
    wk_frame_reader_init(r, s->in_fd, s->cfg.max_frame);
    for (bool run = true; run;) {
        struct wk_frame_info info;
        wait_reader_room(s);
        enum wk_frame_ev ev = wk_frame_reader_next(r, -1, s->wake[0], &info);
        switch (ev) {
        case WK_FRAME_MSG:
            handle_payload(s, info.payload, (size_t)info.len);
            break;
        case WK_FRAME_OVERSIZE:
            send_error(s, 0, WK_STATUS_BAD_FRAME,
                       info.oom ? "frame: payload of %" PRIu64 " bytes could not be allocated; "
                                  "drained and ignored"
                                : "frame: payload of %" PRIu64 " bytes exceeds the maximum of %zu "
                                  "(--max-frame); drained and ignored",
                       info.len, r->dec.max);
            break;
        case WK_FRAME_BAD_FLAG:
            send_error(s, 0, WK_STATUS_BAD_FRAME,
                       "frame: flag byte 0x%02x (only 0 = uncompressed is accepted); the stream is "
                       "out of sync, exiting with status %d",
                       info.flag, WK_EXIT_PROTOCOL);
            wk_server_shutdown(s, WK_EXIT_PROTOCOL, "bad frame flag");
            run = false;
            break;
        case WK_FRAME_TRUNCATED:
            send_error(s, 0, WK_STATUS_BAD_FRAME,
                       "frame: input ended inside a frame (%" PRIu64 " of %" PRIu64
                       " bytes); exiting with status %d",
                       info.have, info.len, WK_EXIT_PROTOCOL);
            wk_server_shutdown(s, WK_EXIT_PROTOCOL, "truncated frame at end of input");
            run = false;
            break;
        case WK_FRAME_EOF:
            wk_server_shutdown(s, WK_EXIT_OK, "end of input");
            run = false;
            break;
        case WK_FRAME_IO:
            wk_log(WK_LOG_ERROR, "reader: read: %s", strerror(info.err));
            wk_server_shutdown(s, WK_EXIT_PROTOCOL, "read error");
            run = false;
            break;
        case WK_FRAME_WOKEN:
        default:
            run = false;
            break;
        }
    }
    /* Answer what already sits in the pipe (an Infer sent just before a
     * SIGTERM gets UNAVAILABLE rather than silence); bounded, never blocks. */
    double t_end = wk_now() + 0.1;
    for (int k = 0; k < 1024 && wk_now() < t_end; k++) {
        struct wk_frame_info info;
        enum wk_frame_ev ev = wk_frame_reader_next(r, 0, -1, &info);
        if (ev == WK_FRAME_MSG) handle_payload(s, info.payload, (size_t)info.len);
        else if (ev != WK_FRAME_OVERSIZE) break;
    }
    wk_frame_reader_free(r);
    free(r);
    return NULL;
}

// --- public -------------------------------------------------------------------

wk_status wk_server_create(const struct wk_server_config *cfg, int in_fd, int out_fd,
                           struct wk_server **out, char *err, size_t err_len) {
    *out = NULL;
    struct wk_server *s = calloc(1, sizeof *s);
    if (!s) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: server", __func__);
    s->cfg = *cfg;
    if (s->cfg.max_queue <= 0) s->cfg.max_queue = DEFAULT_MAX_QUEUE;
    if (s->cfg.max_frame == 0) s->cfg.max_frame = WK_FRAME_MAX_DEFAULT;
    if (s->cfg.max_output == 0) s->cfg.max_output = DEFAULT_MAX_OUTPUT;
    s->in_fd = in_fd;
    s->out_fd = out_fd;
    s->t_start = wk_now();
    s->wake[0] = s->wake[1] = -1;
    s->q = calloc((size_t)s->cfg.max_queue, sizeof *s->q);
    if (!s->q || pipe2(s->wake, O_CLOEXEC) != 0) {
        wk_status st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: queue of %d / wake pipe: %s",
                               __func__, s->cfg.max_queue, strerror(errno));
        free(s->q);
        free(s);
        return st;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_cond_init(&s->wcv, NULL);
    pthread_cond_init(&s->wspace, NULL);
    orcd__v1__model_info__init(&s->minfo);
    orcd__v1__device_info__init(&s->dinfo);
    *out = s;
    return WK_STATUS_OK;
}

wk_status wk_server_start(struct wk_server *s, char *err, size_t err_len) {
    int rc = pthread_create(&s->writer, NULL, writer_main, s);
    if (rc != 0) return wk_errf(err, err_len, WK_STATUS_INTERNAL, "%s: writer thread: %s", __func__, strerror(rc));
    s->writer_started = true;
    rc = pthread_create(&s->reader, NULL, reader_main, s);
    if (rc != 0) return wk_errf(err, err_len, WK_STATUS_INTERNAL, "%s: reader thread: %s", __func__, strerror(rc));
    s->reader_started = true;
    return WK_STATUS_OK;
}

/* ModelInfo.tensor_types: tensor count per ggml type, in type-id order. */
static void fill_tensor_types(struct wk_server *s, const struct wk_model *m) {
    enum { N_TYPES = 64 };
    uint32_t count[N_TYPES] = {0};
    size_t n_kinds = 0;
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        uint32_t t = m->gguf.tensors[i].type;
        if (t < N_TYPES && wk_type_info(t) && count[t]++ == 0) n_kinds++;
    }
    s->tt = calloc(n_kinds ? n_kinds : 1, sizeof *s->tt);
    s->ttp = calloc(n_kinds ? n_kinds : 1, sizeof *s->ttp);
    if (!s->tt || !s->ttp) {
        wk_log(WK_LOG_WARN, "%s: out of memory: ModelInfo.tensor_types left empty", __func__);
        return;
    }
    size_t k = 0;
    for (uint32_t t = 0; t < N_TYPES; t++) {
        if (!count[t]) continue;
        orcd__v1__model_info__tensor_types_entry__init(&s->tt[k]);
        s->tt[k].key = (char *)wk_type_info(t)->name;
        s->tt[k].value = count[t];
        s->ttp[k] = &s->tt[k];
        k++;
    }
    s->minfo.n_tensor_types = k;
    s->minfo.tensor_types = s->ttp;
}

void wk_server_set_ready(struct wk_server *s, const struct wk_model *m, struct wk_backend *b,
                         double load_seconds) {
    char err[256];
    struct wk_sched *sched = NULL;
    if (wk_sched_create(b, NULL, &sched, err, sizeof err) != WK_STATUS_OK) {
        wk_server_set_failed(s, WK_STATUS_OOM_HOST, err);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->sched = sched;
    wk_sched_stats(sched, &s->cap);
    s->model = m;
    s->backend = b;
    s->minfo.arch = (char *)m->arch_name;
    s->minfo.name = (char *)m->name;
    s->minfo.parameters = m->n_params;
    s->minfo.quantization = (char *)m->ftype_name;
    fill_tensor_types(s, m);
    s->minfo.context_length = (uint32_t)b->n_ctx;
    s->minfo.vocab_size = (uint32_t)m->hp.n_vocab;
    s->dinfo.backend = (char *)(b->ops && b->ops->name ? b->ops->name : "");
    s->dinfo.name = b->info.device;
    s->dinfo.memory_total = b->info.mem_total;
    s->dinfo.memory_weights = b->info.mem_weights;
    s->dinfo.memory_kv_cache = b->info.mem_kv;
    s->dinfo.memory_scratch = b->info.mem_scratch;
    s->loaded = true;

    Orcd__V1__Ready rd = ORCD__V1__READY__INIT;
    rd.model = &s->minfo;
    rd.device = &s->dinfo;
    rd.load_seconds = load_seconds;
    Orcd__V1__Capacity cap = ORCD__V1__CAPACITY__INIT;
    fill_capacity(s, &cap);
    rd.capacity = &cap;
    Orcd__V1__Response r = ORCD__V1__RESPONSE__INIT;
    r.id = 0;
    r.body_case = ORCD__V1__RESPONSE__BODY_READY;
    r.ready = &rd;
    send_response(s, &r);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    wk_log(WK_LOG_INFO, "ready: %s (%s, %" PRIu64 " params, %s), %s on %s, ctx %d, load %.3f s",
           m->name, m->arch_name, m->n_params, m->ftype_name, s->dinfo.backend, b->info.device,
           b->n_ctx, load_seconds);
}

void wk_server_set_failed(struct wk_server *s, wk_status st, const char *msg) {
    send_error(s, 0, st, "%s", msg);
    pthread_mutex_lock(&s->mu);
    s->failed = true;
    pthread_mutex_unlock(&s->mu);
    wk_server_shutdown(s, WK_EXIT_LOAD, "model load failed");
}

void wk_server_shutdown(struct wk_server *s, int exit_status, const char *why) {
    pthread_mutex_lock(&s->mu);
    if (!s->stopping) {
        s->stopping = true;
        s->exit_status = exit_status;
        wk_log(WK_LOG_INFO, "shutting down: %s", why);
    } else if (s->exit_status == WK_EXIT_OK && exit_status != WK_EXIT_OK) {
        /* a failure after a clean stop was asked for (stdin EOF while the
         * model was still loading, then the load failed) still decides the
         * exit status: a supervisor must see that the load failed */
        s->exit_status = exit_status;
        wk_log(WK_LOG_INFO, "exit status now %d: %s", exit_status, why);
    }
    for (struct inflight *f = s->inflight; f; f = f->next) atomic_store(&f->cancel, true);
    queue_drain(s);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_lock(&s->wmu);
    s->wnowait = true;
    pthread_cond_broadcast(&s->wspace);
    pthread_mutex_unlock(&s->wmu);
}

bool wk_server_stopping(struct wk_server *s) {
    pthread_mutex_lock(&s->mu);
    bool st = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return st;
}

/* Generation thread: requests leave the queue into the scheduler as soon as
 * they arrive (their Error at once when refused), and the scheduler steps
 * while it holds any. */
static void admit_queued(struct wk_server *s) {
    while (s->q_len > 0) {
        struct pending p = s->q[s->q_head];
        s->q_head = (s->q_head + 1) % s->cfg.max_queue;
        s->q_len--;
        struct inflight *f = calloc(1, sizeof *f);
        if (!f) {
            s->refused++;
            send_error(s, p.req->id, WK_STATUS_OOM_HOST, "out of host memory");
            orcd__v1__request__free_unpacked(p.req, NULL);
            continue;
        }
        f->req = p.req;
        atomic_init(&f->cancel, false);
        struct inflight **tail = &s->inflight;
        while (*tail) tail = &(*tail)->next;
        *tail = f;
        pthread_mutex_unlock(&s->mu);
        const struct wk_request_env env = {
            .model = s->model, .sched = s->sched, .n_ctx = s->backend->n_ctx,
            .kv_tokens = s->backend->n_kv_pages * WK_KV_PAGE_TOKENS,
            .emit = emit_cb, .emit_ctx = s, .on_end = request_ended, .end_ctx = s,
        };
        char msg[512];
        wk_status st = wk_request_submit(&env, p.req->id, p.req->infer, &f->cancel, p.t_enqueue, msg, sizeof msg);
        pthread_mutex_lock(&s->mu);
        if (st != WK_STATUS_OK) {
            for (struct inflight **pf = &s->inflight; *pf; pf = &(*pf)->next)
                if (*pf == f) {
                    *pf = f->next;
                    break;
                }
            s->refused++;
            send_error(s, p.req->id, st, "%s", msg);
            orcd__v1__request__free_unpacked(p.req, NULL);
            free(f);
        }
    }
}

int wk_server_run(struct wk_server *s) {
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stopping && (!s->loaded || (s->q_len == 0 && wk_sched_idle(s->sched))))
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stopping) break;
        admit_queued(s);
        pthread_mutex_unlock(&s->mu);
        char err[512];
        wk_status st = WK_STATUS_OK;
        wk_sched_step(s->sched, &st, err, sizeof err);
        pthread_mutex_lock(&s->mu);
        wk_sched_stats(s->sched, &s->cap);
        if (s->backend_broken || st == WK_STATUS_CUDA || st == WK_STATUS_CUBLAS) {
            pthread_mutex_unlock(&s->mu);
            wk_server_shutdown(s, WK_EXIT_BACKEND, "backend failure");
            pthread_mutex_lock(&s->mu);
        }
    }
    /* what still runs ends with Done(cancelled) */
    if (s->sched) {
        pthread_mutex_unlock(&s->mu);
        wk_sched_cancel_all(s->sched);
        pthread_mutex_lock(&s->mu);
        wk_sched_stats(s->sched, &s->cap);
    }
    int status = s->exit_status;
    pthread_mutex_unlock(&s->mu);

    /* stop the reader (it may sit in poll on an open stdin) */
    if (s->reader_started) {
        ssize_t w;
        do w = write(s->wake[1], "x", 1);
        while (w < 0 && errno == EINTR);
        pthread_join(s->reader, NULL);
        s->reader_started = false;
    }
    /* responses the reader queued after shutdown (e.g. a Done(cancelled)) */
    pthread_mutex_lock(&s->mu);
    queue_drain(s);
    pthread_mutex_unlock(&s->mu);
    /* flush */
    if (s->writer_started) {
        pthread_mutex_lock(&s->wmu);
        s->wclosing = true;
        pthread_cond_signal(&s->wcv);
        pthread_mutex_unlock(&s->wmu);
        pthread_join(s->writer, NULL);
        s->writer_started = false;
    }
    pthread_mutex_lock(&s->mu);
    status = s->exit_status; /* the writer may have found stdout closed */
    pthread_mutex_unlock(&s->mu);
    wk_log(WK_LOG_INFO, "exit status %d (%" PRIu64 " requests served, %" PRIu64 " refused)", status,
           s->served, s->refused);
    return status;
}

void wk_server_destroy(struct wk_server *s) {
    if (!s) return;
    if (s->reader_started) {
        ssize_t w = write(s->wake[1], "x", 1);
        (void)w;
        pthread_join(s->reader, NULL);
    }
    if (s->writer_started) {
        pthread_mutex_lock(&s->wmu);
        s->wclosing = true;
        pthread_cond_signal(&s->wcv);
        pthread_mutex_unlock(&s->wmu);
        pthread_join(s->writer, NULL);
    }
    while (s->q_len > 0) {
        orcd__v1__request__free_unpacked(s->q[s->q_head].req, NULL);
        s->q_head = (s->q_head + 1) % s->cfg.max_queue;
        s->q_len--;
    }
    while (s->whead) {
        struct outframe *n = s->whead->next;
        free(s->whead);
        s->whead = n;
    }
    wk_sched_free(s->sched); /* empty by now: wk_server_run ended every sequence */
    free(s->q);
    if (s->wake[0] >= 0) close(s->wake[0]);
    if (s->wake[1] >= 0) close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->wmu);
    pthread_cond_destroy(&s->wcv);
    pthread_cond_destroy(&s->wspace);
    free(s->tt);
    free(s->ttp);
    free(s);
}
