/* request.h — one Infer request as the owner of a scheduler sequence.
 *
 *   wk_request_open    validate parameters, build the prompt (text | chat |
 *                      ids), size max_tokens, set up the stop-string stream
 *   hooks (scheduler.h)    started -> Started; token -> stop ids / end-of-
 *                      generation / stream (UTF-8 + stop strings) -> Token;
 *                      cancelled -> the request's cancel flag;
 *                      ended -> Done (eos | length | stop | cancelled) or,
 *                      after a backend failure, Error
 * The response stream is Started, Token x n, Done — or one Error when
 * wk_request_open or submitting refuses the request (nothing else was sent).
 * The request frees itself in its `ended` hook.
 */
#ifndef WK_REQUEST_H
#define WK_REQUEST_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "worker.pb-c.h"
#include "worker/generate.h"
#include "worker/scheduler.h"

struct wk_request;

/* Called once per request when it ends (Done or Error sent), on the
 * generation thread: started = it got a Started; st = the status of the
 * Error when it ended in one (OK for Done). */
typedef void (*wk_request_end_fn)(void *ctx, uint64_t id, bool started, wk_status st);

struct wk_request_env {
    const struct wk_model *model;  /* borrowed */
    struct wk_sched *sched;        /* borrowed */
    int n_ctx, kv_tokens;          /* positions per sequence; tokens in the whole KV pool */
    wk_emit_fn emit;               /* every response goes here */
    void *emit_ctx;
    wk_request_end_fn on_end;      /* may be NULL */
    void *end_ctx;
};

/* Validate q and queue it as a sequence. req_cancel is polled every step
 * (borrowed: it must live until on_end). t_arrive: wk_now() when the request
 * arrived (time to first token counts from there). On failure nothing was
 * queued and nothing was emitted: the caller answers with the Error (msg
 * holds the client-facing text). */
wk_status wk_request_submit(const struct wk_request_env *env, uint64_t id, const Orcd__V1__InferRequest *q,
                            const atomic_bool *req_cancel, double t_arrive, char *msg, size_t msg_len);

#endif
