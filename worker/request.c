/* request.c — one Infer request driving a scheduler sequence (request.h). */
#include "worker/request.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/log.h"
#include "loader/model.h"
#include "loader/tokenizer.h"
#include "worker/stream.h"

struct wk_request {
    struct wk_request_env env;
    uint64_t id;
    const Orcd__V1__InferRequest *q; /* borrowed from the server until ended */
    const atomic_bool *cancel;
    struct wk_stream *stream;
    uint32_t n_prompt, max_new, n_gen;
    uint64_t seed;
    Orcd__V1__FinishReason reason;
    bool started;
    double t_arrive, t_started, t_first, t_last;
    char *text;   /* NUL-terminated copy of the stream text of the current event */
    size_t text_cap;
};

static const char *text_of(struct wk_request *r, const char *s, size_t n) {
    if (n + 1 > r->text_cap) {
        size_t cap = n + 64;
        char *p = realloc(r->text, cap);
        if (!p) return "";
        r->text = p;
        r->text_cap = cap;
    }
    memcpy(r->text, s, n);
    r->text[n] = '\0';
    return r->text;
}

static uint64_t pick_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s || s == 0) s = (uint64_t)(wk_now() * 1e9) | 1;
    return s;
}

static const char *reason_name(Orcd__V1__FinishReason r) {
    switch (r) {
    case ORCD__V1__FINISH_REASON__FINISH_REASON_EOS: return "eos";
    case ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH: return "length";
    case ORCD__V1__FINISH_REASON__FINISH_REASON_STOP: return "stop";
    case ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED: return "cancelled";
    default: return "?";
    }
}

// --- the hooks --------------------------------------------------------------------

static void on_started(void *ctx, int n_cached) {
    struct wk_request *r = ctx;
    r->started = true;
    r->t_started = wk_now();
    wk_emit_started(r->env.emit, r->env.emit_ctx, r->id, r->n_prompt, r->seed, (uint32_t)n_cached);
    wk_log(WK_LOG_DEBUG, "request %" PRIu64 ": started, %u prompt tokens (%d from the cache), seed %" PRIu64, r->id,
           r->n_prompt, n_cached, r->seed);
}

static bool on_token(void *ctx, const struct wk_sample_out *so, uint32_t index) {
    struct wk_request *r = ctx;
    const struct wk_vocab *v = &r->env.model->vocab;
    r->t_last = wk_now();
    if (index == 0) r->t_first = r->t_last;
    const Orcd__V1__InferRequest *q = r->q;
    bool stop_id = false;
    for (size_t k = 0; k < q->n_stop_token_ids; k++) stop_id |= q->stop_token_ids[k] == so->token;
    if (stop_id || (!q->ignore_eos && wk_token_is_eog(v, so->token))) {
        r->reason = ORCD__V1__FINISH_REASON__FINISH_REASON_EOS;
        return false;
    }
    size_t plen = 0;
    const char *piece = wk_token_piece(v, so->token, false, &plen);
    const char *text = "";
    size_t text_len = 0;
    const bool stopped = wk_stream_push(r->stream, piece ? piece : "", piece ? plen : 0, &text, &text_len);
    wk_emit_token(r->env.emit, r->env.emit_ctx, r->id, v, index, so, text_of(r, text, text_len));
    r->n_gen++;
    if (stopped) {
        r->reason = ORCD__V1__FINISH_REASON__FINISH_REASON_STOP;
        return false;
    }
    if (r->n_gen >= r->max_new) {
        r->reason = ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH;
        return false;
    }
    return true;
}

static bool on_cancelled(void *ctx) {
    struct wk_request *r = ctx;
    return atomic_load(r->cancel);
}

static void request_free(struct wk_request *r) {
    wk_stream_free(r->stream);
    free(r->text);
    free(r);
}

static void on_ended(void *ctx, enum wk_seq_end why, wk_status st, const char *msg) {
    struct wk_request *r = ctx;
    if (why == WK_SEQ_FAILED) {
        char client[512];
        wk_log(WK_LOG_ERROR, "request %" PRIu64 ": %s: %s", r->id, wk_status_grpc(st), msg ? msg : "");
        wk_client_error(st, msg ? msg : "", client, sizeof client);
        wk_emit_error(r->env.emit, r->env.emit_ctx, r->id, st, client);
    } else {
        if (why == WK_SEQ_CANCELLED) r->reason = ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
        /* held-back bytes: a stop string can no longer match, a split
         * character will not be completed */
        const char *tail = "";
        size_t tail_len = 0;
        if (r->reason != ORCD__V1__FINISH_REASON__FINISH_REASON_STOP) wk_stream_flush(r->stream, &tail, &tail_len);
        const double t_end = wk_now();
        Orcd__V1__Done d = ORCD__V1__DONE__INIT;
        d.reason = r->reason;
        d.prompt_tokens = r->n_prompt;
        d.completion_tokens = r->n_gen;
        d.time_to_first_token_ms = r->t_first > 0 ? (r->t_first - r->t_arrive) * 1e3 : 0.0;
        d.prefill_tokens_per_s = r->t_first > r->t_started ? r->n_prompt / (r->t_first - r->t_started) : 0.0;
        d.decode_tokens_per_s = r->n_gen > 1 && r->t_last > r->t_first ? (r->n_gen - 1) / (r->t_last - r->t_first) : 0.0;
        d.total_ms = (t_end - r->t_arrive) * 1e3;
        d.text = (char *)text_of(r, tail, tail_len);
        Orcd__V1__Response resp = ORCD__V1__RESPONSE__INIT;
        resp.id = r->id;
        resp.body_case = ORCD__V1__RESPONSE__BODY_DONE;
        resp.done = &d;
        r->env.emit(r->env.emit_ctx, &resp);
        wk_log(WK_LOG_INFO,
               "request %" PRIu64 ": done (%s), %u prompt + %u tokens, ttft %.1f ms, decode %.1f tok/s", r->id,
               reason_name(r->reason), r->n_prompt, r->n_gen, d.time_to_first_token_ms, d.decode_tokens_per_s);
    }
    if (r->env.on_end) r->env.on_end(r->env.end_ctx, r->id, r->started, why == WK_SEQ_FAILED ? st : WK_STATUS_OK);
    request_free(r);
}

static const struct wk_seq_hooks k_request_hooks = {on_started, on_token, on_cancelled, on_ended};

// --- submission -------------------------------------------------------------------------

wk_status wk_request_submit(const struct wk_request_env *env, uint64_t id, const Orcd__V1__InferRequest *q,
                            const atomic_bool *req_cancel, double t_arrive, char *msg, size_t msg_len) {
    const struct wk_model *m = env->model;
    char err[512] = "";
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    struct wk_sampling sp;
    struct wk_request *r = calloc(1, sizeof *r);
    wk_status st = r ? WK_STATUS_OK : wk_errf(err, sizeof err, WK_STATUS_OOM_HOST, "out of host memory");
    if (st == WK_STATUS_OK) st = wk_infer_params(q, m->hp.n_vocab, &sp, err, sizeof err);
    if (st == WK_STATUS_OK) st = wk_build_prompt(m, q, &prompt, &n_prompt, err, sizeof err);
    if (st == WK_STATUS_OK && n_prompt == 0)
        st = wk_errf(err, sizeof err, WK_STATUS_INVALID_ARGUMENT,
                     "prompt: empty (it tokenizes to no tokens and the model adds no BOS)");
    /* the longest sequence: the context, and the whole KV pool */
    const size_t limit = (size_t)(env->n_ctx < env->kv_tokens ? env->n_ctx : env->kv_tokens);
    if (st == WK_STATUS_OK && n_prompt >= limit)
        st = wk_errf(err, sizeof err, WK_STATUS_OUT_OF_RANGE,
                     "prompt: %zu tokens leave no room to generate in %s of %zu tokens", n_prompt,
                     limit == (size_t)env->n_ctx ? "the context" : "the KV cache", limit);
    if (st == WK_STATUS_OK && q->max_tokens > limit - n_prompt)
        st = wk_errf(err, sizeof err, WK_STATUS_OUT_OF_RANGE,
                     "max_tokens: prompt (%zu tokens) + max_tokens (%u) exceeds %s (%zu tokens)", n_prompt,
                     q->max_tokens, limit == (size_t)env->n_ctx ? "the context" : "the KV cache", limit);
    if (st == WK_STATUS_OK) st = wk_stream_create((const char *const *)q->stop, q->n_stop, &r->stream, err, sizeof err);
    if (st == WK_STATUS_OK) {
        r->env = *env;
        r->id = id;
        r->q = q;
        r->cancel = req_cancel;
        r->n_prompt = (uint32_t)n_prompt;
        r->max_new = q->max_tokens ? q->max_tokens : (uint32_t)(limit - n_prompt);
        r->seed = sp.seed = sp.seed ? sp.seed : pick_seed();
        r->t_arrive = t_arrive;
        r->reason = ORCD__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
        st = wk_sched_submit(env->sched, prompt, (int)n_prompt, (int)r->max_new, &sp, &k_request_hooks, r, err,
                             sizeof err);
    }
    free(prompt);
    if (st != WK_STATUS_OK) {
        wk_log(WK_LOG_INFO, "request %" PRIu64 ": refused: %s: %s", id, wk_status_grpc(st), err);
        wk_client_error(st, err, msg, msg_len);
        if (r) {
            wk_stream_free(r->stream);
            free(r);
        }
    }
    return st;
}
