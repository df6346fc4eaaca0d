/* vocab.c — vocabulary loading from GGUF metadata, special-token handling,
 * token pieces and the wk_tokenize entry point. The two tokenizers proper are
 * in bpe.c (byte-level BPE) and spm.c (SentencePiece).
 *
 * Keys (see tokenizer.h). Defaults follow llama.cpp:
 *   model "llama" (SPM): bos 1, eos 2, unk 0, add_bos true, add_space_prefix true
 *   model "gpt2"  (BPE): no default ids, add_bos false (true for llama3-style
 *                        pre-tokenizers), add_space_prefix false
 * A special-token id of -1 or 0xFFFFFFFF means "none"; any other id outside
 * [0, n_tokens) is an error naming the key.
 *
 * Special tokens under parse_special: CONTROL, USER_DEFINED and UNKNOWN
 * tokens are cut out of the text first, scanning left to right and taking the
 * longest token that matches at each position; the text between them is
 * tokenized normally. Without parse_special the whole text is plain text
 * (llama.cpp would still cut out USER_DEFINED tokens; we do not, so user text
 * can never produce a special id).
 *
 * Phi-3 (general.architecture "phi3", or a general.name containing "phi-3" /
 * "phi3"): as in its tokenizer.json and llama.cpp, the special tokens except
 * <unk>, <s> and <|endoftext|> swallow the whitespace that follows them
 * ("rstrip"), so "<|user|>\nHi" is <|user|> ▁Hi.
 */
#include "loader/tokenizer.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/arch.h"
#include "loader/gguf.h"
#include "loader/tokenizer-impl.h"

// --- small containers ------------------------------------------------------

wk_status wk__ids_push(struct wk__ids *ids, int32_t id, char *err, size_t err_len) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *nv = realloc(ids->v, cap * sizeof *nv);
        if (!nv) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: %zu ids", __func__, cap);
        ids->v = nv;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return WK_STATUS_OK;
}

wk_status wk__strtab_add(struct wk__strtab *t, const char *s, size_t len, int32_t *id_out) {
    if (len >= UINT32_MAX - t->len || t->n == INT32_MAX) return WK_STATUS_BAD_MODEL; /* 4 GiB of text */
    if (t->n == t->cap_n) {
        int32_t cap = t->cap_n ? (t->cap_n > INT32_MAX / 2 ? INT32_MAX : t->cap_n * 2) : 1024;
        struct wk__strent *ne = realloc(t->ent, (size_t)cap * sizeof *ne);
        if (!ne) return WK_STATUS_OOM_HOST;
        t->ent = ne;
        t->cap_n = cap;
    }
    if (t->cap - t->len < len + 1) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap - t->len < len + 1) cap *= 2;
        char *nb = realloc(t->buf, cap);
        if (!nb) return WK_STATUS_OOM_HOST;
        t->buf = nb;
        t->cap = cap;
    }
    if (len) memcpy(t->buf + t->len, s, len);
    t->buf[t->len + len] = '\0';
    t->ent[t->n].off = (uint32_t)t->len;
    t->ent[t->n].len = (uint32_t)len;
    t->len += len + 1;
    *id_out = t->n++;
    return WK_STATUS_OK;
}

void wk__strtab_free(struct wk__strtab *t) {
    free(t->buf);
    free(t->ent);
    memset(t, 0, sizeof *t);
}

size_t wk__utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// --- string -> symbol map ---------------------------------------------------

static uint32_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static wk_status strmap_alloc(struct wk__strmap *m, uint32_t cap) {
    m->slots = malloc((size_t)cap * sizeof *m->slots);
    if (!m->slots) return WK_STATUS_OOM_HOST;
    for (uint32_t i = 0; i < cap; i++) m->slots[i].id = -1;
    m->cap = cap;
    m->n = 0;
    return WK_STATUS_OK;
}

static wk_status strmap_init(struct wk__strmap *m, uint32_t n_expected) {
    uint32_t cap = 1024;
    while (cap < 2u * n_expected && cap < (1u << 30)) cap *= 2;
    return strmap_alloc(m, cap);
}

/* Slot index holding text s (hash h), or the empty slot where it would go. */
static uint32_t strmap_slot(const struct wk__strmap *m, const struct wk__strtab *t, const char *s, size_t len,
                            uint32_t h) {
    uint32_t mask = m->cap - 1;
    for (uint32_t i = h & mask;; i = (i + 1) & mask) {
        const struct wk__strslot *sl = &m->slots[i];
        if (sl->id < 0) return i;
        if (sl->hash == h) {
            const struct wk__strent *e = &t->ent[sl->id];
            if (e->len == len && memcmp(t->buf + e->off, s, len) == 0) return i;
        }
    }
}

static wk_status strmap_grow(struct wk__strmap *m) {
    struct wk__strmap nm;
    if (m->cap >= (1u << 30)) return WK_STATUS_OOM_HOST;
    wk_status st = strmap_alloc(&nm, m->cap * 2);
    if (st != WK_STATUS_OK) return st;
    uint32_t mask = nm.cap - 1;
    for (uint32_t i = 0; i < m->cap; i++) {
        if (m->slots[i].id < 0) continue;
        uint32_t j = m->slots[i].hash & mask;
        while (nm.slots[j].id >= 0) j = (j + 1) & mask; /* keys are distinct */
        nm.slots[j] = m->slots[i];
    }
    nm.n = m->n;
    free(m->slots);
    *m = nm;
    return WK_STATUS_OK;
}

/* Map text(id) -> id, replacing an existing entry with the same text. */
static wk_status strmap_put(struct wk__strmap *m, const struct wk__strtab *t, int32_t id) {
    if ((m->n + 1) * 2 > m->cap) {
        wk_status s = strmap_grow(m);
        if (s != WK_STATUS_OK) return s;
    }
    const char *s = t->buf + t->ent[id].off;
    uint32_t h = hash_bytes(s, t->ent[id].len);
    uint32_t i = strmap_slot(m, t, s, t->ent[id].len, h);
    if (m->slots[i].id < 0) m->n++;
    m->slots[i].id = id;
    m->slots[i].hash = h;
    return WK_STATUS_OK;
}

int32_t wk__sym_find(const struct wk__tok *tk, const char *s, size_t len) {
    return tk->map.slots[strmap_slot(&tk->map, &tk->sym, s, len, hash_bytes(s, len))].id;
}

wk_status wk__sym_intern(struct wk__tok *tk, const char *s, size_t len, int32_t *id_out) {
    int32_t id = wk__sym_find(tk, s, len);
    if (id >= 0) {
        *id_out = id;
        return WK_STATUS_OK;
    }
    wk_status st = wk__strtab_add(&tk->sym, s, len, &id);
    if (st != WK_STATUS_OK) return st;
    st = strmap_put(&tk->map, &tk->sym, id);
    if (st != WK_STATUS_OK) return st;
    *id_out = id;
    return WK_STATUS_OK;
}

// --- loading -----------------------------------------------------------------

/* Read an optional special-token id key into *id (unchanged when absent). */
static wk_status read_token_id(const struct gguf_file *g, const char *key, int32_t n_tokens,
                               int32_t *id, char *err, size_t err_len) {
    const struct gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return WK_STATUS_OK;
    int64_t val;
    if (!gguf_get_i64(g, key, &val))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: '%s' has type %s, expected an integer",
                       key, gguf_type_name(kv->value.type));
    if (val == -1 || val == (int64_t)UINT32_MAX) {
        *id = -1;
        return WK_STATUS_OK;
    }
    if (val < 0 || val >= n_tokens)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: '%s' = %lld is outside the vocabulary (%d tokens)",
                       key, (long long)val, n_tokens);
    *id = (int32_t)val;
    return WK_STATUS_OK;
}

static wk_status read_bool(const struct gguf_file *g, const char *key, bool *out, char *err,
                           size_t err_len) {
    const struct gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return WK_STATUS_OK;
    if (!gguf_get_bool(g, key, out))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: '%s' has type %s, expected bool",
                       key, gguf_type_name(kv->value.type));
    return WK_STATUS_OK;
}

/* A per-token array: must be an ARRAY of n numbers. NULL when absent. */
static wk_status token_array(const struct gguf_file *g, const char *key, int32_t n,
                             const struct gguf_value **out, char *err, size_t err_len) {
    *out = NULL;
    const struct gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return WK_STATUS_OK;
    const struct gguf_value *a;
    if (!gguf_get_arr(g, key, &a))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: '%s' has type %s, expected an array",
                       key, gguf_type_name(kv->value.type));
    if (a->v.arr.type == GGUF_TYPE_STRING || a->v.arr.type == GGUF_TYPE_ARRAY ||
        a->v.arr.type == GGUF_TYPE_BOOL)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: '%s' holds %s, expected numbers", key,
                       gguf_type_name(a->v.arr.type));
    if (a->v.arr.n != (uint64_t)n)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: '%s' has %llu entries, expected %d (tokens)",
                       key, (unsigned long long)a->v.arr.n, n);
    *out = a;
    return WK_STATUS_OK;
}

/* Sort key of the special list: by first byte, then longest first, then id. */
struct special_key {
    unsigned char first;
    uint32_t len;
    int32_t id;
};

static int cmp_special(const void *pa, const void *pb) {
    const struct special_key *a = pa, *b = pb;
    if (a->first != b->first) return a->first < b->first ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

static bool is_special_attr(int a) {
    return a == WK_TOKEN_CONTROL || a == WK_TOKEN_USER_DEFINED || a == WK_TOKEN_UNKNOWN;
}

static wk_status build_specials(struct wk_vocab *v, char *err, size_t err_len) {
    struct wk__tok *tk = v->impl;
    size_t n = 0;
    for (int32_t i = 0; i < v->n_tokens; i++)
        if (is_special_attr(tk->attr[i]) && tk->sym.ent[i].len > 0) n++;
    struct special_key *keys = malloc((n ? n : 1) * sizeof *keys);
    tk->special_ids = malloc((n ? n : 1) * sizeof *tk->special_ids);
    if (!keys || !tk->special_ids) {
        free(keys);
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_vocab_load: special list (%zu)", n);
    }
    size_t k = 0;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        if (!is_special_attr(tk->attr[i]) || tk->sym.ent[i].len == 0) continue;
        keys[k].first = (unsigned char)tk->sym.buf[tk->sym.ent[i].off];
        keys[k].len = tk->sym.ent[i].len;
        keys[k].id = i;
        k++;
    }
    qsort(keys, n, sizeof *keys, cmp_special);
    size_t j = 0;
    for (int b = 0; b < 256; b++) {
        tk->special_start[b] = (uint32_t)j;
        while (j < n && keys[j].first == b) j++;
    }
    tk->special_start[256] = (uint32_t)n;
    for (size_t i = 0; i < n; i++) tk->special_ids[i] = keys[i].id;
    free(keys);
    return WK_STATUS_OK;
}

static bool contains_ci(struct gguf_str s, const char *needle) {
    size_t n = strlen(needle);
    for (uint64_t i = 0; i + n <= s.len; i++) {
        size_t k = 0;
        while (k < n && tolower((unsigned char)s.ptr[i + k]) == needle[k]) k++;
        if (k == n) return true;
    }
    return false;
}

/* Phi-3's rstrip special tokens (see the top of this file). */
static wk_status build_rstrip(const struct gguf_file *g, struct wk_vocab *v, char *err, size_t err_len) {
    struct wk__tok *tk = v->impl;
    struct gguf_str arch = {0, ""}, name = {0, ""};
    (void)gguf_get_str(g, "general.architecture", &arch);
    (void)gguf_get_str(g, "general.name", &name);
    const struct wk_arch_desc *d = wk_arch_find(arch.ptr, arch.len);
    if (!(d && d->special_rstrip) && !contains_ci(name, "phi-3") && !contains_ci(name, "phi3")) return WK_STATUS_OK;
    tk->rstrip = calloc((size_t)v->n_tokens, 1);
    if (!tk->rstrip) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_vocab_load: rstrip flags");
    for (uint32_t k = 0; k < tk->special_start[256]; k++) tk->rstrip[tk->special_ids[k]] = 1;
    int32_t id = wk_token_id(v, "</s>");
    if (id >= 0) tk->rstrip[id] = 1;
    static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
        if ((id = wk_token_id(v, keep[i])) >= 0) tk->rstrip[id] = 0;
    return WK_STATUS_OK;
}

/* End-of-generation marks: eos, eot, and llama.cpp's list of end-of-turn texts. */
static void build_eog(struct wk_vocab *v) {
    struct wk__tok *tk = v->impl;
    static const char *const eog_texts[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
        "<|eom_id|>", "<EOT>", "<|end_of_text|>",
    };
    /* eot from the texts when the key did not give one (as llama.cpp) */
    static const char *const eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<EOT>"};
    if (v->eot < 0) {
        for (size_t i = 0; i < sizeof eot_texts / sizeof *eot_texts && v->eot < 0; i++) {
            int32_t id = wk_token_id(v, eot_texts[i]);
            if (id >= 0 && tk->attr[id] != WK_TOKEN_NORMAL) v->eot = id;
        }
    }
    for (size_t i = 0; i < sizeof eog_texts / sizeof *eog_texts; i++) {
        int32_t id = wk_token_id(v, eog_texts[i]);
        if (id >= 0 && tk->attr[id] != WK_TOKEN_NORMAL) tk->eog[id] = 1;
    }
    if (v->eos >= 0) tk->eog[v->eos] = 1;
    if (v->eot >= 0) tk->eog[v->eot] = 1;
}

wk_status wk_vocab_load(const struct gguf_file *g, struct wk_vocab *v, char *err, size_t err_len) {
    wk_status st = WK_STATUS_OK;
    struct wk__tok *tk = NULL;
    memset(v, 0, sizeof *v);
    v->bos = v->eos = v->eot = v->unk = v->pad = -1;
    if (!g) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: no GGUF", __func__);

    /* tokenizer.ggml.model */
    struct gguf_str model;
    if (!gguf_find_kv(g, "tokenizer.ggml.model"))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: 'tokenizer.ggml.model' missing (no vocabulary)", __func__);
    if (!gguf_get_str(g, "tokenizer.ggml.model", &model))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: 'tokenizer.ggml.model' is not a string", __func__);
    if (gguf_str_eq(model, "llama")) {
        v->type = WK_VOCAB_SPM;
    } else if (gguf_str_eq(model, "gpt2")) {
        v->type = WK_VOCAB_BPE;
    } else {
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: unsupported tokenizer model '%.*s' (tokenizer.ggml.model)",
                       __func__, (int)(model.len > 64 ? 64 : model.len), model.ptr);
    }

    /* tokenizer.ggml.tokens */
    const struct gguf_value *tokens;
    if (!gguf_find_kv(g, "tokenizer.ggml.tokens"))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: 'tokenizer.ggml.tokens' missing", __func__);
    if (!gguf_get_arr(g, "tokenizer.ggml.tokens", &tokens) || tokens->v.arr.type != GGUF_TYPE_STRING)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: 'tokenizer.ggml.tokens' is not an array of strings",
                       __func__);
    if (tokens->v.arr.n == 0 || tokens->v.arr.n > (uint64_t)(INT32_MAX / 2))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: 'tokenizer.ggml.tokens' has %llu entries", __func__,
                       (unsigned long long)tokens->v.arr.n);
    int32_t n = (int32_t)tokens->v.arr.n;
    v->n_tokens = n;

    tk = calloc(1, sizeof *tk);
    if (!tk) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: tokenizer state", __func__);
    v->impl = tk;
    tk->attr = malloc((size_t)n);
    tk->score = calloc((size_t)n, sizeof *tk->score);
    tk->eog = calloc((size_t)n, 1);
    if (!tk->attr || !tk->score || !tk->eog) {
        st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: %d-token tables", __func__, n);
        goto fail;
    }
    if ((st = strmap_init(&tk->map, (uint32_t)n)) != WK_STATUS_OK) {
        wk_errf(err, err_len, st, "%s: token map", __func__);
        goto fail;
    }
    for (int32_t i = 0; i < n; i++) {
        struct gguf_str s = tokens->v.arr.strs[i];
        int32_t id;
        st = wk__strtab_add(&tk->sym, s.ptr, (size_t)s.len, &id);
        if (st == WK_STATUS_OK) st = strmap_put(&tk->map, &tk->sym, id);
        if (st != WK_STATUS_OK) {
            wk_errf(err, err_len, st, "%s: tokenizer.ggml.tokens[%d]: cannot store", __func__, i);
            goto fail;
        }
    }

    /* scores, token types */
    const struct gguf_value *arr;
    if ((st = token_array(g, "tokenizer.ggml.scores", n, &arr, err, err_len)) != WK_STATUS_OK) goto fail;
    if (arr) {
        for (int32_t i = 0; i < n; i++) {
            double d = 0;
            gguf_arr_f64(arr, (uint64_t)i, &d);
            tk->score[i] = (float)d;
        }
    }
    memset(tk->attr, WK_TOKEN_NORMAL, (size_t)n);
    if ((st = token_array(g, "tokenizer.ggml.token_type", n, &arr, err, err_len)) != WK_STATUS_OK) goto fail;
    if (arr) {
        for (int32_t i = 0; i < n; i++) {
            int64_t t = 0;
            if (!gguf_arr_i64(arr, (uint64_t)i, &t) || t < 0 || t > WK_TOKEN_BYTE) {
                st = wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                             "%s: tokenizer.ggml.token_type[%d] = %lld is not a token type (0..6)", __func__, i,
                             (long long)t);
                goto fail;
            }
            tk->attr[i] = t == 0 ? WK_TOKEN_NORMAL : (uint8_t)t; /* 0 = undefined: treat as normal */
        }
    }

    /* defaults, then keys */
    if (v->type == WK_VOCAB_SPM) {
        v->bos = n > 1 ? 1 : -1;
        v->eos = n > 2 ? 2 : -1;
        v->unk = 0;
        v->add_bos = true;
        v->add_space_prefix = true;
    }
    if (v->type == WK_VOCAB_BPE) {
        if ((st = wk__bpe_init(v, g, err, err_len)) != WK_STATUS_OK) goto fail;
    } else {
        if ((st = wk__spm_init(v, err, err_len)) != WK_STATUS_OK) goto fail;
    }
    static const struct {
        const char *key;
        size_t off;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(struct wk_vocab, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(struct wk_vocab, eos)},
        {"tokenizer.ggml.eot_token_id", offsetof(struct wk_vocab, eot)},
        {"tokenizer.ggml.unknown_token_id", offsetof(struct wk_vocab, unk)},
        {"tokenizer.ggml.padding_token_id", offsetof(struct wk_vocab, pad)},
    };
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
        st = read_token_id(g, ids[i].key, n, (int32_t *)((char *)v + ids[i].off), err, err_len);
        if (st != WK_STATUS_OK) goto fail;
    }
    if ((st = read_bool(g, "tokenizer.ggml.add_bos_token", &v->add_bos, err, err_len)) != WK_STATUS_OK) goto fail;
    if ((st = read_bool(g, "tokenizer.ggml.add_eos_token", &v->add_eos, err, err_len)) != WK_STATUS_OK) goto fail;
    if ((st = read_bool(g, "tokenizer.ggml.add_space_prefix", &v->add_space_prefix, err, err_len)) != WK_STATUS_OK)
        goto fail;
    /* a default add_bos without a BOS id is dropped; an explicit one is an error */
    if (v->add_bos && v->bos < 0) {
        if (gguf_find_kv(g, "tokenizer.ggml.add_bos_token")) {
            st = wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                         "%s: tokenizer.ggml.add_bos_token is set but there is no BOS id", __func__);
            goto fail;
        }
        v->add_bos = false;
    }
    if (v->add_eos && v->eos < 0) {
        st = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: tokenizer.ggml.add_eos_token is set but there is no EOS id",
                     __func__);
        goto fail;
    }

    /* chat template */
    const struct gguf_kv *ct = gguf_find_kv(g, "tokenizer.chat_template");
    if (ct) {
        struct gguf_str s;
        if (!gguf_get_str(g, "tokenizer.chat_template", &s)) {
            st = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "%s: 'tokenizer.chat_template' has type %s, expected string",
                         __func__, gguf_type_name(ct->value.type));
            goto fail;
        }
        v->chat_template = malloc((size_t)s.len + 1);
        if (!v->chat_template) {
            st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: chat template (%llu bytes)", __func__,
                         (unsigned long long)s.len);
            goto fail;
        }
        memcpy(v->chat_template, s.ptr, (size_t)s.len);
        v->chat_template[s.len] = '\0';
    }

    if ((st = build_specials(v, err, err_len)) != WK_STATUS_OK) goto fail;
    if ((st = build_rstrip(g, v, err, err_len)) != WK_STATUS_OK) goto fail;
    build_eog(v);
    return WK_STATUS_OK;

fail:
    wk_vocab_free(v);
    v->bos = v->eos = v->eot = v->unk = v->pad = -1;
    return st;
}

void wk_vocab_free(struct wk_vocab *v) {
    if (!v) return;
    struct wk__tok *tk = v->impl;
    if (tk) {
        wk__bpe_free(tk);
        wk__strtab_free(&tk->sym);
        wk__strtab_free(&tk->piece);
        free(tk->map.slots);
        free(tk->attr);
        free(tk->score);
        free(tk->eog);
        free(tk->special_ids);
        free(tk->rstrip);
        free(tk);
    }
    free(v->chat_template);
    memset(v, 0, sizeof *v);
}

// --- tokenize --------------------------------------------------------------------

/* The longest special token starting at text[0..len), or -1. */
static int32_t match_special(const struct wk__tok *tk, const char *text, size_t len) {
    unsigned char b = (unsigned char)text[0];
    for (uint32_t k = tk->special_start[b]; k < tk->special_start[b + 1]; k++) {
        int32_t id = tk->special_ids[k];
        size_t sl = tk->sym.ent[id].len;
        if (sl <= len && memcmp(tk->sym.buf + tk->sym.ent[id].off, text, sl) == 0) return id;
    }
    return -1;
}

static wk_status tokenize_fragment(const struct wk_vocab *v, const char *text, size_t len, struct wk__ids *out,
                                   char *err, size_t err_len) {
    if (v->type == WK_VOCAB_BPE) return wk__bpe_tokenize(v, text, len, out, err, err_len);
    return wk__spm_tokenize(v, text, len, v->add_space_prefix, out, err, err_len);
}

wk_status wk_tokenize(const struct wk_vocab *v, const char *text, size_t len, bool parse_special,
                      int32_t **out, size_t *n_out, char *err, size_t err_len) {
    if (!out || !n_out) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: no output", __func__);
    *out = NULL;
    *n_out = 0;
    if (!v || !v->impl) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: vocabulary not loaded", __func__);
    if (!text && len) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: NULL text", __func__);
    const struct wk__tok *tk = v->impl;
    struct wk__ids ids = {0};
    wk_status st = WK_STATUS_OK;

    /* Every raw-text fragment starts the text or follows a special token, so
     * for SPM each one gets llama.cpp's space prefix (is_prev_special). */
    if (!parse_special) {
        if (len) st = tokenize_fragment(v, text, len, &ids, err, err_len);
    } else {
        size_t raw = 0, i = 0;
        while (i < len && st == WK_STATUS_OK) {
            int32_t id = match_special(tk, text + i, len - i);
            if (id < 0) {
                i++;
                continue;
            }
            if (i > raw) st = tokenize_fragment(v, text + raw, i - raw, &ids, err, err_len);
            if (st == WK_STATUS_OK) st = wk__ids_push(&ids, id, err, err_len);
            i += tk->sym.ent[id].len;
            if (tk->rstrip && tk->rstrip[id])
                while (i < len && strchr(" \t\n\v\f\r", text[i]) && text[i]) i++;
            raw = i;
        }
        if (st == WK_STATUS_OK && raw < len) st = tokenize_fragment(v, text + raw, len - raw, &ids, err, err_len);
    }
    if (st != WK_STATUS_OK) {
        free(ids.v);
        return st;
    }
    if (!ids.v) {
        ids.v = malloc(sizeof *ids.v);
        if (!ids.v) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: empty result", __func__);
    }
    *out = ids.v;
    *n_out = ids.n;
    return WK_STATUS_OK;
}

// --- per-token lookups ------------------------------------------------------------

/* Pieces were decoded at load (bpe.c / spm.c). CONTROL, UNKNOWN and UNUSED
 * tokens detokenize to nothing unless render_special, then to their text;
 * USER_DEFINED tokens always to their text (as llama.cpp). */
const char *wk_token_piece(const struct wk_vocab *v, int32_t id, bool render_special, size_t *len) {
    size_t dummy;
    if (!len) len = &dummy;
    *len = 0;
    if (!v || !v->impl || id < 0 || id >= v->n_tokens) return "";
    const struct wk__tok *tk = v->impl;
    int a = tk->attr[id];
    if (a == WK_TOKEN_CONTROL || a == WK_TOKEN_UNKNOWN || a == WK_TOKEN_UNUSED) {
        if (!render_special) return "";
        return wk__strtab_get(&tk->sym, id, len);
    }
    return wk__strtab_get(&tk->piece, id, len);
}

const char *wk_token_text(const struct wk_vocab *v, int32_t id) {
    if (!v || !v->impl || id < 0 || id >= v->n_tokens) return "";
    const struct wk__tok *tk = v->impl;
    return tk->sym.buf + tk->sym.ent[id].off;
}

int32_t wk_token_id(const struct wk_vocab *v, const char *text) {
    if (!v || !v->impl || !text) return -1;
    const struct wk__tok *tk = v->impl;
    int32_t id = wk__sym_find(tk, text, strlen(text));
    return id < v->n_tokens ? id : -1; /* virtual BPE symbols are not tokens */
}

int wk_token_attr(const struct wk_vocab *v, int32_t id) {
    if (!v || !v->impl || id < 0 || id >= v->n_tokens) return 0;
    const struct wk__tok *tk = v->impl;
    return tk->attr[id];
}

bool wk_token_is_eog(const struct wk_vocab *v, int32_t id) {
    if (!v || !v->impl || id < 0 || id >= v->n_tokens) return false;
    const struct wk__tok *tk = v->impl;
    return tk->eog[id] != 0;
}

void wk_vocab_set_eog(struct wk_vocab *v, int32_t id) {
    if (!v || !v->impl || id < 0 || id >= v->n_tokens) return;
    struct wk__tok *tk = v->impl;
    tk->eog[id] = 1;
}
