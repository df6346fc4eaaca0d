/* generate.h — one Infer request, from validation to Done.
 *
 *   validate params -> tokenize (prompt | chat template | token ids)
 *   -> prompt + max_tokens <= n_ctx (else OUT_OF_RANGE, before any work)
 *   -> Started -> forward(prompt) -> loop { sample -> eog / stop id ->
 *      stream (UTF-8 + stop strings) -> Token -> forward(1) } -> Done
 *
 * The response stream of a request is: Started, Token x n, Done — or a
 * single Error (validation failed before Started), or Started, Token x n,
 * Error (the backend failed mid-way). The cancel flag is polled before the
 * prefill and before every decode step.
 */
#ifndef WK_GENERATE_H
#define WK_GENERATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "worker.pb-c.h"
#include "core/backend.h"
#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct wk_model;

/* Receives every response the request produces (called on the generation
 * thread; the message is only valid during the call). */
typedef void (*wk_emit_fn)(void *ctx, const Orcd__V1__Response *r);

struct wk_gen_env {
    const struct wk_model *model;   /* borrowed */
    struct wk_backend *backend;     /* borrowed */
};

struct wk_gen_stats {
    Orcd__V1__FinishReason reason;  /* UNSPECIFIED when it ended in an Error */
    uint32_t prompt_tokens, completion_tokens;
    double ttft_ms, decode_tps, prefill_tps, total_ms;
};

/* Run request `id` to its end, emitting its responses. t_dequeue is
 * wk_now() when the request left the queue (time to first token counts from
 * there). Returns OK when the stream ended in Done (cancelled included), else
 * the status of the Error that was sent. stats may be NULL. */
wk_status wk_generate(const struct wk_gen_env *env, uint64_t id, const Orcd__V1__InferRequest *req,
                      const atomic_bool *cancel, double t_dequeue, wk_emit_fn emit, void *emit_ctx,
                      struct wk_gen_stats *stats);

/* Parameters of req -> sampling settings, validated (INVALID_ARGUMENT naming
 * the field). n_vocab bounds token ids. The seed is copied as given (0 stays 0). */
wk_status wk_infer_params(const Orcd__V1__InferRequest *req, int n_vocab, struct wk_sampling *p,
                          char *err, size_t err_len);

/* The prompt's token ids (malloc'ed into *out, caller frees): prompt text
 * (BOS when the vocabulary asks; special-token text stays plain text), chat
 * messages through the model's template (roles checked here), or token ids
 * (range-checked). Errors are INVALID_ARGUMENT naming the request field;
 * *n_out may be 0 (an empty prompt on a model without BOS). */
struct wk_vocab;
wk_status wk_build_prompt(const struct wk_model *m, const Orcd__V1__InferRequest *q,
                          int32_t **out, size_t *n_out, char *err, size_t err_len);

/* Send helpers shared with the server (and a scheduler). */
Orcd__V1__ErrorCode wk_error_code(wk_status s);
void wk_emit_error(wk_emit_fn emit, void *ctx, uint64_t id, wk_status s, const char *msg);
void wk_emit_started(wk_emit_fn emit, void *ctx, uint64_t id, uint32_t n_prompt, uint64_t seed,
                     uint32_t n_cached);
/* One Token event: text is the stream text (after UTF-8 and stop holdback);
 * Token.piece and every TopLogprob.text are wk_token_piece_utf8. */
void wk_emit_token(wk_emit_fn emit, void *ctx, uint64_t id, const struct wk_vocab *v,
                   uint32_t index, const struct wk_sample_out *so, const char *text);

/* A token's own piece as clients see it (Token.piece, TopLogprob.text):
 * its bytes with special tokens rendered as their literal text and invalid
 * UTF-8 replaced by U+FFFD. malloc'ed (caller frees); *len may be NULL. */
char *wk_token_piece_utf8(const struct wk_vocab *v, int32_t id, size_t *len);

/* A message for Error.message from an internal one: leading "function: "
 * prefixes that name code (an identifier with '_' that is not a request
 * field, e.g. "wk_chat_tokenize: ") are removed; the result is cut at a
 * character boundary to fit cap. */
void wk_client_message(const char *in, char *out, size_t cap);
/* wk_client_message, plus what kind of failure it was for the statuses
 * that are not about the request (INTERNAL, CUDA, out of memory). */
void wk_client_error(wk_status st, const char *err, char *out, size_t cap);

/* Monotonic clock, seconds. */
double wk_now(void);

/* True when s[0..n) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool wk_utf8_valid(const char *s, size_t n);

#ifdef __cplusplus
}
#endif

#endif
