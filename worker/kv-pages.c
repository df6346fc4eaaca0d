/* kv-pages.c — the KV page table: refcounts, the empty list, the LRU list of
 * cached prefix pages and the prefix hash (see kv-pages.h).
 *
 * Data structures (n = pages):
 *   ref[n]                 references held by sequences
 *   key[n], tok[n][16]     registered prefix key and tokens (registered[n])
 *   lru prev/next[n]       doubly linked list of cached pages (head = oldest)
 *   empty[]                stack of empty pages
 *   buckets[2n]            open hash (linear probing) key -> page, for
 *                          registered pages; deletion by backward shift
 */
#include "worker/kv-pages.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

#define PAGE WK_KV_PAGE_TOKENS

struct wk_kv_pages {
    int n;
    int32_t *ref;
    uint64_t *key;
    int32_t *tok;       /* (n, PAGE) */
    bool *registered;
    int32_t *prev, *next; /* LRU links of cached pages; -1 = none */
    int32_t lru_head, lru_tail;
    int n_cached;
    int32_t *empty;
    int n_empty;
    int32_t *bucket;    /* (n_buckets) page id or -1 */
    int n_buckets;      /* a power of two >= 2n */
};

uint64_t wk_kv_page_key(uint64_t parent, const int32_t *t) {
    uint64_t h = wk_rng_mix64(parent ^ 0x6b76706167657321ull);
    for (int i = 0; i < PAGE; i++) h = wk_rng_mix64(h ^ (uint32_t)t[i]);
    return h ? h : 1; /* 0 is "no parent" */
}

struct wk_kv_pages *wk_kv_pages_create(int n_pages) {
    struct wk_kv_pages *kv = calloc(1, sizeof *kv);
    if (!kv || n_pages < 1) {
        free(kv);
        return NULL;
    }
    kv->n = n_pages;
    kv->n_buckets = 1;
    while (kv->n_buckets < 2 * n_pages) kv->n_buckets <<= 1;
    kv->ref = calloc((size_t)n_pages, sizeof *kv->ref);
    kv->key = calloc((size_t)n_pages, sizeof *kv->key);
    kv->tok = calloc((size_t)n_pages * PAGE, sizeof *kv->tok);
    kv->registered = calloc((size_t)n_pages, sizeof *kv->registered);
    kv->prev = malloc((size_t)n_pages * sizeof *kv->prev);
    kv->next = malloc((size_t)n_pages * sizeof *kv->next);
    kv->empty = malloc((size_t)n_pages * sizeof *kv->empty);
    kv->bucket = malloc((size_t)kv->n_buckets * sizeof *kv->bucket);
    if (!kv->ref || !kv->key || !kv->tok || !kv->registered || !kv->prev || !kv->next || !kv->empty || !kv->bucket) {
        wk_kv_pages_free(kv);
        return NULL;
    }
    for (int i = 0; i < kv->n_buckets; i++) kv->bucket[i] = -1;
    /* pop order 0, 1, 2, ...: the stack holds them reversed */
    for (int i = 0; i < n_pages; i++) kv->empty[i] = n_pages - 1 - i;
    kv->n_empty = n_pages;
    kv->lru_head = kv->lru_tail = -1;
    return kv;
}

void wk_kv_pages_free(struct wk_kv_pages *kv) {
    if (!kv) return;
    free(kv->ref), free(kv->key), free(kv->tok), free(kv->registered);
    free(kv->prev), free(kv->next), free(kv->empty), free(kv->bucket);
    free(kv);
}

// --- the prefix hash ----------------------------------------------------------

static int slot_of(const struct wk_kv_pages *kv, uint64_t key) { return (int)(key & (uint64_t)(kv->n_buckets - 1)); }

static int32_t hash_find(const struct wk_kv_pages *kv, uint64_t key, const int32_t *t) {
    for (int i = slot_of(kv, key);; i = (i + 1) & (kv->n_buckets - 1)) {
        int32_t p = kv->bucket[i];
        if (p < 0) return -1;
        if (kv->key[p] == key && memcmp(kv->tok + (size_t)p * PAGE, t, PAGE * sizeof *t) == 0) return p;
    }
}

static void hash_insert(struct wk_kv_pages *kv, int32_t page) {
    int i = slot_of(kv, kv->key[page]);
    while (kv->bucket[i] >= 0) i = (i + 1) & (kv->n_buckets - 1);
    kv->bucket[i] = page;
}

/* Remove page from its probe chain, shifting later entries back so every
 * remaining entry stays reachable from its home slot. */
static void hash_remove(struct wk_kv_pages *kv, int32_t page) {
    const int mask = kv->n_buckets - 1;
    int i = slot_of(kv, kv->key[page]);
    while (kv->bucket[i] != page) i = (i + 1) & mask;
    kv->bucket[i] = -1;
    for (int j = (i + 1) & mask; kv->bucket[j] >= 0; j = (j + 1) & mask) {
        int32_t q = kv->bucket[j];
        int home = slot_of(kv, kv->key[q]);
        /* q may move to the hole at i when its home is not in (i, j] cyclically */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            kv->bucket[i] = q;
            kv->bucket[j] = -1;
            i = j;
        }
    }
}

// --- the LRU list of cached pages --------------------------------------------------

static void lru_unlink(struct wk_kv_pages *kv, int32_t p) {
    if (kv->prev[p] >= 0) kv->next[kv->prev[p]] = kv->next[p];
    else kv->lru_head = kv->next[p];
    if (kv->next[p] >= 0) kv->prev[kv->next[p]] = kv->prev[p];
    else kv->lru_tail = kv->prev[p];
    kv->n_cached--;
}

static void lru_push_tail(struct wk_kv_pages *kv, int32_t p) {
    kv->prev[p] = kv->lru_tail;
    kv->next[p] = -1;
    if (kv->lru_tail >= 0) kv->next[kv->lru_tail] = p;
    else kv->lru_head = p;
    kv->lru_tail = p;
    kv->n_cached++;
}

// --- the interface -------------------------------------------------------------------

int wk_kv_pages_match(struct wk_kv_pages *kv, const int32_t *tokens, int n, int max_pages, int32_t *pages_out) {
    uint64_t key = 0;
    int k = 0;
    for (; k < max_pages && (k + 1) * PAGE <= n; k++) {
        const int32_t *t = tokens + (size_t)k * PAGE;
        key = wk_kv_page_key(key, t);
        int32_t p = hash_find(kv, key, t);
        if (p < 0) break;
        if (kv->ref[p]++ == 0) lru_unlink(kv, p);
        pages_out[k] = p;
    }
    return k;
}

int32_t wk_kv_pages_alloc(struct wk_kv_pages *kv) {
    int32_t p;
    if (kv->n_empty > 0) {
        p = kv->empty[--kv->n_empty];
    } else if (kv->lru_head >= 0) {
        p = kv->lru_head;
        lru_unlink(kv, p);
        hash_remove(kv, p);
        kv->registered[p] = false;
    } else {
        return -1;
    }
    kv->ref[p] = 1;
    return p;
}

void wk_kv_pages_publish(struct wk_kv_pages *kv, int32_t page, uint64_t key, const int32_t *tokens16) {
    if (kv->registered[page] || hash_find(kv, key, tokens16) >= 0) return;
    kv->key[page] = key;
    memcpy(kv->tok + (size_t)page * PAGE, tokens16, PAGE * sizeof *tokens16);
    kv->registered[page] = true;
    hash_insert(kv, page);
}

void wk_kv_pages_release(struct wk_kv_pages *kv, int32_t page) {
    if (--kv->ref[page] > 0) return;
    if (kv->registered[page]) lru_push_tail(kv, page);
    else kv->empty[kv->n_empty++] = page;
}

void wk_kv_pages_stats(const struct wk_kv_pages *kv, struct wk_kv_pages_stats *st) {
    st->total = kv->n;
    st->cached = kv->n_cached;
    st->free = kv->n_empty + kv->n_cached;
}
