/* kv-pages.h — who holds which KV page, and which pages hold a reusable
 * prompt prefix. The backend owns the page storage; this table (owned by the
 * scheduler, on the generation thread only: no locking) owns the accounting.
 *
 * A page is either
 *   held      refcount > 0: in the page table of one or more sequences
 *             (more than one only for a shared, full prefix page: read-only);
 *   cached    refcount 0 but full and registered under its prefix hash: its
 *             K/V stay valid and a later prompt with the same prefix takes it
 *             back instead of recomputing; evicted least recently used first
 *             when a free page is needed;
 *   empty     refcount 0 and nothing worth keeping.
 * Free pages = cached + empty.
 *
 * Prefix identity: the K/V of page k of a sequence depend only on the tokens
 * at positions [0, 16(k+1)) (batch invariance, core/backend.h). So a full
 * page is keyed by a chain hash over those tokens (the parent page's key and
 * the page's own 16 tokens); a match also compares the 16 tokens themselves,
 * so a hash collision can only cost a miss, never a wrong hit.
 */
#ifndef WK_KV_PAGES_H
#define WK_KV_PAGES_H

#include <stdbool.h>
#include <stdint.h>

#include "core/backend.h"

struct wk_kv_pages;

/* NULL on out of memory. */
struct wk_kv_pages *wk_kv_pages_create(int n_pages);
void wk_kv_pages_free(struct wk_kv_pages *kv);

/* The key of the page that holds tokens [16k, 16k+16) after a page keyed
 * `parent` (0 for the first page). */
uint64_t wk_kv_page_key(uint64_t parent, const int32_t *tokens16);

/* Take the longest run of cached or held full pages that match tokens[0..n)
 * from position 0, at most max_pages of them: each gets one more reference
 * and its id goes to pages_out. Returns the count. */
int wk_kv_pages_match(struct wk_kv_pages *kv, const int32_t *tokens, int n, int max_pages, int32_t *pages_out);

/* One page for a sequence: an empty page if any, else the least recently
 * used cached one (its prefix is forgotten). Its refcount becomes 1.
 * Returns -1 when every page is held. */
int32_t wk_kv_pages_alloc(struct wk_kv_pages *kv);

/* The page, held by the caller, now holds the full K/V of the 16 tokens
 * keyed `key`: register it for reuse (a no-op when an equal page is already
 * registered). */
void wk_kv_pages_publish(struct wk_kv_pages *kv, int32_t page, uint64_t key, const int32_t *tokens16);

/* Drop one reference. At 0 a registered page becomes cached (most recently
 * used), any other empty. */
void wk_kv_pages_release(struct wk_kv_pages *kv, int32_t page);

struct wk_kv_pages_stats {
    int total, free, cached; /* free includes cached */
};
void wk_kv_pages_stats(const struct wk_kv_pages *kv, struct wk_kv_pages_stats *st);

#endif
