/* test-frame.c — the framing layer: incremental decoder, fd reader, packing,
 * write_full, id peeking. Frames are built by hand here (not by the code
 * under test) so an encoder bug cannot hide a decoder bug. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.pb-c.h"
#include "tests/testutil.h"
#include "worker/frame.h"

/* flag 0, big-endian length, then the payload */
static size_t mk_frame(uint8_t *out, const void *payload, uint32_t len) {
    out[0] = 0;
    out[1] = (uint8_t)(len >> 24);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 8);
    out[4] = (uint8_t)len;
    if (len) memcpy(out + 5, payload, len);
    return 5 + (size_t)len;
}

START_TEST(test_header_big_endian) {
    uint8_t h[5];
    wk_frame_put_header(h, 0x01020304u);
    uint8_t want[5] = {0, 1, 2, 3, 4};
    ck_assert_mem_eq(h, want, 5);
}
END_TEST

START_TEST(test_decode_whole_and_bytewise) {
    uint8_t buf[64];
    size_t n = mk_frame(buf, "hello", 5);
    n += mk_frame(buf + n, "", 0);
    n += mk_frame(buf + n, "xy", 2);

    /* whole buffer: three events in order */
    struct wk_frame_dec d;
    wk_frame_dec_init(&d, 0);
    struct wk_frame_info info;
    size_t off = 0, used = 0;
    const char *want[] = {"hello", "", "xy"};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(wk_frame_dec_feed(&d, buf + off, n - off, &used, &info), WK_FRAME_MSG);
        off += used;
        ck_assert_uint_eq(info.len, strlen(want[k]));
        if (info.len) ck_assert_mem_eq(info.payload, want[k], info.len);
    }
    ck_assert_uint_eq(off, n);
    ck_assert_int_eq(wk_frame_dec_feed(&d, buf + off, 0, &used, &info), WK_FRAME_NEED_MORE);
    ck_assert(!wk_frame_dec_mid_frame(&d, NULL, NULL));
    wk_frame_dec_free(&d);

    /* one byte at a time */
    wk_frame_dec_init(&d, 0);
    int got = 0;
    for (size_t i = 0; i < n; i++) {
        enum wk_frame_ev ev = wk_frame_dec_feed(&d, buf + i, 1, &used, &info);
        ck_assert_uint_eq(used, 1);
        if (ev == WK_FRAME_MSG) {
            ck_assert_uint_eq(info.len, strlen(want[got]));
            if (info.len) ck_assert_mem_eq(info.payload, want[got], info.len);
            got++;
        } else {
            ck_assert_int_eq(ev, WK_FRAME_NEED_MORE);
        }
    }
    ck_assert_int_eq(got, 3);
    wk_frame_dec_free(&d);
}
END_TEST

START_TEST(test_oversize_drained_stream_in_sync) {
    uint8_t big[200], buf[400];
    memset(big, 0xAB, sizeof big);
    size_t n = mk_frame(buf, big, sizeof big);
    n += mk_frame(buf + n, "ok", 2);
    struct wk_frame_dec d;
    wk_frame_dec_init(&d, 64);
    struct wk_frame_info info;
    size_t used;
    /* in 7-byte pieces: the oversize report comes at the header */
    int oversize = 0, msgs = 0;
    for (size_t off = 0; off < n;) {
        size_t len = n - off < 7 ? n - off : 7;
        enum wk_frame_ev ev = wk_frame_dec_feed(&d, buf + off, len, &used, &info);
        off += used;
        if (ev == WK_FRAME_OVERSIZE) {
            oversize++;
            ck_assert_uint_eq(info.len, 200);
            ck_assert(!info.oom);
            ck_assert(wk_frame_dec_mid_frame(&d, NULL, NULL));
        } else if (ev == WK_FRAME_MSG) {
            msgs++;
            ck_assert_uint_eq(info.len, 2);
            ck_assert_mem_eq(info.payload, "ok", 2);
        } else {
            ck_assert_int_eq(ev, WK_FRAME_NEED_MORE);
            ck_assert_uint_eq(used, len);
        }
    }
    ck_assert_int_eq(oversize, 1);
    ck_assert_int_eq(msgs, 1);
    ck_assert_uint_le(d.cap, 64); /* the oversized payload was never buffered */
    wk_frame_dec_free(&d);
}
END_TEST

START_TEST(test_exactly_max_accepted) {
    uint8_t p[64], buf[80];
    memset(p, 7, sizeof p);
    size_t n = mk_frame(buf, p, 64);
    struct wk_frame_dec d;
    wk_frame_dec_init(&d, 64);
    struct wk_frame_info info;
    size_t used;
    ck_assert_int_eq(wk_frame_dec_feed(&d, buf, n, &used, &info), WK_FRAME_MSG);
    ck_assert_uint_eq(info.len, 64);
    wk_frame_dec_free(&d);
}
END_TEST

START_TEST(test_bad_flag_is_sticky) {
    uint8_t buf[32];
    size_t n = mk_frame(buf, "a", 1);
    buf[n] = 1; /* compressed flag: refused */
    memcpy(buf + n + 1, "\0\0\0\1b", 5);
    struct wk_frame_dec d;
    wk_frame_dec_init(&d, 0);
    struct wk_frame_info info;
    size_t used;
    ck_assert_int_eq(wk_frame_dec_feed(&d, buf, n + 6, &used, &info), WK_FRAME_MSG);
    ck_assert_uint_eq(used, n);
    ck_assert_int_eq(wk_frame_dec_feed(&d, buf + n, 6, &used, &info), WK_FRAME_BAD_FLAG);
    ck_assert_uint_eq(info.flag, 1);
    ck_assert_uint_eq(used, 1);
    ck_assert_int_eq(wk_frame_dec_feed(&d, buf + n + 1, 5, &used, &info), WK_FRAME_BAD_FLAG);
    wk_frame_dec_free(&d);
}
END_TEST

START_TEST(test_mid_frame_counts) {
    uint8_t buf[32];
    mk_frame(buf, "abcdef", 6);
    struct wk_frame_dec d;
    wk_frame_dec_init(&d, 0);
    struct wk_frame_info info;
    size_t used;
    uint64_t have, want;
    ck_assert_int_eq(wk_frame_dec_feed(&d, buf, 3, &used, &info), WK_FRAME_NEED_MORE);
    ck_assert(wk_frame_dec_mid_frame(&d, &have, &want));
    ck_assert_uint_eq(have, 3);
    ck_assert_uint_eq(want, 5);
    ck_assert_int_eq(wk_frame_dec_feed(&d, buf + 3, 5, &used, &info), WK_FRAME_NEED_MORE);
    ck_assert(wk_frame_dec_mid_frame(&d, &have, &want));
    ck_assert_uint_eq(have, 8);
    ck_assert_uint_eq(want, 11);
    wk_frame_dec_free(&d);
}
END_TEST

START_TEST(test_reader_pipe_events) {
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    int w[2];
    ck_assert_int_eq(pipe(w), 0);
    uint8_t buf[64];
    size_t n = mk_frame(buf, "one", 3);
    n += mk_frame(buf + n, "two", 3);
    ck_assert_int_eq(write(p[1], buf, n), (ssize_t)n);

    struct wk_frame_reader *r = malloc(sizeof *r);
    wk_frame_reader_init(r, p[0], 0);
    struct wk_frame_info info;
    ck_assert_int_eq(wk_frame_reader_next(r, 1000, w[0], &info), WK_FRAME_MSG);
    ck_assert_mem_eq(info.payload, "one", 3);
    ck_assert_int_eq(wk_frame_reader_next(r, 1000, w[0], &info), WK_FRAME_MSG);
    ck_assert_mem_eq(info.payload, "two", 3);
    /* nothing more: timeout, then the wake fd */
    ck_assert_int_eq(wk_frame_reader_next(r, 50, w[0], &info), WK_FRAME_TIMEOUT);
    ck_assert_int_eq(write(w[1], "x", 1), 1);
    ck_assert_int_eq(wk_frame_reader_next(r, 1000, w[0], &info), WK_FRAME_WOKEN);
    /* a partial frame then EOF: truncated with the counts */
    ck_assert_int_eq(write(p[1], "\0\0\0\0\x09" "abc", 8), 8);
    close(p[1]);
    ck_assert_int_eq(wk_frame_reader_next(r, 1000, -1, &info), WK_FRAME_TRUNCATED);
    ck_assert_uint_eq(info.have, 8);
    ck_assert_uint_eq(info.len, 14);
    wk_frame_reader_free(r);
    free(r);
    close(p[0]);

    /* clean EOF at a boundary */
    ck_assert_int_eq(pipe(p), 0);
    r = malloc(sizeof *r);
    wk_frame_reader_init(r, p[0], 0);
    n = mk_frame(buf, "z", 1);
    ck_assert_int_eq(write(p[1], buf, n), (ssize_t)n);
    close(p[1]);
    ck_assert_int_eq(wk_frame_reader_next(r, 1000, -1, &info), WK_FRAME_MSG);
    ck_assert_int_eq(wk_frame_reader_next(r, 1000, -1, &info), WK_FRAME_EOF);
    wk_frame_reader_free(r);
    free(r);
    close(p[0]);
    close(w[0]);
    close(w[1]);
}
END_TEST

START_TEST(test_pack_roundtrip) {
    Orcd__V1__InferRequest inf = ORCD__V1__INFER_REQUEST__INIT;
    inf.input_case = ORCD__V1__INFER_REQUEST__INPUT_PROMPT;
    inf.prompt = "Once upon a time";
    inf.max_tokens = 7;
    inf.temperature = 0.5f;
    Orcd__V1__Request req = ORCD__V1__REQUEST__INIT;
    req.id = 300; /* two varint bytes: 0xac 0x02 */
    req.body_case = ORCD__V1__REQUEST__BODY_INFER;
    req.infer = &inf;
    uint8_t *fr = NULL;
    size_t len = 0;
    char err[128];
    ck_assert_int_eq(wk_frame_pack(&req.base, &fr, &len, err, sizeof err), WK_STATUS_OK);
    ck_assert_uint_eq(fr[0], 0);
    uint32_t plen = (uint32_t)fr[1] << 24 | (uint32_t)fr[2] << 16 | (uint32_t)fr[3] << 8 | fr[4];
    ck_assert_uint_eq(plen + 5, len);
    ck_assert_uint_eq(fr[5], 0x08); /* field 1, varint */
    ck_assert_uint_eq(fr[6], 0xac);
    ck_assert_uint_eq(fr[7], 0x02);
    ck_assert_uint_eq(wk_frame_peek_id(fr + 5, plen), 300);

    struct wk_frame_dec d;
    wk_frame_dec_init(&d, 0);
    struct wk_frame_info info;
    size_t used;
    ck_assert_int_eq(wk_frame_dec_feed(&d, fr, len, &used, &info), WK_FRAME_MSG);
    Orcd__V1__Request *back = orcd__v1__request__unpack(NULL, info.len, info.payload);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_eq(back->id, 300);
    ck_assert_int_eq(back->body_case, ORCD__V1__REQUEST__BODY_INFER);
    ck_assert_str_eq(back->infer->prompt, "Once upon a time");
    ck_assert_uint_eq(back->infer->max_tokens, 7);
    orcd__v1__request__free_unpacked(back, NULL);
    wk_frame_dec_free(&d);
    free(fr);
}
END_TEST

START_TEST(test_peek_id_edge_cases) {
    const uint8_t none[] = {0x12, 0x00};
    ck_assert_uint_eq(wk_frame_peek_id(none, sizeof none), 0);
    const uint8_t cut[] = {0x08, 0x80};
    ck_assert_uint_eq(wk_frame_peek_id(cut, sizeof cut), 0);
    const uint8_t one[] = {0x08, 0x05, 0xff};
    ck_assert_uint_eq(wk_frame_peek_id(one, sizeof one), 5);
    ck_assert_uint_eq(wk_frame_peek_id(NULL, 0), 0);
}
END_TEST

START_TEST(test_write_full_epipe) {
    signal(SIGPIPE, SIG_IGN);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    close(p[0]);
    char err[128] = "";
    ck_assert_int_eq(wk_write_full(p[1], "abc", 3, err, sizeof err), WK_STATUS_IO);
    ck_assert_int_eq(errno, EPIPE);
    ck_assert_ptr_nonnull(strstr(err, "write"));
    close(p[1]);

    /* a write larger than the pipe buffer completes through short writes */
    ck_assert_int_eq(pipe(p), 0);
    size_t big = 1 << 20;
    char *data = malloc(big);
    for (size_t i = 0; i < big; i++) data[i] = (char)(i * 31);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        _exit(wk_write_full(p[1], data, big, err, sizeof err) == WK_STATUS_OK ? 0 : 1);
    }
    close(p[1]);
    char *got = malloc(big);
    size_t have = 0;
    ssize_t r;
    while ((r = read(p[0], got + have, big - have)) > 0) have += (size_t)r;
    ck_assert_uint_eq(have, big);
    ck_assert_mem_eq(got, data, 4096);
    ck_assert_int_eq(memcmp(got, data, big), 0);
    close(p[0]);
    free(got);
    free(data);
}
END_TEST

/* wk_request_find_nul: every string field of an Infer body, packed by
 * protobuf-c (no NUL: not found) and hand-built with a NUL (found, named). */
static size_t w_varint(uint8_t *b, size_t n, uint64_t v) {
    do {
        b[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}
static size_t w_bytes(uint8_t *b, size_t n, unsigned field, const void *p, size_t len) {
    n = w_varint(b, n, (uint64_t)field << 3 | 2);
    n = w_varint(b, n, len);
    memcpy(b + n, p, len);
    return n + len;
}

START_TEST(test_find_nul_fields) {
    char field[64];
    uint64_t at = 99;
    /* a clean request of every kind of string, as protobuf-c packs it */
    Orcd__V1__ChatMessage m0 = ORCD__V1__CHAT_MESSAGE__INIT, *mp[1] = {&m0};
    m0.role = "user";
    m0.content = "hello";
    Orcd__V1__ChatList cl = ORCD__V1__CHAT_LIST__INIT;
    cl.n_messages = 1;
    cl.messages = mp;
    char *stops[2] = {"a", "bc"};
    Orcd__V1__InferRequest q = ORCD__V1__INFER_REQUEST__INIT;
    q.input_case = ORCD__V1__INFER_REQUEST__INPUT_CHAT;
    q.chat = &cl;
    q.n_stop = 2;
    q.stop = stops;
    q.max_tokens = 300;
    q.temperature = 0.5f;
    q.seed = 1ull << 40;
    Orcd__V1__Request r = ORCD__V1__REQUEST__INIT;
    r.id = 12345;
    r.body_case = ORCD__V1__REQUEST__BODY_INFER;
    r.infer = &q;
    uint8_t buf[512];
    size_t n = orcd__v1__request__pack(&r, buf);
    ck_assert(!wk_request_find_nul(buf, n, field, sizeof field, &at));
    /* cut anywhere: never a read past the end, never a false alarm */
    for (size_t k = 0; k < n; k++) ck_assert(!wk_request_find_nul(buf, k, field, sizeof field, &at));

    struct {
        const char *want;
        uint64_t at;
    } cases[] = {{"prompt", 3}, {"stop[1]", 0}, {"chat.messages[1].role", 2},
                 {"chat.messages[0].content", 5}};
    for (int c = 0; c < 4; c++) {
        uint8_t inf[256], msg[64], m1[64], list[160], req[300];
        size_t ni = 0, nm = 0, n1 = 0, nl = 0, nr = 0;
        switch (c) {
        case 0: ni = w_bytes(inf, 0, 1, "abc\0def", 7); break;
        case 1:
            ni = w_bytes(inf, 0, 1, "x", 1);
            ni = w_bytes(inf, ni, 12, "ok", 2);
            ni = w_bytes(inf, ni, 12, "\0", 1);
            break;
        case 2:
        case 3:
            nm = w_bytes(msg, 0, 1, "user", 4);
            nm = c == 3 ? w_bytes(msg, nm, 2, "hello\0", 6) : w_bytes(msg, nm, 2, "hi", 2);
            n1 = w_bytes(m1, 0, 1, c == 2 ? "as\0" : "user", c == 2 ? 3 : 4);
            nl = w_bytes(list, 0, 1, msg, nm);
            nl = w_bytes(list, nl, 1, m1, n1);
            ni = w_bytes(inf, 0, 2, list, nl);
            break;
        }
        nr = w_varint(req, 0, 1 << 3); /* id = 7 */
        nr = w_varint(req, nr, 7);
        nr = w_bytes(req, nr, 2, inf, ni);
        /* protobuf-c takes it (and would cut the string at the NUL) */
        Orcd__V1__Request *u = orcd__v1__request__unpack(NULL, nr, req);
        ck_assert_msg(u != NULL, "case %d does not unpack", c);
        orcd__v1__request__free_unpacked(u, NULL);
        at = 99;
        ck_assert_msg(wk_request_find_nul(req, nr, field, sizeof field, &at), "case %d", c);
        ck_assert_str_eq(field, cases[c].want);
        ck_assert_uint_eq(at, cases[c].at);
    }
    /* a NUL outside any string (an id byte, a varint) is no string's */
    uint8_t idz[] = {0x08, 0x00, 0x12, 0x02, 0x20, 0x00};
    ck_assert(!wk_request_find_nul(idz, sizeof idz, field, sizeof field, &at));
}
END_TEST

int main(void) {
    Suite *s = suite_create("frame");
    TCase *tc = tcase_create("frame");
    tcase_add_test(tc, test_header_big_endian);
    tcase_add_test(tc, test_decode_whole_and_bytewise);
    tcase_add_test(tc, test_oversize_drained_stream_in_sync);
    tcase_add_test(tc, test_exactly_max_accepted);
    tcase_add_test(tc, test_bad_flag_is_sticky);
    tcase_add_test(tc, test_mid_frame_counts);
    tcase_add_test(tc, test_reader_pipe_events);
    tcase_add_test(tc, test_pack_roundtrip);
    tcase_add_test(tc, test_peek_id_edge_cases);
    tcase_add_test(tc, test_write_full_epipe);
    tcase_add_test(tc, test_find_nul_fields);
    suite_add_tcase(s, tc);
    return tu_run_suite(s);
}
