/* tokenizer.h — vocabularies from GGUF metadata and the two tokenizers.
 *
 *   tokenizer.ggml.model = "gpt2"  byte-level BPE; pre-tokenizer regex chosen
 *                                  by tokenizer.ggml.pre (qwen2, llama-bpe,
 *                                  smollm, gpt-2; others refused by name)
 *   tokenizer.ggml.model = "llama" SentencePiece: score-driven merges, byte
 *                                  fallback <0xNN>, leading-space (▁) handling
 *                                  as llama.cpp does it
 *
 * Keys read: tokenizer.ggml.{model,pre,tokens,scores,token_type,merges,
 * bos_token_id,eos_token_id,eot_token_id,unknown_token_id,padding_token_id,
 * add_bos_token,add_eos_token,add_space_prefix}, tokenizer.chat_template.
 */
#ifndef WK_TOKENIZER_H
#define WK_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct gguf_file;

enum wk_vocab_type { WK_VOCAB_SPM = 1, WK_VOCAB_BPE = 2 };

/* llama.cpp's token types (tokenizer.ggml.token_type) */
enum wk_token_attr {
    WK_TOKEN_NORMAL = 1,
    WK_TOKEN_UNKNOWN = 2,
    WK_TOKEN_CONTROL = 3,
    WK_TOKEN_USER_DEFINED = 4,
    WK_TOKEN_UNUSED = 5,
    WK_TOKEN_BYTE = 6,
};

struct wk_vocab {
    enum wk_vocab_type type;
    char pre[32];          /* pre-tokenizer name ("qwen2"), "" for SPM */
    int32_t n_tokens;
    int32_t bos, eos, eot, unk, pad; /* -1 when the model has none */
    bool add_bos, add_eos;
    bool add_space_prefix; /* SPM: prepend ▁ to the text (default true) */
    char *chat_template;   /* tokenizer.chat_template, owned, or NULL */
    void *impl;            /* private tables (tokenizer-internal), owned */
};

/* Read the vocabulary from a parsed GGUF. Strings are copied, so the vocab
 * does not borrow from the file. */
wk_status wk_vocab_load(const struct gguf_file *g, struct wk_vocab *v, char *err, size_t err_len);
void wk_vocab_free(struct wk_vocab *v);

/* Tokenize len bytes of text (need not be NUL-terminated). With
 * parse_special = false, text that spells a special token ("<|im_end|>") is
 * tokenized as plain text; with true, control / user-defined tokens are
 * matched first (chat templates). No BOS is added here: callers prepend
 * v->bos when v->add_bos. *out is malloc'ed (caller frees); *n_out its length. */
wk_status wk_tokenize(const struct wk_vocab *v, const char *text, size_t len, bool parse_special,
                      int32_t **out, size_t *n_out, char *err, size_t err_len);

/* The bytes a token stands for when detokenized (byte-level BPE decoded to raw
 * bytes; SPM ▁ -> ' ', <0xNN> -> that byte; control tokens -> "" unless
 * render_special). Borrowed pointer valid while v lives; *len set. Out-of-range
 * ids give "" (len 0). */
const char *wk_token_piece(const struct wk_vocab *v, int32_t id, bool render_special, size_t *len);

/* The token's text as stored in the vocabulary ("Ġthe", "▁the", "<|im_end|>"). */
const char *wk_token_text(const struct wk_vocab *v, int32_t id);

/* Id of a token by its exact vocabulary text, -1 if absent. */
int32_t wk_token_id(const struct wk_vocab *v, const char *text);

/* Token attribute (enum wk_token_attr). */
int wk_token_attr(const struct wk_vocab *v, int32_t id);

/* True for tokens that end generation (eos, eot, and <|im_end|>/<|endoftext|>-
 * style end-of-generation control tokens). */
bool wk_token_is_eog(const struct wk_vocab *v, int32_t id);

/* Mark id as end-of-generation too (the architecture table's extra texts).
 * Out-of-range ids are ignored. */
void wk_vocab_set_eog(struct wk_vocab *v, int32_t id);

#ifdef __cplusplus
}
#endif

#endif
