/* spm.c — SentencePiece-style tokenizer (tokenizer.ggml.model = "llama"), as
 * llama.cpp's llm_tokenizer_spm does it:
 *
 *   text ─▶ (optional "▁" prefix) + every ' ' replaced by "▁" (U+2581)
 *        ─▶ one symbol per UTF-8 character
 *        ─▶ repeatedly merge the adjacent pair whose concatenation is a token
 *           with the highest score (ties: the leftmost pair)
 *        ─▶ each final symbol: its token, or byte fallback <0xNN> per byte
 *           (one unk when the vocabulary lacks those byte tokens)
 *
 * Unlike llama.cpp, CONTROL and UNKNOWN tokens ("<s>", "<unk>") are not merge
 * candidates, as in SentencePiece itself: plain text never produces them.
 * A merged symbol is always a token, so llama.cpp's "resegment" step reduces
 * to the byte fallback of single characters.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/tokenizer-impl.h"

static const char k_space[] = "\xe2\x96\x81"; /* ▁ */

/* "<0xNN>" -> 0..255, or -1. */
static int parse_byte_token(const char *t, size_t len) {
    if (len != 6 || memcmp(t, "<0x", 3) != 0 || t[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = t[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                                : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

wk_status wk__spm_init(struct wk_vocab *v, char *err, size_t err_len) {
    struct wk__tok *tk = v->impl;
    char name[8];
    for (int b = 0; b < 256; b++) {
        snprintf(name, sizeof name, "<0x%02X>", b);
        int32_t id = wk__sym_find(tk, name, 6);
        tk->byte_tok[b] = id >= 0 && id < v->n_tokens ? id : -1;
    }
    v->pre[0] = '\0';

    /* pieces: NORMAL "▁" -> ' '; BYTE "<0xNN>" -> the byte; others verbatim */
    char *buf = NULL;
    size_t cap = 0;
    wk_status st = WK_STATUS_OK;
    for (int32_t i = 0; i < v->n_tokens; i++) {
        size_t len, pl = 0;
        const char *t = wk__strtab_get(&tk->sym, i, &len);
        if (len + 1 > cap) {
            cap = len * 2 + 64;
            char *nb = realloc(buf, cap);
            if (!nb) {
                st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_vocab_load: piece buffer");
                goto done;
            }
            buf = nb;
        }
        int a = tk->attr[i];
        int byte = a == WK_TOKEN_BYTE ? parse_byte_token(t, len) : -1;
        if (byte >= 0) {
            buf[pl++] = (char)byte;
        } else if (a == WK_TOKEN_NORMAL || a == WK_TOKEN_BYTE) {
            for (size_t k = 0; k < len;) {
                if (k + 3 <= len && memcmp(t + k, k_space, 3) == 0) {
                    buf[pl++] = ' ';
                    k += 3;
                } else {
                    buf[pl++] = t[k++];
                }
            }
        } else {
            memcpy(buf, t, len);
            pl = len;
        }
        int32_t id;
        if ((st = wk__strtab_add(&tk->piece, buf, pl, &id)) != WK_STATUS_OK) {
            wk_errf(err, err_len, st, "wk_vocab_load: pieces");
            goto done;
        }
    }
done:
    free(buf);
    return st;
}

/* Bytes of the valid UTF-8 sequence at s[0..n), or 1 when it is not one. */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    size_t l = c < 0x80 ? 1 : c < 0xC2 ? 0 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : c < 0xF5 ? 4 : 0;
    if (l == 0 || l > n) return 1;
    for (size_t i = 1; i < l; i++)
        if ((s[i] & 0xC0) != 0x80) return 1;
    return l;
}

struct spm_sym {
    uint32_t start, n; /* bytes in the escaped text; n 0 = merged away */
    int32_t prev, next;
};

struct spm_bigram {
    float score;
    int32_t left, right;
    uint32_t size; /* bytes of the merged text when queued */
};

struct spm_heap {
    struct spm_bigram *v;
    size_t n, cap;
};

/* Higher score first; ties: leftmost. */
static bool spm_before(const struct spm_bigram *a, const struct spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static wk_status spm_push(struct spm_heap *h, struct spm_bigram b) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        struct spm_bigram *nv = realloc(h->v, cap * sizeof *nv);
        if (!nv) return WK_STATUS_OOM_HOST;
        h->v = nv;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!spm_before(&b, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return WK_STATUS_OK;
}

static struct spm_bigram spm_pop(struct spm_heap *h) {
    struct spm_bigram top = h->v[0], last = h->v[--h->n];
    size_t n = h->n, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && spm_before(&h->v[c + 1], &h->v[c])) c++;
        if (!spm_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
    return top;
}

/* A token usable by merging / final lookup: not CONTROL or UNKNOWN. */
static int32_t spm_lookup(const struct wk_vocab *v, const char *s, size_t len) {
    const struct wk__tok *tk = v->impl;
    int32_t id = wk__sym_find(tk, s, len);
    if (id < 0 || id >= v->n_tokens) return -1;
    if (tk->attr[id] == WK_TOKEN_CONTROL || tk->attr[id] == WK_TOKEN_UNKNOWN) return -1;
    return id;
}

static wk_status spm_try(const struct wk_vocab *v, const char *text, const struct spm_sym *syms,
                         struct spm_heap *h, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return WK_STATUS_OK;
    uint32_t size = syms[l].n + syms[r].n;
    int32_t id = spm_lookup(v, text + syms[l].start, size);
    if (id < 0) return WK_STATUS_OK;
    const struct wk__tok *tk = v->impl;
    struct spm_bigram b = {tk->score[id], l, r, size};
    return spm_push(h, b);
}

wk_status wk__spm_tokenize(const struct wk_vocab *v, const char *text, size_t len, bool add_prefix,
                           struct wk__ids *out, char *err, size_t err_len) {
    const struct wk__tok *tk = v->impl;
    wk_status st = WK_STATUS_OK;
    char *esc = NULL;
    struct spm_sym *syms = NULL;
    struct spm_heap heap = {0};
    if (len == 0) return WK_STATUS_OK; /* llama.cpp never tokenizes an empty fragment */
    if (len > (UINT32_MAX - 3) / 3) return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "wk_tokenize: text of %zu bytes", len);

    /* escape: ' ' -> ▁ (3 bytes), optional leading ▁ */
    esc = malloc(3 * len + 3);
    if (!esc) {
        st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_tokenize: %zu bytes", 3 * len + 3);
        goto done;
    }
    size_t n = 0;
    if (add_prefix) {
        memcpy(esc, k_space, 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + n, k_space, 3);
            n += 3;
        } else {
            esc[n++] = text[i];
        }
    }

    /* one symbol per UTF-8 char; a byte that does not start a complete
     * sequence is a symbol of its own (llama.cpp would let an invalid lead
     * swallow the next bytes, ▁ included, which breaks detokenization) */
    syms = malloc(n * sizeof *syms);
    if (!syms) {
        st = wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_tokenize: %zu symbols", n);
        goto done;
    }
    int32_t ns = 0;
    for (size_t off = 0; off < n;) {
        size_t l = utf8_char_len((const unsigned char *)esc + off, n - off);
        syms[ns].start = (uint32_t)off;
        syms[ns].n = (uint32_t)l;
        syms[ns].prev = ns - 1;
        off += l;
        syms[ns].next = off == n ? -1 : ns + 1;
        ns++;
    }

    for (int32_t i = 1; i < ns; i++)
        if ((st = spm_try(v, esc, syms, &heap, i - 1, i)) != WK_STATUS_OK) goto oom;
    while (heap.n) {
        struct spm_bigram b = spm_pop(&heap);
        struct spm_sym *l = &syms[b.left], *r = &syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) syms[r->next].prev = b.left;
        if ((st = spm_try(v, esc, syms, &heap, l->prev, b.left)) != WK_STATUS_OK) goto oom;
        if ((st = spm_try(v, esc, syms, &heap, b.left, l->next)) != WK_STATUS_OK) goto oom;
    }

    for (int32_t i = ns ? 0 : -1; i >= 0; i = syms[i].next) {
        const struct spm_sym *s = &syms[i];
        int32_t id = spm_lookup(v, esc + s->start, s->n);
        if (id >= 0) {
            if ((st = wk__ids_push(out, id, err, err_len)) != WK_STATUS_OK) goto done;
            continue;
        }
        bool have_bytes = true;
        for (uint32_t k = 0; k < s->n; k++) have_bytes = have_bytes && tk->byte_tok[(unsigned char)esc[s->start + k]] >= 0;
        if (!have_bytes) { /* no byte fallback: one unk for the character (none: dropped) */
            if (v->unk >= 0 && (st = wk__ids_push(out, v->unk, err, err_len)) != WK_STATUS_OK) goto done;
            continue;
        }
        for (uint32_t k = 0; k < s->n; k++) {
            int32_t bt = tk->byte_tok[(unsigned char)esc[s->start + k]];
            if ((st = wk__ids_push(out, bt, err, err_len)) != WK_STATUS_OK) goto done;
        }
    }
    goto done;
oom:
    st = wk_errf(err, err_len, st, "wk_tokenize: merge queue");
done:
    free(esc);
    free(syms);
    free(heap.v);
    return st;
}
