/* tokenizer-impl.h — private tables shared by vocab.c, bpe.c and spm.c.
 *
 * Not an agreed interface: only the tokenizer files include it.
 *
 * Symbol table. Every vocabulary token is a symbol with id < n_tokens. Byte-
 * level BPE may add "virtual" symbols (id >= n_tokens): strings that a merge
 * rule names but the vocabulary lacks. They take part in merging exactly as
 * llama.cpp's string-keyed merges do, but are never emitted as ids (a final
 * virtual symbol falls back to byte tokens) and never found by wk_token_id.
 */
#ifndef WK_TOKENIZER_IMPL_H
#define WK_TOKENIZER_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loader/gguf.h"
#include "loader/tokenizer.h"
#include "core/status.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#define WK__TOK_MAX_REGEX 4

/* A growable byte arena (< 4 GiB) + (offset, length) per entry. */
struct wk__strent {
    uint32_t off; /* into buf */
    uint32_t len; /* without the NUL */
};
struct wk__strtab {
    char *buf;        /* all strings, each followed by a NUL */
    size_t len, cap;  /* bytes used / allocated in buf */
    struct wk__strent *ent; /* n entries */
    int32_t n, cap_n;
};

/* Open-addressing map string -> symbol id over a strtab (keys live there).
 * Each slot keeps the key's hash so probes rarely touch the strings. */
struct wk__strslot {
    int32_t id; /* -1 = empty */
    uint32_t hash;
};
struct wk__strmap {
    struct wk__strslot *slots; /* cap entries */
    uint32_t cap;              /* power of two */
    uint32_t n;
};

/* Open-addressing map (left id, right id) -> (rank, merged id), BPE merges. */
struct wk__merge_slot {
    uint64_t key;   /* (uint64_t)left << 32 | right; UINT64_MAX = empty */
    int32_t rank;
    int32_t result;
};
struct wk__mergemap {
    struct wk__merge_slot *slots;
    uint32_t cap; /* power of two */
    uint32_t n;
};

struct wk__tok {
    struct wk__strtab sym;    /* texts of all symbols: tokens then virtual */
    struct wk__strmap map;    /* text -> symbol id (the last token wins on duplicates, as llama.cpp) */
    uint8_t *attr;            /* n_tokens: enum wk_token_attr */
    float *score;             /* n_tokens: SPM scores (0 when absent) */
    struct wk__strtab piece;  /* n_tokens: detokenized bytes (NORMAL/BYTE/USER_DEFINED) */
    uint8_t *eog;             /* n_tokens: 1 = ends generation */

    /* specials matched first under parse_special: CONTROL / USER_DEFINED /
     * UNKNOWN tokens with non-empty text, grouped by first byte, each group
     * longest first. special_ids[special_start[b] .. special_start[b+1]). */
    int32_t *special_ids;
    uint32_t special_start[257];
    uint8_t *rstrip;          /* n_tokens: 1 = whitespace after this special is dropped (Phi-3) */

    /* byte-level BPE */
    struct wk__mergemap merges;
    int32_t byte_sym[256];    /* symbol id of the unicode char standing for byte b */
    pcre2_code *re[WK__TOK_MAX_REGEX];
    int n_re;
    bool ignore_merges;       /* llama3: a word found whole in the vocab is one token */

    /* SPM */
    int32_t byte_tok[256];    /* id of "<0xNN>", or -1 */
};

/* Growable id vector used by the tokenizers. */
struct wk__ids {
    int32_t *v;
    size_t n, cap;
};
wk_status wk__ids_push(struct wk__ids *ids, int32_t id, char *err, size_t err_len);

/* --- symbol table (vocab.c) --- */
/* Append a string; *id_out gets its index. */
wk_status wk__strtab_add(struct wk__strtab *t, const char *s, size_t len, int32_t *id_out);
void wk__strtab_free(struct wk__strtab *t);
static inline const char *wk__strtab_get(const struct wk__strtab *t, int32_t i, size_t *len) {
    *len = t->ent[i].len;
    return t->buf + t->ent[i].off;
}
/* Lookup: symbol id of the text, or -1. */
int32_t wk__sym_find(const struct wk__tok *tk, const char *s, size_t len);
/* Find or add a (virtual) symbol; used by the BPE merge loader. */
wk_status wk__sym_intern(struct wk__tok *tk, const char *s, size_t len, int32_t *id_out);

/* --- UTF-8 --- */
/* Length of the UTF-8 sequence starting with byte c (1 for invalid leads). */
static inline size_t wk__utf8_len(unsigned char c) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}
/* Encode cp (< 0x110000) into out (4 bytes); returns the length. */
size_t wk__utf8_encode(uint32_t cp, char *out);

/* --- byte-level BPE (bpe.c) --- */
/* Build merges, regexes, byte map and pieces for v (type BPE). */
wk_status wk__bpe_init(struct wk_vocab *v, const struct gguf_file *g, char *err, size_t err_len);
void wk__bpe_free(struct wk__tok *tk);
/* Tokenize a raw-text fragment (no specials), appending ids. */
wk_status wk__bpe_tokenize(const struct wk_vocab *v, const char *text, size_t len,
                           struct wk__ids *out, char *err, size_t err_len);

/* --- SentencePiece (spm.c) --- */
wk_status wk__spm_init(struct wk_vocab *v, char *err, size_t err_len);
/* Tokenize a raw-text fragment; add_prefix: prepend "▁" (llama.cpp's
 * add_space_prefix for the first fragment / after a special token). */
wk_status wk__spm_tokenize(const struct wk_vocab *v, const char *text, size_t len, bool add_prefix,
                           struct wk__ids *out, char *err, size_t err_len);

#endif
