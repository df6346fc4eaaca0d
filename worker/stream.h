/* stream.h — turns generated token bytes into the text of Token events.
 *
 * Two things are held back: the bytes of a UTF-8 character split across
 * tokens (until complete), and text that might be the beginning of a stop
 * string (until decided). A stop string never reaches the output, even when
 * split across tokens; whatever precedes it does. At the end, wk_stream_flush
 * releases the held-back tail (invalid UTF-8 leftovers become U+FFFD).
 */
#ifndef WK_STREAM_H
#define WK_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

struct wk_stream; /* opaque */

/* stops: n_stops NUL-terminated strings (copied). */
wk_status wk_stream_create(const char *const *stops, size_t n_stops, struct wk_stream **out,
                           char *err, size_t err_len);
void wk_stream_free(struct wk_stream *s);

/* Feed one token's bytes. *text (borrowed until the next call) receives the
 * text that is safe to emit now (possibly ""), *text_len its length.
 * Returns true when a stop string completed: generation must end; the text
 * returned is what preceded the stop string. */
bool wk_stream_push(struct wk_stream *s, const char *bytes, size_t len, const char **text,
                    size_t *text_len);

/* End of generation (not after a stop): release what is held back. */
void wk_stream_flush(struct wk_stream *s, const char **text, size_t *text_len);

/* bytes[0..len) as valid UTF-8, by the same rules as the stream: one U+FFFD
 * per maximal invalid subpart, an incomplete tail one U+FFFD. Returns a
 * malloc'ed NUL-terminated string (caller frees), *out_len its length (may
 * be NULL). Aborts on out-of-memory, as the stream does. */
char *wk_utf8_repair(const char *bytes, size_t len, size_t *out_len);

#ifdef __cplusplus
}
#endif

#endif
