/* bpe.c — byte-level BPE (tokenizer.ggml.model = "gpt2").
 *
 *   text ─▶ pre-tokenizer regexes (PCRE2, UTF + UCP) ─▶ words
 *        ─▶ each byte of a word becomes the symbol of its GPT-2 unicode char
 *        ─▶ merge adjacent symbols, lowest merge rank first (ties: leftmost)
 *        ─▶ one id per final symbol
 *
 * GPT-2's byte <-> unicode map: the printable bytes '!'..'~', 0xA1..0xAC and
 * 0xAE..0xFF stand for themselves (as code points); the other 68 bytes get
 * code points 256, 257, ... in byte order (so ' ' is U+0120 'Ġ').
 *
 * Pre-tokenizers (tokenizer.ggml.pre). Several regexes are applied in turn:
 * each splits every piece left by the previous one into its matches and the
 * text between them (HF's "Isolated" split), as llama.cpp does. A regex only
 * sees its own piece, so look-aheads stop at the piece's end.
 *   qwen2, deepseek-r1-qwen          Qwen2's tokenizer.json regex
 *   llama-bpe, llama3, llama-v3      Llama 3's (digits in runs of 1..3);
 *                                    whole-word vocab hits skip merging
 *   smollm, starcoder, refact        single digits, then GPT-2's regex
 *   gpt-2, phi-2                     GPT-2's regex
 *   default (or key absent)          llama.cpp's default list
 * Text that is not valid UTF-8 never matches (PCRE2_MATCH_INVALID_UTF); such
 * bytes end up in the pieces between matches and become byte tokens.
 */
#include <stdlib.h>
#include <string.h>

#include "loader/tokenizer-impl.h"

// --- byte <-> unicode ---------------------------------------------------------

/* cp[b] = the code point standing for byte b. */
static void byte_to_cp_table(uint32_t cp[256]) {
    uint32_t next = 256;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        cp[b] = keep ? (uint32_t)b : next++;
    }
}

/* Decode one UTF-8 code point from s[0..n); returns its length (0 if invalid). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    size_t len = wk__utf8_len(s[0]);
    if (len > n) return 0;
    if (len == 1) {
        if (s[0] >= 0x80) return 0;
        *cp = s[0];
        return 1;
    }
    uint32_t c = s[0] & (0x7F >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    *cp = c;
    return len;
}

// --- merge map ----------------------------------------------------------------

static uint32_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static wk_status mergemap_init(struct wk__mergemap *m, uint64_t n) {
    uint32_t cap = 1024;
    while ((uint64_t)cap * 3 < 4 * n && cap < (1u << 30)) cap *= 2; /* load <= 3/4 */
    m->slots = malloc((size_t)cap * sizeof *m->slots);
    if (!m->slots) return WK_STATUS_OOM_HOST;
    for (uint32_t i = 0; i < cap; i++) m->slots[i].key = UINT64_MAX;
    m->cap = cap;
    m->n = 0;
    return WK_STATUS_OK;
}

/* Insert unless present (the first, lowest-ranked rule for a pair wins). */
static void mergemap_put(struct wk__mergemap *m, int32_t left, int32_t right, int32_t rank, int32_t result) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->slots[i].key == key) return;
        if (m->slots[i].key == UINT64_MAX) {
            m->slots[i].key = key;
            m->slots[i].rank = rank;
            m->slots[i].result = result;
            m->n++;
            return;
        }
    }
}

static const struct wk__merge_slot *mergemap_get(const struct wk__mergemap *m, int32_t left, int32_t right) {
    uint64_t key = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->slots[i].key == key) return &m->slots[i];
        if (m->slots[i].key == UINT64_MAX) return NULL;
    }
}

// --- pre-tokenizer table ------------------------------------------------------------

#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static const struct {
    const char *names[4]; /* NULL-terminated aliases */
    const char *re[WK__TOK_MAX_REGEX];
    bool ignore_merges, add_bos;
} k_pre[] = {
    {{"qwen2", "deepseek-r1-qwen", NULL},
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     false, false},
    {{"llama-bpe", "llama3", "llama-v3", NULL},
     {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
      "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     true, true},
    {{"smollm", "starcoder", "refact", NULL}, {"\\p{N}", RE_GPT2}, false, false},
    {{"gpt-2", "phi-2", NULL}, {RE_GPT2}, false, false},
    {{"default", NULL},
     {"[\\p{P}\\$\\+<=>\\^~\\|]+", RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"},
     false, false},
};

// --- init -----------------------------------------------------------------------------

void wk__bpe_free(struct wk__tok *tk) {
    for (int i = 0; i < WK__TOK_MAX_REGEX; i++) {
        if (tk->re[i]) pcre2_code_free(tk->re[i]);
        tk->re[i] = NULL;
    }
    tk->n_re = 0;
    free(tk->merges.slots);
    tk->merges.slots = NULL;
}

static wk_status choose_pre(struct wk_vocab *v, const struct gguf_file *g, char *err, size_t err_len) {
    struct wk__tok *tk = v->impl;
    struct gguf_str pre = {sizeof "default" - 1, "default"};
    const struct gguf_kv *kv = gguf_find_kv(g, "tokenizer.ggml.pre");
    if (kv && !gguf_get_str(g, "tokenizer.ggml.pre", &pre))
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: 'tokenizer.ggml.pre' has type %s, expected string",
                       gguf_type_name(kv->value.type));
    int which = -1;
    for (size_t i = 0; i < sizeof k_pre / sizeof *k_pre && which < 0; i++)
        for (int a = 0; k_pre[i].names[a] && which < 0; a++)
            if (gguf_str_eq(pre, k_pre[i].names[a])) which = (int)i;
    if (which < 0)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: unsupported pre-tokenizer '%.*s' (tokenizer.ggml.pre)",
                       (int)(pre.len > 64 ? 64 : pre.len), pre.ptr);
    memcpy(v->pre, pre.ptr, (size_t)pre.len); /* every accepted name fits */
    v->pre[pre.len] = '\0';
    tk->ignore_merges = k_pre[which].ignore_merges;
    v->add_bos = k_pre[which].add_bos;

    for (int r = 0; r < WK__TOK_MAX_REGEX && k_pre[which].re[r]; r++) {
        int ec;
        PCRE2_SIZE eoff;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)k_pre[which].re[r], PCRE2_ZERO_TERMINATED,
                                       PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &ec, &eoff, NULL);
        if (!re) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(ec, msg, sizeof msg);
            return wk_errf(err, err_len, WK_STATUS_INTERNAL, "wk_vocab_load: pre-tokenizer '%s' regex %d: %s at %zu",
                           v->pre, r, (const char *)msg, (size_t)eoff);
        }
        (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreter when JIT is unavailable */
        tk->re[r] = re;
        tk->n_re = r + 1;
    }
    return WK_STATUS_OK;
}

/* Detokenized bytes of a byte-level token text: each char back to its byte;
 * chars outside the map are kept as UTF-8. out must hold len bytes. */
static size_t decode_byte_level(const int16_t *cp_to_byte, const char *text, size_t len, char *out) {
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = utf8_decode(s + i, len - i, &cp);
        if (l == 0) {
            out[o++] = (char)s[i++];
            continue;
        }
        if (cp < 512 && cp_to_byte[cp] >= 0) {
            out[o++] = (char)cp_to_byte[cp];
        } else {
            memcpy(out + o, s + i, l);
            o += l;
        }
        i += l;
    }
    return o;
}

wk_status wk__bpe_init(struct wk_vocab *v, const struct gguf_file *g, char *err, size_t err_len) {
    struct wk__tok *tk = v->impl;
    wk_status st;
    char *buf = NULL;
    if ((st = choose_pre(v, g, err, err_len)) != WK_STATUS_OK) return st;

    /* byte map: the symbol for each byte's char (virtual when not a token) */
    uint32_t cp[256];
    int16_t cp_to_byte[512];
    byte_to_cp_table(cp);
    for (int i = 0; i < 512; i++) cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        char u[4];
        size_t l = wk__utf8_encode(cp[b], u);
        cp_to_byte[cp[b]] = (int16_t)b;
        if ((st = wk__sym_intern(tk, u, l, &tk->byte_sym[b])) != WK_STATUS_OK)
            return wk_errf(err, err_len, st, "wk_vocab_load: byte symbols");
    }

    /* merges: "left right" -> rank (index) */
    const struct gguf_kv *kv = gguf_find_kv(g, "tokenizer.ggml.merges");
    const struct gguf_value *m;
    if (!kv) return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: 'tokenizer.ggml.merges' missing (gpt2 vocab)");
    if (!gguf_get_arr(g, "tokenizer.ggml.merges", &m) || m->v.arr.type != GGUF_TYPE_STRING)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: 'tokenizer.ggml.merges' is not an array of strings");
    if (m->v.arr.n > (uint64_t)INT32_MAX / 4)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: 'tokenizer.ggml.merges' has %llu entries",
                       (unsigned long long)m->v.arr.n);
    if ((st = mergemap_init(&tk->merges, m->v.arr.n)) != WK_STATUS_OK)
        return wk_errf(err, err_len, st, "wk_vocab_load: merge map (%llu)", (unsigned long long)m->v.arr.n);
    size_t buf_cap = 0;
    for (uint64_t i = 0; i < m->v.arr.n; i++) {
        struct gguf_str s = m->v.arr.strs[i];
        const char *sp = s.len > 1 ? memchr(s.ptr + 1, ' ', (size_t)s.len - 1) : NULL;
        if (!sp) {
            st = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: tokenizer.ggml.merges[%llu] = '%.*s' is not 'left right'",
                         (unsigned long long)i, (int)(s.len > 64 ? 64 : s.len), s.ptr);
            goto done;
        }
        size_t ll = (size_t)(sp - s.ptr), rl = (size_t)s.len - ll - 1;
        if (rl == 0) {
            st = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_vocab_load: tokenizer.ggml.merges[%llu] = '%.*s' has an empty right part",
                         (unsigned long long)i, (int)(s.len > 64 ? 64 : s.len), s.ptr);
            goto done;
        }
        if (ll + rl > buf_cap) {
            buf_cap = (ll + rl) * 2 + 64;
            char *nb = realloc(buf, buf_cap);
            if (!nb) {
                st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_vocab_load: merge buffer");
                goto done;
            }
            buf = nb;
        }
        memcpy(buf, s.ptr, ll);
        memcpy(buf + ll, sp + 1, rl);
        int32_t left, right, result;
        if ((st = wk__sym_intern(tk, s.ptr, ll, &left)) != WK_STATUS_OK ||
            (st = wk__sym_intern(tk, sp + 1, rl, &right)) != WK_STATUS_OK ||
            (st = wk__sym_intern(tk, buf, ll + rl, &result)) != WK_STATUS_OK) {
            wk_errf(err, err_len, st, "wk_vocab_load: tokenizer.ggml.merges[%llu]: cannot store", (unsigned long long)i);
            goto done;
        }
        mergemap_put(&tk->merges, left, right, (int32_t)i, result);
    }

    /* pieces: NORMAL (and BYTE) decode byte-level; others keep their text */
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t len;
        const char *t = wk__strtab_get(&tk->sym, i, &len);
        if (len > buf_cap) {
            buf_cap = len * 2 + 64;
            char *nb = realloc(buf, buf_cap);
            if (!nb) {
                st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_vocab_load: piece buffer");
                goto done;
            }
            buf = nb;
        }
        size_t pl = len;
        int a = tk->attr[i];
        if (a == WK_TOKEN_NORMAL || a == WK_TOKEN_BYTE) {
            pl = decode_byte_level(cp_to_byte, t, len, buf);
        } else {
            if (len) memcpy(buf, t, len);
        }
        int32_t id;
        if ((st = wk__strtab_add(&tk->piece, buf, pl, &id)) != WK_STATUS_OK) {
            wk_errf(err, err_len, st, "wk_vocab_load: pieces");
            goto done;
        }
    }
    st = WK_STATUS_OK;
done:
    free(buf);
    return st;
}

// --- tokenize -------------------------------------------------------------------------

struct sym {
    int32_t id;   /* symbol id */
    int32_t prev; /* index, -1 = none */
    int32_t next;
    uint32_t start, len; /* bytes of the word it covers; len 0 = merged away */
};

struct bigram {
    int32_t rank;
    int32_t left, right; /* symbol indices */
    int32_t left_id, right_id, result;
};

/* Scratch reused across the words of one call. */
struct bpe_work {
    struct sym *syms;
    struct bigram *heap;
    size_t cap_syms, cap_heap, n_heap;
    char *mapped; /* a word in byte-level unicode (ignore_merges lookups) */
    size_t cap_mapped;
};

static bool bigram_less(const struct bigram *a, const struct bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static wk_status heap_push(struct bpe_work *w, struct bigram b) {
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap ? w->cap_heap * 2 : 256;
        struct bigram *nh = realloc(w->heap, cap * sizeof *nh);
        if (!nh) return WK_STATUS_OOM_HOST;
        w->heap = nh;
        w->cap_heap = cap;
    }
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bigram_less(&b, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = b;
    return WK_STATUS_OK;
}

static struct bigram heap_pop(struct bpe_work *w) {
    struct bigram top = w->heap[0];
    struct bigram last = w->heap[--w->n_heap];
    size_t n = w->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_less(&w->heap[c + 1], &w->heap[c])) c++;
        if (!bigram_less(&w->heap[c], &last)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

static wk_status try_bigram(const struct wk__tok *tk, struct bpe_work *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return WK_STATUS_OK;
    const struct wk__merge_slot *m = mergemap_get(&tk->merges, w->syms[l].id, w->syms[r].id);
    if (!m) return WK_STATUS_OK;
    struct bigram b = {m->rank, l, r, w->syms[l].id, w->syms[r].id, m->result};
    return heap_push(w, b);
}

/* Emit a final symbol: its id when it is a token, else its bytes' tokens. */
static wk_status emit_symbol(const struct wk_vocab *v, const unsigned char *word, const struct sym *s,
                             struct wk__ids *out, char *err, size_t err_len) {
    const struct wk__tok *tk = v->impl;
    if (s->id < v->n_tokens) return wk__ids_push(out, s->id, err, err_len);
    for (uint32_t k = 0; k < s->len; k++) {
        int32_t b = tk->byte_sym[word[s->start + k]];
        int32_t id = b < v->n_tokens ? b : v->unk;
        if (id < 0) continue; /* no token for this byte at all: dropped, as llama.cpp */
        wk_status st = wk__ids_push(out, id, err, err_len);
        if (st != WK_STATUS_OK) return st;
    }
    return WK_STATUS_OK;
}

static wk_status bpe_word(const struct wk_vocab *v, struct bpe_work *w, const unsigned char *word, size_t n,
                          struct wk__ids *out, char *err, size_t err_len) {
    const struct wk__tok *tk = v->impl;
    wk_status st;
    if (n == 0) return WK_STATUS_OK;

    if (tk->ignore_merges && n > 1) {
        if (w->cap_mapped < 2 * n) {
            char *nm = realloc(w->mapped, 2 * n);
            if (!nm) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_tokenize: word buffer");
            w->mapped = nm;
            w->cap_mapped = 2 * n;
        }
        size_t ml = 0;
        for (size_t i = 0; i < n; i++) {
            size_t l;
            const char *u = wk__strtab_get(&tk->sym, tk->byte_sym[word[i]], &l);
            memcpy(w->mapped + ml, u, l);
            ml += l;
        }
        int32_t id = wk__sym_find(tk, w->mapped, ml);
        if (id >= 0 && id < v->n_tokens) return wk__ids_push(out, id, err, err_len);
    }

    if (w->cap_syms < n) {
        struct sym *ns = realloc(w->syms, n * sizeof *ns);
        if (!ns) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_tokenize: %zu symbols", n);
        w->syms = ns;
        w->cap_syms = n;
    }
    for (size_t i = 0; i < n; i++) {
        w->syms[i].id = tk->byte_sym[word[i]];
        w->syms[i].prev = (int32_t)i - 1;
        w->syms[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
        w->syms[i].start = (uint32_t)i;
        w->syms[i].len = 1;
    }
    w->n_heap = 0;
    for (size_t i = 1; i < n; i++)
        if ((st = try_bigram(tk, w, (int32_t)i - 1, (int32_t)i)) != WK_STATUS_OK) goto oom;
    while (w->n_heap) {
        struct bigram b = heap_pop(w);
        struct sym *l = &w->syms[b.left], *r = &w->syms[b.right];
        if (l->len == 0 || r->len == 0 || l->next != b.right || l->id != b.left_id || r->id != b.right_id)
            continue; /* stale */
        l->id = b.result;
        l->len += r->len;
        r->len = 0;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = b.left;
        if ((st = try_bigram(tk, w, l->prev, b.left)) != WK_STATUS_OK) goto oom;
        if ((st = try_bigram(tk, w, b.left, l->next)) != WK_STATUS_OK) goto oom;
    }
    for (int32_t i = 0; i >= 0; i = w->syms[i].next)
        if ((st = emit_symbol(v, word, &w->syms[i], out, err, err_len)) != WK_STATUS_OK) return st;
    return WK_STATUS_OK;
oom:
    return wk_errf(err, err_len, st, "wk_tokenize: merge queue");
}

/* Split text[start, end) with regex `level` and recurse; words at the last level. */
static wk_status split(const struct wk_vocab *v, struct bpe_work *w, pcre2_match_data **md, int level,
                       const char *text, size_t len, struct wk__ids *out, char *err, size_t err_len) {
    const struct wk__tok *tk = v->impl;
    if (len == 0) return WK_STATUS_OK;
    if (level == tk->n_re) return bpe_word(v, w, (const unsigned char *)text, len, out, err, err_len);
    wk_status st;
    size_t pos = 0, gap = 0;
    uint32_t opts = 0;
    while (pos < len) {
        int rc = pcre2_match(tk->re[level], (PCRE2_SPTR)text, len, pos, opts, md[level], NULL);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(opts & PCRE2_NO_JIT)) {
            opts |= PCRE2_NO_JIT; /* retry in the interpreter (heap-based) */
            continue;
        }
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[128];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return wk_errf(err, err_len, WK_STATUS_INTERNAL, "wk_tokenize: pre-tokenizer regex %d: %s", level,
                           (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md[level]);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) { /* empty match: cannot happen with our patterns; step on */
            pos = ms + 1;
            continue;
        }
        if (ms > gap && (st = split(v, w, md, level + 1, text + gap, ms - gap, out, err, err_len)) != WK_STATUS_OK)
            return st;
        if ((st = split(v, w, md, level + 1, text + ms, me - ms, out, err, err_len)) != WK_STATUS_OK) return st;
        pos = gap = me;
    }
    if (len > gap) return split(v, w, md, level + 1, text + gap, len - gap, out, err, err_len);
    return WK_STATUS_OK;
}

wk_status wk__bpe_tokenize(const struct wk_vocab *v, const char *text, size_t len, struct wk__ids *out,
                           char *err, size_t err_len) {
    const struct wk__tok *tk = v->impl;
    pcre2_match_data *md[WK__TOK_MAX_REGEX] = {0};
    struct bpe_work w = {0};
    wk_status st = WK_STATUS_OK;
    for (int r = 0; r < tk->n_re; r++) {
        md[r] = pcre2_match_data_create_from_pattern(tk->re[r], NULL);
        if (!md[r]) {
            st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: match data", __func__);
            goto done;
        }
    }
    st = split(v, &w, md, 0, text, len, out, err, err_len);
done:
    for (int r = 0; r < tk->n_re; r++) pcre2_match_data_free(md[r]);
    free(w.syms);
    free(w.heap);
    free(w.mapped);
    return st;
}
