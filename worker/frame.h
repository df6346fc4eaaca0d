/* frame.h — the wire framing of proto/worker.proto, both directions.
 *
 *   byte 0      flag: 0 = uncompressed; anything else is refused (fatal)
 *   bytes 1..4  payload length N, big-endian uint32
 *   bytes 5..   N bytes of protobuf (Request on stdin, Response on stdout)
 *
 * The decoder is an incremental state machine over a byte stream, so it is
 * the same code whether bytes come from a pipe (wk_frame_reader) or from a
 * fuzzer. A frame longer than the maximum is reported once (at its header)
 * and its payload is then drained silently, so the stream stays in sync.
 */
#ifndef WK_FRAME_H
#define WK_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WK_FRAME_HEADER 5
#define WK_FRAME_MAX_DEFAULT (16u << 20) /* 16 MiB */

enum wk_frame_ev {
    WK_FRAME_NEED_MORE = 0, /* all input consumed, no event yet */
    WK_FRAME_MSG,           /* a whole frame: info.payload / info.len */
    WK_FRAME_OVERSIZE,      /* header declared info.len > max; payload is being drained */
    WK_FRAME_BAD_FLAG,      /* info.flag != 0: the stream cannot be trusted any more */
    /* only from wk_frame_reader_next: */
    WK_FRAME_EOF,           /* end of input at a frame boundary */
    WK_FRAME_TRUNCATED,     /* end of input inside a frame: info.have of info.len bytes */
    WK_FRAME_TIMEOUT,
    WK_FRAME_WOKEN,         /* the wake fd became readable */
    WK_FRAME_IO,            /* read error (errno in info.err) */
};

struct wk_frame_info {
    const uint8_t *payload; /* WK_FRAME_MSG: borrowed until the next feed/next call */
    uint64_t len;           /* payload length (declared length for OVERSIZE/TRUNCATED) */
    uint64_t have;          /* TRUNCATED: bytes of the frame received (header included) */
    uint8_t flag;           /* BAD_FLAG: the byte seen */
    bool oom;               /* OVERSIZE because the buffer could not be allocated */
    int err;                /* IO: errno */
};

struct wk_frame_dec {
    size_t max;         /* largest payload accepted */
    int state;          /* 0 header, 1 payload, 2 draining, 3 dead (after a bad flag) */
    uint8_t hdr[WK_FRAME_HEADER];
    size_t hdr_have;
    uint32_t len;       /* payload length of the current frame */
    uint8_t *buf;       /* payload buffer, owned, grows up to max */
    size_t cap, have;
    uint64_t drain_left;
};

/* max == 0: WK_FRAME_MAX_DEFAULT. Can't fail (allocates lazily). */
void wk_frame_dec_init(struct wk_frame_dec *d, size_t max);
void wk_frame_dec_free(struct wk_frame_dec *d);

/* Consume bytes from data[0..len) up to and including the first event.
 * *used receives the bytes consumed (== len when NEED_MORE is returned).
 * After BAD_FLAG every later call returns BAD_FLAG again. */
enum wk_frame_ev wk_frame_dec_feed(struct wk_frame_dec *d, const uint8_t *data, size_t len,
                                   size_t *used, struct wk_frame_info *info);

/* True when input ended inside a frame; *have / *want: bytes of the frame
 * received and expected (header included). */
bool wk_frame_dec_mid_frame(const struct wk_frame_dec *d, uint64_t *have, uint64_t *want);

/* --- reading from a file descriptor ------------------------------------- */

struct wk_frame_reader {
    int fd;
    struct wk_frame_dec dec;
    uint8_t chunk[65536];
    size_t off, n; /* unconsumed bytes chunk[off..n) */
    bool eof;
};

void wk_frame_reader_init(struct wk_frame_reader *r, int fd, size_t max);
void wk_frame_reader_free(struct wk_frame_reader *r);

/* Next event: MSG, OVERSIZE, BAD_FLAG, EOF, TRUNCATED, TIMEOUT, WOKEN or IO.
 * timeout_ms < 0 waits forever; wake_fd < 0 is ignored. */
enum wk_frame_ev wk_frame_reader_next(struct wk_frame_reader *r, int timeout_ms, int wake_fd,
                                      struct wk_frame_info *info);

/* --- writing ------------------------------------------------------------- */

void wk_frame_put_header(uint8_t hdr[WK_FRAME_HEADER], uint32_t len);

/* Pack a message into one malloc'ed frame (header + payload); caller frees. */
wk_status wk_frame_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len, char *err,
                        size_t err_len);

/* write(2) until done; loops on EINTR and short writes. EPIPE and other
 * errors: WK_STATUS_IO (errno kept). SIGPIPE must be ignored by the caller. */
wk_status wk_write_full(int fd, const void *buf, size_t len, char *err, size_t err_len);

/* Best effort: the id (field 1, varint) of an undecodable Request, 0 if not
 * found, so an error can still name the request it answers. */
uint64_t wk_frame_peek_id(const uint8_t *payload, size_t len);

/* --- request inspection --------------------------------------------------- */

/* protobuf-c unpacks a `string` field into a NUL-terminated char *, so a
 * U+0000 inside one would silently cut it. This walks the wire bytes of a
 * Request (already known to unpack) and looks inside every string field of
 * its Infer body: prompt, chat.messages[i].role / .content, stop[i]. On the
 * first NUL it writes the field ("chat.messages[1].content") into field and
 * the byte offset of the NUL inside that string into *at, and returns true.
 * Malformed input: false (the unpacker refuses it anyway). */
bool wk_request_find_nul(const uint8_t *payload, size_t len, char *field, size_t field_len,
                         uint64_t *at);

#ifdef __cplusplus
}
#endif

#endif
