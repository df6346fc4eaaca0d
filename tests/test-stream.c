/* test-stream.c — UTF-8 and stop-string holdback (worker/stream.c). */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/testutil.h"
#include "core/rng.h"
#include "worker/stream.h"

#define FFFD "\xEF\xBF\xBD"

static struct wk_stream *mk(const char *const *stops, size_t n) {
    struct wk_stream *s = NULL;
    char err[256] = "";
    wk_status st = wk_stream_create(stops, n, &s, err, sizeof err);
    ck_assert_msg(st == WK_STATUS_OK, "create: %s", err);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* push one piece; check the returned text equals want and the stop flag */
static void push_expect(struct wk_stream *s, const char *bytes, size_t len, const char *want,
                        bool want_stop) {
    const char *t = NULL;
    size_t tl = 99;
    bool stop = wk_stream_push(s, bytes, len, &t, &tl);
    ck_assert_ptr_nonnull(t);
    ck_assert_msg(tl == strlen(want) && memcmp(t, want, tl) == 0,
                  "pushed '%.*s': got '%.*s' (%zu bytes), want '%s'", (int)len, bytes, (int)tl,
                  t, tl, want);
    ck_assert_int_eq(stop, want_stop);
}
#define PUSH(s, str, want, stop) push_expect(s, str, strlen(str), want, stop)

static void flush_expect(struct wk_stream *s, const char *want) {
    const char *t = NULL;
    size_t tl = 99;
    wk_stream_flush(s, &t, &tl);
    ck_assert_msg(tl == strlen(want) && memcmp(t, want, tl) == 0, "flush: got '%.*s', want '%s'",
                  (int)tl, t, want);
}

START_TEST(test_utf8_split) {
    struct wk_stream *s = mk(NULL, 0);
    PUSH(s, "caf\xC3", "caf", false); /* é = C3 A9 over two pushes */
    PUSH(s, "\xA9!", "\xC3\xA9!", false);
    PUSH(s, "\xE2", "", false); /* € = E2 82 AC over three */
    PUSH(s, "\x82", "", false);
    PUSH(s, "\xAC", "\xE2\x82\xAC", false);
    PUSH(s, "\xF0\x9F", "", false); /* U+1F600 = F0 9F 98 80: 2 + 1 + 1 */
    PUSH(s, "\x98", "", false);
    PUSH(s, "\x80x", "\xF0\x9F\x98\x80x", false);
    PUSH(s, "", "", false);
    flush_expect(s, "");
    wk_stream_free(s);
}
END_TEST

START_TEST(test_utf8_invalid) {
    struct wk_stream *s = mk(NULL, 0);
    PUSH(s, "\xFF", FFFD, false);               /* can never start a character */
    PUSH(s, "a\x80" "b", "a" FFFD "b", false);  /* stray continuation byte */
    PUSH(s, "\xC3(", FFFD "(", false);          /* lead then a non-continuation */
    PUSH(s, "\xE0\x80", FFFD FFFD, false);      /* overlong: E0 needs A0..BF */
    PUSH(s, "\xED\xA0\x80", FFFD FFFD FFFD, false); /* a surrogate */
    PUSH(s, "\xF4\x90", FFFD FFFD, false);      /* > U+10FFFF */
    PUSH(s, "\xC0\xAF", FFFD FFFD, false);      /* C0/C1 are never valid */
    PUSH(s, "\xE2\x82", "", false);             /* incomplete: held ... */
    PUSH(s, "Z", FFFD "Z", false);              /* ... until proven invalid */
    PUSH(s, "ok\xE2\x82", "ok", false);
    flush_expect(s, FFFD);                       /* incomplete at the end */
    PUSH(s, "again", "again", false);            /* usable after a flush */
    wk_stream_free(s);
}
END_TEST

START_TEST(test_stop_split_three_pushes) {
    const char *stops[] = {"<|END|>"};
    struct wk_stream *s = mk(stops, 1);
    PUSH(s, "Hello <|", "Hello ", false);
    PUSH(s, "EN", "", false);
    PUSH(s, "D|> and more", "", true);
    PUSH(s, "ignored", "", true); /* over after a stop */
    flush_expect(s, "");
    wk_stream_free(s);
}
END_TEST

START_TEST(test_stop_near_miss_released) {
    const char *stops[] = {"STOP"};
    struct wk_stream *s = mk(stops, 1);
    PUSH(s, "go ST", "go ", false);
    PUSH(s, "ART", "START", false); /* not the stop after all */
    PUSH(s, "S", "", false);
    PUSH(s, "TO", "", false);
    PUSH(s, "X", "STOX", false);
    flush_expect(s, "");
    wk_stream_free(s);
}
END_TEST

START_TEST(test_stop_text_before) {
    const char *stops[] = {"STOP"};
    struct wk_stream *s = mk(stops, 1);
    PUSH(s, "abcSTOPdef", "abc", true);
    wk_stream_free(s);
    s = mk(stops, 1);
    PUSH(s, "ab", "ab", false);
    PUSH(s, "cS", "c", false);
    PUSH(s, "TOP", "", true);
    wk_stream_free(s);
    s = mk(stops, 1); /* the stop right at the start */
    PUSH(s, "STOP", "", true);
    wk_stream_free(s);
}
END_TEST

START_TEST(test_flush_releases_tail) {
    const char *stops[] = {"STOP"};
    struct wk_stream *s = mk(stops, 1);
    PUSH(s, "xyzST", "xyz", false);
    flush_expect(s, "ST");
    wk_stream_free(s);
    s = mk(stops, 1);
    PUSH(s, "xyzSTO\xE2\x82", "xyz", false);
    flush_expect(s, "STO" FFFD);
    wk_stream_free(s);
}
END_TEST

START_TEST(test_several_stops) {
    const char *stops[] = {"\n\n", "END", "Observation:"};
    struct wk_stream *s = mk(stops, 3);
    PUSH(s, "line\n", "line", false); /* "\n" may start "\n\n" */
    PUSH(s, "more E", "\nmore ", false);
    PUSH(s, "NDING", "", true);
    wk_stream_free(s);
    s = mk(stops, 3);
    PUSH(s, "a\n", "a", false);
    PUSH(s, "\nb", "", true); /* the other stop */
    wk_stream_free(s);
    /* the earliest occurrence wins when two complete in one push */
    s = mk(stops, 3);
    PUSH(s, "xObservation: END", "x", true);
    wk_stream_free(s);
    s = mk(stops, 3);
    PUSH(s, "Obs", "", false);
    PUSH(s, "erv", "", false);
    PUSH(s, "ed", "Observed", false);
    wk_stream_free(s);
}
END_TEST

START_TEST(test_stop_overlap) {
    const char *ab[] = {"ab"};
    struct wk_stream *s = mk(ab, 1);
    PUSH(s, "a", "", false);
    PUSH(s, "a", "a", false); /* the first 'a' cannot start "ab" any more */
    PUSH(s, "b", "", true);
    wk_stream_free(s);
    s = mk(ab, 1);
    PUSH(s, "aab", "a", true);
    wk_stream_free(s);
    const char *aab[] = {"aab"};
    s = mk(aab, 1);
    PUSH(s, "a", "", false);
    PUSH(s, "a", "", false);
    PUSH(s, "a", "a", false); /* "aaa": keep "aa" */
    PUSH(s, "b", "", true);
    wk_stream_free(s);
    const char *abab[] = {"abac"};
    s = mk(abab, 1);
    PUSH(s, "ab", "", false);
    PUSH(s, "ab", "ab", false); /* "abab": "ab" may still start "abac" */
    PUSH(s, "ac", "", true);
    wk_stream_free(s);
}
END_TEST

START_TEST(test_stop_with_multibyte) {
    const char *stops[] = {"\xC3\xA9!"}; /* "é!" */
    struct wk_stream *s = mk(stops, 1);
    PUSH(s, "caf\xC3", "caf", false);
    PUSH(s, "\xA9", "", false);
    PUSH(s, "!", "", true);
    wk_stream_free(s);
    s = mk(stops, 1);
    PUSH(s, "\xC3", "", false);
    PUSH(s, "\xA9?", "\xC3\xA9?", false);
    wk_stream_free(s);
}
END_TEST

START_TEST(test_create_errors) {
    struct wk_stream *s = (struct wk_stream *)1;
    char err[256];
    const char *empty[] = {"ok", ""};
    ck_assert_int_eq(wk_stream_create(empty, 2, &s, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(s);
    ck_assert_msg(strstr(err, "stop string 1") != NULL, "%s", err);
    const char *bad[] = {"\xFF"};
    ck_assert_int_eq(wk_stream_create(bad, 1, &s, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    ck_assert_msg(strstr(err, "UTF-8") != NULL, "%s", err);
    wk_stream_free(NULL);
}
END_TEST

/* property test: valid UTF-8 split at random byte positions; every chunk is
 * valid UTF-8, and the concatenation is the text up to the first stop (or
 * all of it) */
static bool valid_utf8(const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    for (size_t i = 0; i < n;) {
        size_t len = s[i] < 0x80 ? 1 : (s[i] >> 5) == 6 ? 2 : (s[i] >> 4) == 14 ? 3 : (s[i] >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return false;
        i += len;
    }
    return true;
}

START_TEST(test_random_splits) {
    static const char *alphabet[] = {"a", "b", "\n", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"};
    const char *stops[] = {"ba\xC3\xA9", "\xE2\x82\xAC\xE2\x82\xAC", "\n\nb"};
    uint64_t ctr = 0;
    for (int trial = 0; trial < 2000; trial++) {
        char text[256];
        size_t tl = 0;
        int nchar = 1 + (int)(wk_rng_u01(5, ctr++) * 40);
        for (int k = 0; k < nchar; k++) {
            const char *c = alphabet[(int)(wk_rng_u01(5, ctr++) * 6)];
            memcpy(text + tl, c, strlen(c));
            tl += strlen(c);
        }
        text[tl] = '\0';
        size_t n_stops = (size_t)(trial % 4); /* 0..3 stops */
        /* expected: text up to the earliest stop */
        size_t cut = tl;
        for (size_t k = 0; k < n_stops; k++) {
            char *h = strstr(text, stops[k]);
            if (h && (size_t)(h - text) < cut) cut = (size_t)(h - text);
        }
        struct wk_stream *s = mk(stops, n_stops);
        char got[512];
        size_t gl = 0, pos = 0;
        bool stopped = false;
        while (pos < tl && !stopped) {
            size_t piece = 1 + (size_t)(wk_rng_u01(6, ctr++) * 5);
            if (piece > tl - pos) piece = tl - pos;
            const char *t;
            size_t n;
            stopped = wk_stream_push(s, text + pos, piece, &t, &n);
            ck_assert(valid_utf8(t, n));
            memcpy(got + gl, t, n);
            gl += n;
            pos += piece;
        }
        if (!stopped) {
            const char *t;
            size_t n;
            wk_stream_flush(s, &t, &n);
            ck_assert(valid_utf8(t, n));
            memcpy(got + gl, t, n);
            gl += n;
        }
        ck_assert_int_eq(stopped, cut < tl);
        ck_assert_msg(gl == cut && memcmp(got, text, cut) == 0, "trial %d: got %zu bytes, want %zu",
                      trial, gl, cut);
        wk_stream_free(s);
    }
}
END_TEST

START_TEST(test_utf8_repair) {
    struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"", 0, ""},
        {"plain", 5, "plain"},
        {"\xC3\xA9", 2, "\xC3\xA9"},
        {"\xE2", 1, "\xEF\xBF\xBD"},                   /* a lone lead byte */
        {"\xE2\x80", 2, "\xEF\xBF\xBD"},               /* an incomplete tail: one U+FFFD */
        {"a\x80" "b", 3, "a\xEF\xBF\xBD" "b"},         /* a stray continuation byte */
        {"\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},   /* overlong: two maximal subparts */
        {"\xF0\x9F\x98\x80", 4, "\xF0\x9F\x98\x80"},
        {"<tool_call>", 11, "<tool_call>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = 99;
        char *out = wk_utf8_repair(cases[i].in, cases[i].n, &len);
        ck_assert_msg(strcmp(out, cases[i].want) == 0, "case %zu", i);
        ck_assert_uint_eq(len, strlen(cases[i].want));
        free(out);
    }
}
END_TEST

static Suite *stream_suite(void) {
    Suite *s = suite_create("stream");
    TCase *tc = tcase_create("stream");
    tcase_add_test(tc, test_utf8_split);
    tcase_add_test(tc, test_utf8_invalid);
    tcase_add_test(tc, test_stop_split_three_pushes);
    tcase_add_test(tc, test_stop_near_miss_released);
    tcase_add_test(tc, test_stop_text_before);
    tcase_add_test(tc, test_flush_releases_tail);
    tcase_add_test(tc, test_several_stops);
    tcase_add_test(tc, test_stop_overlap);
    tcase_add_test(tc, test_stop_with_multibyte);
    tcase_add_test(tc, test_create_errors);
    tcase_add_test(tc, test_random_splits);
    tcase_add_test(tc, test_utf8_repair);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return tu_run_suite(stream_suite());
}
