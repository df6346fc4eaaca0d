/* stream.c — token bytes to Token-event text (see stream.h).
 *
 * Two stages, in this order:
 *   1. UTF-8: bytes are decoded incrementally. A sequence still missing
 *      bytes is held (ubuf) until it completes. A sequence that can no longer
 *      become valid (a stray continuation byte, C0/C1/F5..FF, a wrong
 *      continuation, an overlong / surrogate / > U+10FFFF prefix) becomes one
 *      U+FFFD per maximal invalid subpart (Unicode §3.9, "substitution of
 *      maximal subparts"), at once. At flush an incomplete tail becomes one
 *      U+FFFD.
 *   2. Stop strings: the decoded text is appended to `pend`. If a stop string
 *      occurs in it, the text before the earliest occurrence is returned and
 *      the stream is finished. Otherwise the longest suffix of `pend` that is
 *      a proper prefix of some stop string is held, the rest returned.
 * Stop strings are valid UTF-8 and start with a lead byte, so the held
 * suffix always starts on a character boundary: the returned text is always
 * valid UTF-8.
 */
#include "worker/stream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct wk_stream {
    char **stops;      /* [n_stops] owned copies */
    size_t *stop_len;  /* [n_stops] */
    size_t n_stops;
    uint8_t ubuf[4];   /* an incomplete UTF-8 sequence (lead + valid continuations) */
    size_t ulen;
    char *pend;        /* decoded text not yet returned */
    size_t pend_len, pend_cap;
    char *out;         /* what the last call returned (borrowed by the caller) */
    size_t out_cap;
    bool stopped;      /* a stop string matched: the stream is over */
};

// ----------------------------------------------------------------------------
// buffers

/* Grow *buf to hold need bytes. A failure here means the host is out of
 * memory for a few hundred bytes; the push/flush API has no status to
 * return, so this is treated like a violated invariant. */
static void reserve(char **buf, size_t *cap, size_t need) {
    if (need <= *cap) return;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need) cap2 *= 2;
    char *p = realloc(*buf, cap2);
    WK_ASSERT(p != NULL);
    *buf = p;
    *cap = cap2;
}

static void pend_append(struct wk_stream *s, const void *bytes, size_t len) {
    reserve(&s->pend, &s->pend_cap, s->pend_len + len);
    memcpy(s->pend + s->pend_len, bytes, len);
    s->pend_len += len;
}

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

// ----------------------------------------------------------------------------
// UTF-8

/* Expected length of a sequence from its lead byte; 0 if b cannot lead. */
static int utf8_len(uint8_t b) {
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) return 2;
    if (b >= 0xE0 && b <= 0xEF) return 3;
    if (b >= 0xF0 && b <= 0xF4) return 4;
    return 0;
}

/* Is c a valid byte at position i (1..3) of a sequence led by `lead`? The
 * second byte's range excludes overlongs, surrogates and > U+10FFFF. */
static bool utf8_cont_ok(uint8_t lead, int i, uint8_t c) {
    if (i == 1) {
        switch (lead) {
        case 0xE0: return c >= 0xA0 && c <= 0xBF;
        case 0xED: return c >= 0x80 && c <= 0x9F;
        case 0xF0: return c >= 0x90 && c <= 0xBF;
        case 0xF4: return c >= 0x80 && c <= 0x8F;
        default: break;
        }
    }
    return c >= 0x80 && c <= 0xBF;
}

/* Decode one byte into pend / ubuf. */
static void utf8_feed(struct wk_stream *s, uint8_t b) {
    for (;;) {
        if (s->ulen == 0) {
            int n = utf8_len(b);
            if (n == 1) {
                pend_append(s, &b, 1);
            } else if (n == 0) {
                pend_append(s, REPLACEMENT, sizeof REPLACEMENT); /* cannot start anything */
            } else {
                s->ubuf[s->ulen++] = b;
            }
            return;
        }
        if (utf8_cont_ok(s->ubuf[0], (int)s->ulen, b)) {
            s->ubuf[s->ulen++] = b;
            if ((int)s->ulen == utf8_len(s->ubuf[0])) {
                pend_append(s, s->ubuf, s->ulen);
                s->ulen = 0;
            }
            return;
        }
        /* the held prefix is a maximal invalid subpart; b starts afresh */
        pend_append(s, REPLACEMENT, sizeof REPLACEMENT);
        s->ulen = 0;
    }
}

static bool utf8_valid(const char *str, size_t len) {
    const uint8_t *p = (const uint8_t *)str;
    for (size_t i = 0; i < len;) {
        int n = utf8_len(p[i]);
        if (n == 0 || i + (size_t)n > len) return false;
        for (int k = 1; k < n; k++) {
            if (!utf8_cont_ok(p[i], k, p[i + (size_t)k])) return false;
        }
        i += (size_t)n;
    }
    return true;
}

// ----------------------------------------------------------------------------
// stop strings

/* Earliest position in pend where some stop string occurs, or SIZE_MAX. */
static size_t find_stop(const struct wk_stream *s) {
    size_t best = SIZE_MAX;
    for (size_t k = 0; k < s->n_stops; k++) {
        const char *hit = memmem(s->pend, s->pend_len, s->stops[k], s->stop_len[k]);
        if (hit && (size_t)(hit - s->pend) < best) best = (size_t)(hit - s->pend);
    }
    return best;
}

/* Length of the longest suffix of pend that is a proper prefix of a stop. */
static size_t held_suffix(const struct wk_stream *s) {
    size_t best = 0;
    for (size_t k = 0; k < s->n_stops; k++) {
        size_t sl = s->stop_len[k];
        size_t max = sl - 1 < s->pend_len ? sl - 1 : s->pend_len;
        for (size_t m = max; m > best; m--) {
            if (memcmp(s->pend + s->pend_len - m, s->stops[k], m) == 0) {
                best = m;
                break;
            }
        }
    }
    return best;
}

/* Move pend[0..n) to out and keep pend[n..pend_len) + skip bytes dropped. */
static void release(struct wk_stream *s, size_t n, size_t drop, const char **text,
                    size_t *text_len) {
    reserve(&s->out, &s->out_cap, n + 1);
    memcpy(s->out, s->pend, n);
    s->out[n] = '\0';
    size_t rest = n + drop < s->pend_len ? s->pend_len - n - drop : 0;
    memmove(s->pend, s->pend + n + drop, rest);
    s->pend_len = rest;
    *text = s->out;
    *text_len = n;
}

// ----------------------------------------------------------------------------
// public

wk_status wk_stream_create(const char *const *stops, size_t n_stops, struct wk_stream **out,
                           char *err, size_t err_len) {
    *out = NULL;
    if (n_stops > 0 && !stops)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: %zu stop strings but no array",
                       __func__, n_stops);
    for (size_t k = 0; k < n_stops; k++) {
        if (!stops[k] || !stops[k][0])
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: stop string %zu is empty",
                           __func__, k);
        if (!utf8_valid(stops[k], strlen(stops[k])))
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                           "%s: stop string %zu is not valid UTF-8", __func__, k);
    }
    struct wk_stream *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    if (n_stops > 0) {
        s->stops = calloc(n_stops, sizeof *s->stops);
        s->stop_len = calloc(n_stops, sizeof *s->stop_len);
        if (!s->stops || !s->stop_len) goto oom;
        for (size_t k = 0; k < n_stops; k++) {
            s->stop_len[k] = strlen(stops[k]);
            s->stops[k] = malloc(s->stop_len[k] + 1);
            if (!s->stops[k]) goto oom;
            memcpy(s->stops[k], stops[k], s->stop_len[k] + 1);
            s->n_stops = k + 1;
        }
    }
    s->pend = malloc(256);
    s->out = malloc(256);
    if (!s->pend || !s->out) goto oom;
    s->pend_cap = s->out_cap = 256;
    s->out[0] = '\0';
    *out = s;
    return WK_STATUS_OK;
oom:
    wk_stream_free(s);
    return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: out of memory (%zu stop strings)",
                   __func__, n_stops);
}

void wk_stream_free(struct wk_stream *s) {
    if (!s) return;
    if (s->stops) {
        for (size_t k = 0; k < s->n_stops; k++) free(s->stops[k]);
    }
    free(s->stops);
    free(s->stop_len);
    free(s->pend);
    free(s->out);
    free(s);
}

bool wk_stream_push(struct wk_stream *s, const char *bytes, size_t len, const char **text,
                    size_t *text_len) {
    if (s->stopped) {
        s->out[0] = '\0';
        *text = s->out;
        *text_len = 0;
        return true;
    }
    for (size_t i = 0; i < len; i++) utf8_feed(s, (uint8_t)bytes[i]);

    size_t at = find_stop(s);
    if (at != SIZE_MAX) {
        release(s, at, s->pend_len - at, text, text_len); /* drop the stop and all after */
        s->ulen = 0;
        s->stopped = true;
        return true;
    }
    release(s, s->pend_len - held_suffix(s), 0, text, text_len);
    return false;
}

void wk_stream_flush(struct wk_stream *s, const char **text, size_t *text_len) {
    if (s->stopped) {
        s->out[0] = '\0';
        *text = s->out;
        *text_len = 0;
        return;
    }
    if (s->ulen > 0) { /* an incomplete character at the end */
        pend_append(s, REPLACEMENT, sizeof REPLACEMENT);
        s->ulen = 0;
    }
    /* a stop string can still complete here only if it contains U+FFFD */
    size_t at = find_stop(s);
    if (at != SIZE_MAX) {
        release(s, at, s->pend_len - at, text, text_len);
        s->stopped = true;
        return;
    }
    release(s, s->pend_len, 0, text, text_len);
}

char *wk_utf8_repair(const char *bytes, size_t len, size_t *out_len) {
    struct wk_stream s;
    memset(&s, 0, sizeof s);
    reserve(&s.pend, &s.pend_cap, len + 1);
    for (size_t i = 0; i < len; i++) utf8_feed(&s, (uint8_t)bytes[i]);
    if (s.ulen > 0) pend_append(&s, REPLACEMENT, sizeof REPLACEMENT);
    reserve(&s.pend, &s.pend_cap, s.pend_len + 1);
    s.pend[s.pend_len] = '\0';
    if (out_len) *out_len = s.pend_len;
    return s.pend;
}
