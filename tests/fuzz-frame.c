/* fuzz-frame.c — libFuzzer target for the frame decoder and Request decoding.
 *
 *   CC=clang meson setup build-fuzz -Dfuzz=true -Dcuda=disabled
 *   ninja -C build-fuzz tests/fuzz-frame && ./build-fuzz/tests/fuzz-frame -max_total_time=60
 *
 * The input is split into chunks whose sizes come from the input itself, so
 * the decoder sees every way a stream can be cut. Invariants checked (abort
 * on violation): every call makes progress or asks for more, never consumes
 * more than given, a message never exceeds the maximum, and once the flag byte
 * is bad the decoder stays dead. Each whole frame is also unpacked as a
 * Request, as the worker's reader does, and taken through what the worker
 * does with it before any model is involved: the NUL scan of its strings
 * (wk_request_find_nul, also on payloads that do not unpack), and for an
 * Infer body the parameter validation (wk_infer_params) and the client
 * message built from its error, which must be valid UTF-8 without function
 * names.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/sample.h"
#include "worker.pb-c.h"
#include "worker/frame.h"
#include "worker/infer.h"

#define FUZZ_MAX_FRAME 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const uint8_t *payload, size_t len) {
    char field[64];
    uint64_t at = 0;
    bool nul = wk_request_find_nul(payload, len, field, sizeof field, &at);
    if (nul && (!field[0] || at >= len)) abort();
    Orcd__V1__Request *r = orcd__v1__request__unpack(NULL, len, payload);
    if (!r) return;
    if (r->body_case == ORCD__V1__REQUEST__BODY_INFER && r->infer) {
        const Orcd__V1__InferRequest *q = r->infer;
        struct wk_sampling sp;
        char err[512] = "", msg[512];
        wk_status st = wk_infer_params(q, 512, &sp, err, sizeof err);
        if (st != WK_STATUS_OK) {
            if (!err[0]) abort();
            wk_client_error(st, err, msg, sizeof msg);
            if (!wk_utf8_valid(msg, strlen(msg)) || strstr(msg, "wk_")) abort();
        }
    }
    orcd__v1__request__free_unpacked(r, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t step = (size_t)(data[0] % 17) + 1; /* chunk size 1..17, 17 = "all at once" */
    data++;
    size--;
    if (step == 17) step = size ? size : 1;

    struct wk_frame_dec d;
    wk_frame_dec_init(&d, FUZZ_MAX_FRAME);
    bool dead = false;
    size_t off = 0;
    while (off < size) {
        size_t len = size - off < step ? size - off : step;
        struct wk_frame_info info;
        size_t used = (size_t)-1;
        enum wk_frame_ev ev = wk_frame_dec_feed(&d, data + off, len, &used, &info);
        if (used > len) abort();
        if (dead && ev != WK_FRAME_BAD_FLAG) abort();
        switch (ev) {
        case WK_FRAME_NEED_MORE:
            if (used != len) abort();
            break;
        case WK_FRAME_MSG: {
            if (info.len > FUZZ_MAX_FRAME) abort();
            check_request(info.payload, (size_t)info.len);
            (void)wk_frame_peek_id(info.payload, (size_t)info.len);
            break;
        }
        case WK_FRAME_OVERSIZE:
            if (info.len <= FUZZ_MAX_FRAME && !info.oom) abort();
            break;
        case WK_FRAME_BAD_FLAG:
            dead = true;
            break;
        default:
            abort(); /* the decoder itself never reports reader events */
        }
        if (dead) break;
        if (used == 0 && ev == WK_FRAME_NEED_MORE) abort();
        off += used;
    }
    (void)wk_frame_dec_mid_frame(&d, NULL, NULL);
    wk_frame_dec_free(&d);
    return 0;
}
