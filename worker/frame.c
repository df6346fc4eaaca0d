/* frame.c — length-prefixed protobuf framing (see frame.h). */
#include "worker/frame.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { ST_HEADER = 0, ST_PAYLOAD, ST_DRAIN, ST_DEAD };

void wk_frame_dec_init(struct wk_frame_dec *d, size_t max) {
    memset(d, 0, sizeof *d);
    d->max = max ? max : WK_FRAME_MAX_DEFAULT;
}

void wk_frame_dec_free(struct wk_frame_dec *d) {
    if (!d) return;
    free(d->buf);
    d->buf = NULL;
    d->cap = d->have = 0;
}

enum wk_frame_ev wk_frame_dec_feed(struct wk_frame_dec *d, const uint8_t *data, size_t len,
                                   size_t *used, struct wk_frame_info *info) {
    size_t i = 0;
    memset(info, 0, sizeof *info);
    while (d->state != ST_DEAD) {
        if (d->state == ST_HEADER) {
            if (d->hdr_have == 0 && i < len && data[i] != 0) {
                /* refuse at once: the flag byte is the first of the frame */
                info->flag = data[i];
                d->state = ST_DEAD;
                *used = i + 1;
                return WK_FRAME_BAD_FLAG;
            }
            while (d->hdr_have < WK_FRAME_HEADER && i < len) d->hdr[d->hdr_have++] = data[i++];
            if (d->hdr_have < WK_FRAME_HEADER) break;
            d->len = (uint32_t)d->hdr[1] << 24 | (uint32_t)d->hdr[2] << 16 |
                     (uint32_t)d->hdr[3] << 8 | (uint32_t)d->hdr[4];
            d->hdr_have = 0;
            d->have = 0;
            info->len = d->len;
            if (d->len > d->max) {
                d->drain_left = d->len;
                d->state = ST_DRAIN;
                *used = i;
                return WK_FRAME_OVERSIZE;
            }
            if (d->len > d->cap) {
                /* grow geometrically, never past max */
                size_t nc = d->cap ? d->cap : 4096;
                if (nc > d->max) nc = d->max;
                while (nc < d->len) nc = nc > d->max / 2 ? d->max : nc * 2;
                if (nc < d->len) nc = d->len;
                uint8_t *nb = realloc(d->buf, nc);
                if (!nb) {
                    d->drain_left = d->len;
                    d->state = ST_DRAIN;
                    info->oom = true;
                    *used = i;
                    return WK_FRAME_OVERSIZE;
                }
                d->buf = nb;
                d->cap = nc;
            }
            d->state = ST_PAYLOAD;
        }
        if (d->state == ST_PAYLOAD) {
            size_t take = d->len - d->have;
            if (take > len - i) take = len - i;
            if (take) memcpy(d->buf + d->have, data + i, take);
            d->have += take;
            i += take;
            if (d->have < d->len) break;
            d->state = ST_HEADER;
            info->payload = d->buf;
            info->len = d->len;
            *used = i;
            return WK_FRAME_MSG;
        }
        if (d->state == ST_DRAIN) {
            uint64_t take = d->drain_left;
            if (take > len - i) take = len - i;
            d->drain_left -= take;
            i += (size_t)take;
            if (d->drain_left > 0) break;
            d->state = ST_HEADER;
            continue;
        }
    }
    if (d->state == ST_DEAD) {
        *used = i;
        info->flag = 0xff;
        return WK_FRAME_BAD_FLAG;
    }
    *used = i;
    return WK_FRAME_NEED_MORE;
}

bool wk_frame_dec_mid_frame(const struct wk_frame_dec *d, uint64_t *have, uint64_t *want) {
    uint64_t h = 0, w = 0;
    bool mid = false;
    if (d->state == ST_HEADER && d->hdr_have > 0) {
        h = d->hdr_have;
        w = WK_FRAME_HEADER;
        mid = true;
    } else if (d->state == ST_PAYLOAD) {
        h = WK_FRAME_HEADER + d->have;
        w = WK_FRAME_HEADER + (uint64_t)d->len;
        mid = true;
    } else if (d->state == ST_DRAIN) {
        w = WK_FRAME_HEADER + (uint64_t)d->len;
        h = w - d->drain_left;
        mid = true;
    }
    if (have) *have = h;
    if (want) *want = w;
    return mid;
}

/* --- reader ---------------------------------------------------------------- */

void wk_frame_reader_init(struct wk_frame_reader *r, int fd, size_t max) {
    r->fd = fd;
    wk_frame_dec_init(&r->dec, max);
    r->off = r->n = 0;
    r->eof = false;
}

void wk_frame_reader_free(struct wk_frame_reader *r) {
    if (r) wk_frame_dec_free(&r->dec);
}

enum wk_frame_ev wk_frame_reader_next(struct wk_frame_reader *r, int timeout_ms, int wake_fd,
                                      struct wk_frame_info *info) {
    for (;;) {
        if (r->off < r->n) {
            size_t used = 0;
            enum wk_frame_ev ev =
                wk_frame_dec_feed(&r->dec, r->chunk + r->off, r->n - r->off, &used, info);
            r->off += used;
            if (ev != WK_FRAME_NEED_MORE) return ev;
        }
        memset(info, 0, sizeof *info);
        if (r->eof) {
            uint64_t have, want;
            if (wk_frame_dec_mid_frame(&r->dec, &have, &want)) {
                info->have = have;
                info->len = want;
                return WK_FRAME_TRUNCATED;
            }
            return WK_FRAME_EOF;
        }
        struct pollfd pf[2] = {{.fd = r->fd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
        int np = wake_fd >= 0 ? 2 : 1;
        int pr = poll(pf, (nfds_t)np, timeout_ms);
        if (pr < 0) {
            if (errno == EINTR) continue;
            info->err = errno;
            return WK_FRAME_IO;
        }
        if (pr == 0) return WK_FRAME_TIMEOUT;
        if (np == 2 && (pf[1].revents & (POLLIN | POLLHUP | POLLERR))) return WK_FRAME_WOKEN;
        if (!(pf[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) continue;
        ssize_t got = read(r->fd, r->chunk, sizeof r->chunk);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            info->err = errno;
            return WK_FRAME_IO;
        }
        r->off = 0;
        r->n = (size_t)got;
        if (got == 0) r->eof = true;
    }
}

/* --- writer ---------------------------------------------------------------- */

void wk_frame_put_header(uint8_t hdr[WK_FRAME_HEADER], uint32_t len) {
    hdr[0] = 0;
    hdr[1] = (uint8_t)(len >> 24);
    hdr[2] = (uint8_t)(len >> 16);
    hdr[3] = (uint8_t)(len >> 8);
    hdr[4] = (uint8_t)len;
}

wk_status wk_frame_pack(const ProtobufCMessage *msg, uint8_t **out, size_t *out_len, char *err,
                        size_t err_len) {
    *out = NULL;
    *out_len = 0;
    size_t n = protobuf_c_message_get_packed_size(msg);
    if (n > UINT32_MAX)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "%s: message of %zu bytes does not fit a frame", __func__, n);
    uint8_t *buf = malloc(WK_FRAME_HEADER + n);
    if (!buf)
        return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "%s: %zu bytes", __func__,
                       WK_FRAME_HEADER + n);
    size_t packed = protobuf_c_message_pack(msg, buf + WK_FRAME_HEADER);
    WK_ASSERT(packed == n);
    wk_frame_put_header(buf, (uint32_t)n);
    *out = buf;
    *out_len = WK_FRAME_HEADER + n;
    return WK_STATUS_OK;
}

wk_status wk_write_full(int fd, const void *buf, size_t len, char *err, size_t err_len) {
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                if (errno == EAGAIN) {
                    struct pollfd pf = {.fd = fd, .events = POLLOUT};
                    (void)poll(&pf, 1, 100);
                }
                continue;
            }
            int e = errno;
            wk_errf(err, err_len, WK_STATUS_IO, "%s: write to fd %d: %s", __func__, fd, strerror(e));
            errno = e;
            return WK_STATUS_IO;
        }
        p += w;
        len -= (size_t)w;
    }
    return WK_STATUS_OK;
}

uint64_t wk_frame_peek_id(const uint8_t *p, size_t len) {
    /* Only the first field is looked at: protobuf-c writes fields in number
     * order, and so does every mainstream encoder. */
    if (len < 2 || p[0] != 0x08) return 0;
    uint64_t v = 0;
    for (size_t i = 1, shift = 0; i < len && shift < 64; i++, shift += 7) {
        v |= (uint64_t)(p[i] & 0x7f) << shift;
        if (!(p[i] & 0x80)) return v;
    }
    return 0;
}

/* --- request inspection ---------------------------------------------------- */

/* One varint at p[*i..len); false if cut or longer than 10 bytes. */
static bool wire_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v) {
    uint64_t x = 0;
    for (unsigned shift = 0; shift < 70 && *i < len; shift += 7) {
        uint8_t b = p[(*i)++];
        x |= (uint64_t)(b & 0x7f) << (shift < 64 ? shift : 0);
        if (!(b & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

enum wire_msg { W_REQUEST, W_INFER, W_CHAT_LIST, W_CHAT_MESSAGE };

struct nul_walk {
    size_t n_stop, n_msg; /* repeated fields seen so far (merged occurrences count on) */
    char *field;
    size_t field_len;
    uint64_t at;
};

/* Walk one message of kind `kind` in p[0..len); true when a NUL was found. */
static bool walk_msg(struct nul_walk *w, enum wire_msg kind, const uint8_t *p, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint64_t tag, v;
        if (!wire_varint(p, len, &i, &tag)) return false;
        uint64_t fno = tag >> 3;
        switch (tag & 7) {
        case 0:
            if (!wire_varint(p, len, &i, &v)) return false;
            continue;
        case 1:
            if (len - i < 8) return false;
            i += 8;
            continue;
        case 5:
            if (len - i < 4) return false;
            i += 4;
            continue;
        case 2:
            break;
        default:
            return false; /* groups: protobuf-c refuses them for proto3 fields anyway */
        }
        if (!wire_varint(p, len, &i, &v) || v > len - i) return false;
        const uint8_t *sub = p + i;
        size_t n = (size_t)v;
        i += n;
        const uint8_t *nul = NULL;
        switch (kind) {
        case W_REQUEST:
            if (fno == 2 && walk_msg(w, W_INFER, sub, n)) return true;
            break;
        case W_INFER:
            if (fno == 1 && (nul = memchr(sub, 0, n))) {
                snprintf(w->field, w->field_len, "prompt");
            } else if (fno == 2) {
                if (walk_msg(w, W_CHAT_LIST, sub, n)) return true;
            } else if (fno == 12) {
                if ((nul = memchr(sub, 0, n)))
                    snprintf(w->field, w->field_len, "stop[%zu]", w->n_stop);
                w->n_stop++;
            }
            break;
        case W_CHAT_LIST:
            if (fno == 1) {
                if (walk_msg(w, W_CHAT_MESSAGE, sub, n)) return true;
                w->n_msg++;
            }
            break;
        case W_CHAT_MESSAGE:
            if ((fno == 1 || fno == 2) && (nul = memchr(sub, 0, n)))
                snprintf(w->field, w->field_len, "chat.messages[%zu].%s", w->n_msg,
                         fno == 1 ? "role" : "content");
            break;
        }
        if (nul) {
            w->at = (uint64_t)(nul - sub);
            return true;
        }
    }
    return false;
}

bool wk_request_find_nul(const uint8_t *payload, size_t len, char *field, size_t field_len,
                         uint64_t *at) {
    char dummy[1];
    struct nul_walk w = {.field = field_len ? field : dummy, .field_len = field_len ? field_len : 1};
    bool found = walk_msg(&w, W_REQUEST, payload, len);
    if (found && at) *at = w.at;
    return found;
}
