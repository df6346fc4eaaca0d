/* generate.c — the generation loop of one Infer request (see generate.h). */
#include "worker/generate.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "loader/chat.h"
#include "loader/model.h"
#include "loader/tokenizer.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/sample.h"
#include "worker/stream.h"

#define WK_MAX_STOPS 16
#define WK_MAX_STOP_LEN 256

double wk_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool wk_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t k;
        unsigned cp;
        if (c >= 0xC2 && c <= 0xDF) k = 1, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) k = 2, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) k = 3, cp = c & 0x07;
        else return false;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

Orcd__V1__ErrorCode wk_error_code(wk_status s) {
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value_by_name(&orcd__v1__error_code__descriptor, wk_status_grpc(s));
    return v ? (Orcd__V1__ErrorCode)v->value : ORCD__V1__ERROR_CODE__INTERNAL;
}

void wk_emit_error(wk_emit_fn emit, void *ctx, uint64_t id, wk_status s, const char *msg) {
    Orcd__V1__Error e = ORCD__V1__ERROR__INIT;
    e.code = wk_error_code(s);
    e.message = (char *)(msg ? msg : wk_status_str(s));
    Orcd__V1__Response r = ORCD__V1__RESPONSE__INIT;
    r.id = id;
    r.body_case = ORCD__V1__RESPONSE__BODY_ERROR;
    r.error = &e;
    emit(ctx, &r);
}

/* Request fields that may lead a message ("top_p: ..."): never stripped. */
static const char *const k_fields[] = {
    "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "repeat_last_n", "seed",
    "stop", "stop_token_ids", "ignore_eos", "logprobs", "max_tokens", "prompt", "chat",
    "token_ids", "input", "id",
};

/* Length of a leading "identifier: " that names code, not the request: an
 * identifier with an underscore (wk_chat_tokenize, gguf_file_parse,
 * forward_batch) that is not a request field. 0 if there is none. */
static size_t internal_prefix(const char *s) {
    size_t n = 0;
    bool under = false;
    while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
           (s[n] >= '0' && s[n] <= '9') || s[n] == '_') {
        if (s[n] == '_') under = true;
        n++;
    }
    if (n == 0 || !under || s[n] != ':' || s[n + 1] != ' ') return 0;
    for (size_t i = 0; i < sizeof k_fields / sizeof k_fields[0]; i++)
        if (strlen(k_fields[i]) == n && !strncmp(s, k_fields[i], n)) return 0;
    return n + 2;
}

void wk_client_message(const char *in, char *out, size_t cap) {
    if (!cap) return;
    const char *s = in ? in : "";
    for (size_t k; (k = internal_prefix(s)) > 0;) s += k;
    size_t n = strlen(s);
    if (n >= cap) n = cap - 1;
    /* never cut a character (an Error.message must be valid UTF-8) */
    while (n > 0 && !wk_utf8_valid(s, n)) n--;
    memcpy(out, s, n);
    out[n] = '\0';
}

void wk_client_error(wk_status st, const char *err, char *out, size_t cap) {
    char inner[512];
    wk_client_message(err && *err ? err : wk_status_str(st), inner, sizeof inner);
    switch (st) {
    case WK_STATUS_CUDA:
    case WK_STATUS_CUBLAS:
    case WK_STATUS_INTERNAL:
        snprintf(out, cap, "internal error in the %s while generating: %s",
                 st == WK_STATUS_INTERNAL ? "worker" : "GPU backend", inner);
        break;
    case WK_STATUS_OOM_HOST:
    case WK_STATUS_OOM_DEV:
        snprintf(out, cap, "out of %s memory: %s", st == WK_STATUS_OOM_DEV ? "device" : "host", inner);
        break;
    default:
        snprintf(out, cap, "%s", inner);
        break;
    }
    /* snprintf may have cut a character */
    size_t n = strlen(out);
    while (n > 0 && !wk_utf8_valid(out, n)) out[--n] = '\0';
}

// --- parameters ---------------------------------------------------------------

wk_status wk_infer_params(const Orcd__V1__InferRequest *q, int n_vocab, struct wk_sampling *p,
                          char *err, size_t err_len) {
    memset(p, 0, sizeof *p);
    if (!isfinite(q->temperature) || q->temperature < 0.0f || q->temperature > 100.0f)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "temperature: %g is out of range [0, 100]", (double)q->temperature);
    if (!isfinite(q->top_p) || q->top_p < 0.0f || q->top_p > 1.0f)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "top_p: %g is out of range [0, 1]", (double)q->top_p);
    if (!isfinite(q->min_p) || q->min_p < 0.0f || q->min_p >= 1.0f)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "min_p: %g is out of range [0, 1)", (double)q->min_p);
    if (!isfinite(q->repetition_penalty) || q->repetition_penalty < 0.0f ||
        q->repetition_penalty > 100.0f)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "repetition_penalty: %g is out of range (0 or 1 = off, else (0, 100])",
                       (double)q->repetition_penalty);
    if (q->logprobs > WK_MAX_LOGPROBS)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "logprobs: %u is out of range [0, %d]", q->logprobs, WK_MAX_LOGPROBS);
    if (q->top_k > (uint32_t)INT32_MAX)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "top_k: %u is too large", q->top_k);
    if (q->repeat_last_n > (uint32_t)INT32_MAX)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "repeat_last_n: %u is too large",
                       q->repeat_last_n);
    if (q->n_stop > WK_MAX_STOPS)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "stop: %zu strings (at most %d)", q->n_stop, WK_MAX_STOPS);
    for (size_t i = 0; i < q->n_stop; i++) {
        size_t l = q->stop[i] ? strlen(q->stop[i]) : 0;
        if (l == 0)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "stop[%zu]: empty string", i);
        if (l > WK_MAX_STOP_LEN)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                           "stop[%zu]: %zu bytes (at most %d)", i, l, WK_MAX_STOP_LEN);
        if (!wk_utf8_valid(q->stop[i], l))
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "stop[%zu]: not valid UTF-8", i);
    }
    for (size_t i = 0; i < q->n_stop_token_ids; i++)
        if (q->stop_token_ids[i] < 0 || q->stop_token_ids[i] >= n_vocab)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                           "stop_token_ids[%zu]: %d is out of range [0, %d)", i,
                           q->stop_token_ids[i], n_vocab);

    p->temperature = q->temperature;
    p->top_k = (int)(q->top_k > (uint32_t)n_vocab ? (uint32_t)n_vocab : q->top_k);
    p->top_p = (q->top_p == 0.0f) ? 1.0f : q->top_p;
    p->min_p = q->min_p;
    p->repetition_penalty = (q->repetition_penalty == 0.0f) ? 1.0f : q->repetition_penalty;
    p->repeat_last_n = q->repeat_last_n ? (int)q->repeat_last_n : 64;
    p->seed = q->seed;
    p->n_logprobs = (int)q->logprobs;
    return wk_sampling_validate(p, err, err_len);
}

static uint64_t pick_seed(void) {
    uint64_t s = 0;
    if (getrandom(&s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = wk_rng_mix64((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
            (uint64_t)getpid();
    }
    return s ? s : 0x9E3779B97F4A7C15ull;
}

// --- prompt -------------------------------------------------------------------

/* s as a short double-quoted string for an error message: valid UTF-8 (or
 * "(not valid UTF-8)"), cut at a character boundary with "..." past cap. */
static void quote_for_message(const char *s, char *out, size_t cap) {
    size_t n = strlen(s);
    if (!wk_utf8_valid(s, n)) {
        snprintf(out, cap, "(not valid UTF-8)");
        return;
    }
    size_t room = cap > 6 ? cap - 6 : 0; /* quotes, "...", NUL */
    bool cut = n > room;
    if (cut) {
        n = room;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
    }
    snprintf(out, cap, "\"%.*s%s\"", (int)n, s, cut ? "..." : "");
}

wk_status wk_build_prompt(const struct wk_model *m, const Orcd__V1__InferRequest *q,
                              int32_t **out, size_t *n_out, char *err, size_t err_len) {
    const struct wk_vocab *v = &m->vocab;
    int n_vocab = m->hp.n_vocab;
    *out = NULL;
    *n_out = 0;
    switch (q->input_case) {
    case ORCD__V1__INFER_REQUEST__INPUT_PROMPT: {
        const char *text = q->prompt ? q->prompt : "";
        size_t len = strlen(text);
        if (!wk_utf8_valid(text, len))
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "prompt: not valid UTF-8");
        int32_t *toks = NULL;
        size_t n = 0;
        wk_status st = wk_tokenize(v, text, len, false, &toks, &n, err, err_len);
        if (st != WK_STATUS_OK) {
            char inner[400];
            wk_client_message(err, inner, sizeof inner);
            return wk_errf(err, err_len, st, "prompt: %s", inner);
        }
        bool bos = v->add_bos && v->bos >= 0;
        int32_t *all = malloc((n + 1) * sizeof *all);
        if (!all) {
            free(toks);
            return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "prompt: %zu tokens", n + 1);
        }
        size_t k = 0;
        if (bos) all[k++] = v->bos;
        if (n) memcpy(all + k, toks, n * sizeof *toks);
        free(toks);
        *out = all;
        *n_out = k + n;
        return WK_STATUS_OK;
    }
    case ORCD__V1__INFER_REQUEST__INPUT_CHAT: {
        const Orcd__V1__ChatList *cl = q->chat;
        size_t n = cl ? cl->n_messages : 0;
        if (n == 0)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "chat.messages: empty");
        struct wk_chat_msg *msgs = calloc(n, sizeof *msgs);
        if (!msgs) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "chat: %zu messages", n);
        for (size_t i = 0; i < n; i++) {
            const Orcd__V1__ChatMessage *cm = cl->messages[i];
            msgs[i].role = (cm && cm->role) ? cm->role : "";
            msgs[i].content = (cm && cm->content) ? cm->content : "";
            const char *r = msgs[i].role;
            if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant")) {
                char shown[48];
                quote_for_message(r, shown, sizeof shown);
                free(msgs);
                return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                               "chat.messages[%zu].role: %s is not one of system, user, assistant",
                               i, shown);
            }
            if (!wk_utf8_valid(msgs[i].content, strlen(msgs[i].content))) {
                free(msgs);
                return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                               "chat.messages[%zu].content: not valid UTF-8", i);
            }
        }
        wk_status st = wk_chat_tokenize(v, msgs, n, out, n_out, err, err_len);
        free(msgs);
        if (st != WK_STATUS_OK) {
            /* the loader speaks of itself ("wk_chat_tokenize: ..."); say which
             * field of the request it was about */
            char inner[400];
            wk_client_message(err, inner, sizeof inner);
            wk_errf(err, err_len, st, "chat: %s", inner);
        }
        return st;
    }
    case ORCD__V1__INFER_REQUEST__INPUT_TOKEN_IDS: {
        const Orcd__V1__TokenIds *ti = q->token_ids;
        size_t n = ti ? ti->n_ids : 0;
        if (n == 0)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "token_ids.ids: empty");
        for (size_t i = 0; i < n; i++)
            if (ti->ids[i] < 0 || ti->ids[i] >= n_vocab)
                return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                               "token_ids.ids[%zu]: %d is out of range [0, %d)", i, ti->ids[i],
                               n_vocab);
        int32_t *all = malloc(n * sizeof *all);
        if (!all) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "token_ids: %zu ids", n);
        memcpy(all, ti->ids, n * sizeof *all);
        *out = all;
        *n_out = n;
        return WK_STATUS_OK;
    }
    default:
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "input: one of prompt, chat or token_ids is required");
    }
}

// --- events -------------------------------------------------------------------

void wk_emit_started(wk_emit_fn emit, void *ctx, uint64_t id, uint32_t n_prompt, uint64_t seed,
                     uint32_t n_cached) {
    Orcd__V1__Started s = ORCD__V1__STARTED__INIT;
    s.prompt_tokens = n_prompt;
    s.seed = seed;
    s.cached_tokens = n_cached;
    Orcd__V1__Response r = ORCD__V1__RESPONSE__INIT;
    r.id = id;
    r.body_case = ORCD__V1__RESPONSE__BODY_STARTED;
    r.started = &s;
    emit(ctx, &r);
}

char *wk_token_piece_utf8(const struct wk_vocab *v, int32_t id, size_t *len) {
    size_t n = 0;
    const char *piece = wk_token_piece(v, id, true, &n);
    return wk_utf8_repair(piece ? piece : "", piece ? n : 0, len);
}

struct textbuf {
    char *p;
    size_t cap;
};

static const char *textbuf_set(struct textbuf *t, const char *s, size_t n) {
    if (n + 1 > t->cap) {
        size_t nc = t->cap ? t->cap : 256;
        while (nc < n + 1) nc *= 2;
        char *np = realloc(t->p, nc);
        if (!np) return "";
        t->p = np;
        t->cap = nc;
    }
    if (n) memcpy(t->p, s, n);
    t->p[n] = '\0';
    return t->p;
}

void wk_emit_token(wk_emit_fn emit, void *ctx, uint64_t id, const struct wk_vocab *v,
                   uint32_t index, const struct wk_sample_out *so, const char *text) {
    Orcd__V1__Token t = ORCD__V1__TOKEN__INIT;
    t.index = index;
    t.id = so->token;
    t.text = (char *)text;
    t.logprob = so->logprob;
    char *piece = wk_token_piece_utf8(v, so->token, NULL);
    t.piece = piece;
    Orcd__V1__TopLogprob tops[WK_MAX_LOGPROBS];
    Orcd__V1__TopLogprob *topp[WK_MAX_LOGPROBS];
    int n_top = so->n_top < 0 ? 0 : so->n_top > WK_MAX_LOGPROBS ? WK_MAX_LOGPROBS : so->n_top;
    for (int i = 0; i < n_top; i++) {
        orcd__v1__top_logprob__init(&tops[i]);
        tops[i].id = so->top_ids[i];
        /* the same decoding as Token.piece, for every id */
        tops[i].text = wk_token_piece_utf8(v, so->top_ids[i], NULL);
        tops[i].logprob = so->top_logprobs[i];
        topp[i] = &tops[i];
    }
    t.n_top_logprobs = (size_t)n_top;
    t.top_logprobs = n_top ? topp : NULL;
    Orcd__V1__Response r = ORCD__V1__RESPONSE__INIT;
    r.id = id;
    r.body_case = ORCD__V1__RESPONSE__BODY_TOKEN;
    r.token = &t;
    emit(ctx, &r);
    for (int i = 0; i < n_top; i++) free(tops[i].text);
    free(piece);
}

static const char *reason_name(Orcd__V1__FinishReason r) {
    switch (r) {
    case ORCD__V1__FINISH_REASON__FINISH_REASON_EOS: return "eos";
    case ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH: return "length";
    case ORCD__V1__FINISH_REASON__FINISH_REASON_STOP: return "stop";
    case ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED: return "cancelled";
    default: return "unspecified";
    }
}

// --- the loop -----------------------------------------------------------------

wk_status wk_generate(const struct wk_gen_env *env, uint64_t id, const Orcd__V1__InferRequest *q,
                      const atomic_bool *cancel, double t_dequeue, wk_emit_fn emit, void *emit_ctx,
                      struct wk_gen_stats *stats) {
    const struct wk_model *m = env->model;
    struct wk_backend *b = env->backend;
    const struct wk_vocab *v = &m->vocab;
    const int n_ctx = b->n_ctx;
    char err[512] = "";
    wk_status st = WK_STATUS_OK;
    int32_t *prompt = NULL, *hist = NULL;
    size_t n_prompt = 0;
    struct wk_stream *stream = NULL;
    struct textbuf tb = {0};
    bool started = false;
    struct wk_gen_stats gs = {0};

    struct wk_sampling sp;
    st = wk_infer_params(q, m->hp.n_vocab, &sp, err, sizeof err);
    if (st != WK_STATUS_OK) goto fail;
    if (sp.seed == 0) sp.seed = pick_seed();

    st = wk_build_prompt(m, q, &prompt, &n_prompt, err, sizeof err);
    if (st != WK_STATUS_OK) goto fail;
    if (n_prompt == 0) {
        st = wk_errf(err, sizeof err, WK_STATUS_INVALID_ARGUMENT,
                     "prompt: empty (it tokenizes to no tokens and the model adds no BOS)");
        goto fail;
    }
    if (n_prompt >= (size_t)n_ctx) {
        st = wk_errf(err, sizeof err, WK_STATUS_OUT_OF_RANGE,
                     "prompt: %zu tokens leave no room to generate in the context of %d tokens",
                     n_prompt, n_ctx);
        goto fail;
    }
    size_t room = (size_t)n_ctx - n_prompt;
    size_t max_new = q->max_tokens ? q->max_tokens : room;
    if (max_new > room) {
        st = wk_errf(err, sizeof err, WK_STATUS_OUT_OF_RANGE,
                     "max_tokens: prompt (%zu tokens) + max_tokens (%u) exceeds the context (%d tokens)",
                     n_prompt, q->max_tokens, n_ctx);
        goto fail;
    }
    st = wk_stream_create((const char *const *)q->stop, q->n_stop, &stream, err, sizeof err);
    if (st != WK_STATUS_OK) goto fail;
    hist = malloc((size_t)n_ctx * sizeof *hist);
    if (!hist) {
        st = wk_errf(err, sizeof err, WK_STATUS_OOM_HOST, "out of host memory for a history of %d tokens",
                     n_ctx);
        goto fail;
    }
    memcpy(hist, prompt, n_prompt * sizeof *hist);
    size_t n_hist = n_prompt;

    gs.prompt_tokens = (uint32_t)n_prompt;
    wk_emit_started(emit, emit_ctx, id, (uint32_t)n_prompt, sp.seed, 0);
    started = true;
    wk_log(WK_LOG_DEBUG, "request %" PRIu64 ": started, %zu prompt tokens, seed %" PRIu64
           ", max %zu new", id, n_prompt, sp.seed, max_new);

    Orcd__V1__FinishReason reason = ORCD__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
    const char *tail = "";
    size_t tail_len = 0;
    double t_pf0 = wk_now(), t_pf1 = t_pf0, t_first = 0, t_last = 0;
    uint32_t n_gen = 0;

    if (atomic_load(cancel)) {
        reason = ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
        goto done;
    }
    st = wk_backend_forward_one(b, prompt, (int)n_prompt, 0, NULL, false, err, sizeof err);
    if (st != WK_STATUS_OK) goto fail;
    t_pf1 = wk_now();

    for (size_t i = 0;; i++) {
        if (atomic_load(cancel)) {
            reason = ORCD__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
            wk_stream_flush(stream, &tail, &tail_len);
            break;
        }
        struct wk_sample_out so;
        memset(&so, 0, sizeof so);
        st = wk_backend_sample_one(b, &sp, hist, n_hist, (uint64_t)i, &so, err, sizeof err);
        if (st != WK_STATUS_OK) goto fail;
        t_last = wk_now();
        if (i == 0) t_first = t_last;
        if (so.token < 0 || so.token >= m->hp.n_vocab) {
            st = wk_errf(err, sizeof err, WK_STATUS_INTERNAL,
                         "the backend sampled token %d, outside the vocabulary of %d", so.token,
                         m->hp.n_vocab);
            goto fail;
        }
        bool stop_id = false;
        for (size_t k = 0; k < q->n_stop_token_ids; k++)
            if (q->stop_token_ids[k] == so.token) stop_id = true;
        if (stop_id || (!q->ignore_eos && wk_token_is_eog(v, so.token))) {
            reason = ORCD__V1__FINISH_REASON__FINISH_REASON_EOS;
            wk_stream_flush(stream, &tail, &tail_len);
            break;
        }
        size_t plen = 0;
        const char *piece = wk_token_piece(v, so.token, false, &plen);
        const char *text = "";
        size_t text_len = 0;
        bool stopped = wk_stream_push(stream, piece ? piece : "", piece ? plen : 0, &text, &text_len);
        wk_emit_token(emit, emit_ctx, id, v, (uint32_t)i, &so, textbuf_set(&tb, text, text_len));
        n_gen++;
        hist[n_hist++] = so.token;
        if (stopped) {
            reason = ORCD__V1__FINISH_REASON__FINISH_REASON_STOP;
            break;
        }
        if (i + 1 >= max_new) {
            reason = ORCD__V1__FINISH_REASON__FINISH_REASON_LENGTH;
            wk_stream_flush(stream, &tail, &tail_len);
            break;
        }
        st = wk_backend_forward_one(b, &so.token, 1, (int)(n_prompt + i), NULL, false, err, sizeof err);
        if (st != WK_STATUS_OK) goto fail;
    }

done:;
    double t_end = wk_now();
    gs.reason = reason;
    gs.completion_tokens = n_gen;
    gs.ttft_ms = n_gen || t_first > 0 ? (t_first - t_dequeue) * 1e3 : 0.0;
    gs.prefill_tps = t_pf1 > t_pf0 ? (double)n_prompt / (t_pf1 - t_pf0) : 0.0;
    gs.decode_tps = (n_gen > 1 && t_last > t_first) ? (double)(n_gen - 1) / (t_last - t_first) : 0.0;
    gs.total_ms = (t_end - t_dequeue) * 1e3;

    Orcd__V1__Done d = ORCD__V1__DONE__INIT;
    d.reason = reason;
    d.prompt_tokens = gs.prompt_tokens;
    d.completion_tokens = n_gen;
    d.time_to_first_token_ms = gs.ttft_ms;
    d.prefill_tokens_per_s = gs.prefill_tps;
    d.decode_tokens_per_s = gs.decode_tps;
    d.total_ms = gs.total_ms;
    d.text = (char *)textbuf_set(&tb, tail, tail_len);
    Orcd__V1__Response r = ORCD__V1__RESPONSE__INIT;
    r.id = id;
    r.body_case = ORCD__V1__RESPONSE__BODY_DONE;
    r.done = &d;
    emit(emit_ctx, &r);
    wk_log(WK_LOG_INFO,
           "request %" PRIu64 ": done (%s), %u prompt + %u tokens, ttft %.1f ms, prefill %.0f tok/s, "
           "decode %.1f tok/s",
           id, reason_name(reason), gs.prompt_tokens, n_gen, gs.ttft_ms, gs.prefill_tps, gs.decode_tps);
    st = WK_STATUS_OK;
    goto out;

fail:
    wk_log(started ? WK_LOG_ERROR : WK_LOG_INFO, "request %" PRIu64 ": %s: %s", id,
           wk_status_grpc(st), err);
    {
        char msg[512];
        wk_client_error(st, err, msg, sizeof msg);
        wk_emit_error(emit, emit_ctx, id, st, msg);
    }
    gs.reason = ORCD__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
out:
    if (stats) *stats = gs;
    free(tb.p);
    wk_stream_free(stream);
    free(hist);
    free(prompt);
    return st;
}
