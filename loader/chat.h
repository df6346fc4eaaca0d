/* chat.h — chat templates, detected from tokenizer.chat_template as
 * llama.cpp detects them: chatml (qwen2, "<|im_start|>"), llama2 ("[INST]"),
 * zephyr ("<|user|>" with "</s>"), phi3 ("<|user|>" with "<|end|>").
 *
 * The result is a token sequence: the template's control tokens come from the
 * vocabulary by id, and message content is tokenized with special tokens
 * treated as plain text, so content can never inject a control token.
 */
#ifndef WK_CHAT_H
#define WK_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "loader/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

enum wk_chat_template {
    WK_CHAT_UNKNOWN = 0,
    WK_CHAT_CHATML,
    WK_CHAT_LLAMA2,
    WK_CHAT_ZEPHYR,
    WK_CHAT_PHI3,
};

struct wk_chat_msg {
    const char *role;    /* "system" | "user" | "assistant" */
    const char *content; /* NUL-terminated UTF-8 */
};

/* From the template text (NULL -> UNKNOWN). */
enum wk_chat_template wk_chat_detect(const char *template_text);
const char *wk_chat_template_name(enum wk_chat_template t);

/* Apply the model's template to msgs and end with the assistant prefix
 * (add_generation_prompt). BOS is included when the vocabulary adds one.
 * UNKNOWN template or bad role: INVALID_ARGUMENT. *out malloc'ed. */
wk_status wk_chat_tokenize(const struct wk_vocab *v, const struct wk_chat_msg *msgs, size_t n,
                           int32_t **out, size_t *n_out, char *err, size_t err_len);

/* --- additions (chat.c owner) ------------------------------------------- */

/* Flags for wk_chat_tokenize_as. */
#define WK_CHAT_NO_DEFAULT_SYSTEM 1u /* chatml: do not add the template's default
                                        system message (Qwen's "You are Qwen, ...")
                                        when the first message is not a system one;
                                        llama.cpp's built-in chatml adds none */

/* wk_chat_tokenize with the template chosen by the caller (WK_CHAT_UNKNOWN:
 * detect from v->chat_template, as wk_chat_tokenize does) and flags.
 * wk_chat_tokenize(v, ...) == wk_chat_tokenize_as(v, WK_CHAT_UNKNOWN, 0, ...). */
wk_status wk_chat_tokenize_as(const struct wk_vocab *v, enum wk_chat_template tmpl,
                              unsigned flags, const struct wk_chat_msg *msgs, size_t n,
                              int32_t **out, size_t *n_out, char *err, size_t err_len);

#ifdef __cplusplus
}
#endif

#endif
