/* test-tokenizer.c — vocabularies and tokenizers against llama.cpp / Hugging
 * Face references.
 *
 *   reference  every case of ../shared/reference/tokenizer/<name>.{inp,out}
 *              (llama.cpp's test-tokenizer-0 format: inputs separated by
 *              "\n__ggml_vocab_test__\n", one line of ids per input), no BOS,
 *              no special parsing; then detokenize(tokenize(x)) == x
 *   qwen       known ids, special-token splitting, EOG, pieces
 *   models     stories260K (SPM, 512 tokens), tiny-qwen2's cut Qwen vocab
 *   errors     hand-built GGUF vocabularies that must be refused, by name
 *   timing     full Qwen vocab load and a 10 KB text (printed to stderr)
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "loader/gguf.h"
#include "loader/tokenizer.h"
#include "tests/testutil.h"


/* Open a shared model and load its vocab (the "shared" group made sure the
 * file is there: absent is a failure). Returns true. */
static bool load_vocab(const char *rel, struct gguf_file *g, struct wk_vocab *v) {
    char path[1024], err[256] = "";
    tu_shared_path(path, sizeof path, rel);
    wk_status s = gguf_file_open(path, g, err, sizeof err);
    ck_assert_msg(s == WK_STATUS_OK, "gguf_file_open(%s): %s", path, err);
    s = wk_vocab_load(g, v, err, sizeof err);
    ck_assert_msg(s == WK_STATUS_OK, "wk_vocab_load(%s): %s", path, err);
    return true;
}

static void tok(const struct wk_vocab *v, const char *text, size_t len, bool special, int32_t **ids, size_t *n) {
    char err[256] = "";
    wk_status s = wk_tokenize(v, text, len, special, ids, n, err, sizeof err);
    ck_assert_msg(s == WK_STATUS_OK, "wk_tokenize: %s", err);
    ck_assert_ptr_nonnull(*ids);
}

/* Concatenated pieces (malloc'ed, NUL-terminated); *len set. */
static char *detok(const struct wk_vocab *v, const int32_t *ids, size_t n, bool render_special, size_t *len) {
    size_t cap = 64, o = 0;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++) {
        size_t pl;
        const char *p = wk_token_piece(v, ids[i], render_special, &pl);
        while (o + pl + 1 > cap) {
            cap *= 2;
            s = realloc(s, cap);
            ck_assert_ptr_nonnull(s);
        }
        memcpy(s + o, p, pl);
        o += pl;
    }
    s[o] = '\0';
    *len = o;
    return s;
}

static char *ids_str(const int32_t *ids, size_t n) {
    size_t cap = 16 + n * 12;
    char *s = malloc(cap);
    ck_assert_ptr_nonnull(s);
    size_t o = 0;
    s[0] = '\0';
    for (size_t i = 0; i < n && o + 13 < cap; i++) o += (size_t)snprintf(s + o, cap - o, " %d", ids[i]);
    return s;
}

static void expect_ids(const struct wk_vocab *v, const char *text, bool special, const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n;
    tok(v, text, strlen(text), special, &ids, &n);
    char *got = ids_str(ids, n), *exp = ids_str(want, n_want);
    ck_assert_msg(n == n_want && memcmp(ids, want, n * sizeof *ids) == 0, "'%s': got%s, want%s", text, got, exp);
    free(got);
    free(exp);
    free(ids);
}

// --- reference files -----------------------------------------------------------------

/* Run every case of reference/tokenizer/<name>; spm_prefix: the detokenized
 * text is " " + input (SentencePiece adds the leading space). */
static void run_reference(const char *name, const char *vocab_rel, bool spm_prefix) {
    char path[1024];
    struct gguf_file g;
    struct wk_vocab v;
    snprintf(path, sizeof path, "models/%s", vocab_rel);
    ck_assert(load_vocab(path, &g, &v));

    char rel[256];
    size_t inp_len, out_len;
    snprintf(rel, sizeof rel, "reference/tokenizer/%s.inp", name);
    char *inp = tu_read_file(tu_shared_path(path, sizeof path, rel), &inp_len);
    ck_assert_msg(inp != NULL, "cannot read %s", path);
    snprintf(rel, sizeof rel, "reference/tokenizer/%s.out", name);
    char *out = tu_read_file(tu_shared_path(path, sizeof path, rel), &out_len);
    ck_assert_msg(out != NULL, "cannot read %s", path);

    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t sep_len = sizeof sep - 1;
    size_t ip = 0, op = 0;
    int n_cases = 0, n_fail = 0;
    while (ip < inp_len) {
        /* next input: up to the separator */
        const char *end = memmem(inp + ip, inp_len - ip, sep, sep_len);
        ck_assert_msg(end != NULL, "%s.inp: input %d has no separator", name, n_cases);
        size_t len = (size_t)(end - (inp + ip));
        const char *text = inp + ip;
        ip += len + sep_len;

        /* its expected line */
        ck_assert_msg(op < out_len, "%s.out: no line for input %d", name, n_cases);
        const char *nl = memchr(out + op, '\n', out_len - op);
        size_t ll = nl ? (size_t)(nl - (out + op)) : out_len - op;
        int32_t want[4096];
        size_t n_want = 0;
        {
            char line[65536];
            ck_assert(ll < sizeof line);
            memcpy(line, out + op, ll);
            line[ll] = '\0';
            char *p = line, *e;
            for (;;) {
                long x = strtol(p, &e, 10);
                if (e == p) break;
                ck_assert(n_want < 4096);
                want[n_want++] = (int32_t)x;
                p = e;
            }
        }
        op += ll + 1;

        int32_t *ids;
        size_t n;
        tok(&v, text, len, false, &ids, &n);
        if (n != n_want || memcmp(ids, want, n * sizeof *ids) != 0) {
            char *got = ids_str(ids, n), *exp = ids_str(want, n_want);
            fprintf(stderr, "%s case %d '%.*s':\n  got %s\n  want%s\n", name, n_cases, (int)len, text, got, exp);
            free(got);
            free(exp);
            n_fail++;
        }

        /* round trip */
        size_t dl;
        char *d = detok(&v, ids, n, false, &dl);
        if (spm_prefix && len > 0) {
            ck_assert_msg(dl == len + 1 && d[0] == ' ' && memcmp(d + 1, text, len) == 0,
                          "%s case %d: detokenized '%s' is not ' ' + '%.*s'", name, n_cases, d, (int)len, text);
        } else {
            ck_assert_msg(dl == len && memcmp(d, text, len) == 0, "%s case %d: detokenized '%s' != '%.*s'", name,
                          n_cases, d, (int)len, text);
        }
        free(d);
        free(ids);
        n_cases++;
    }
    ck_assert_msg(op >= out_len, "%s.out has more lines than %s.inp has inputs (%d)", name, name, n_cases);
    fprintf(stderr, "%s: %d cases, %d failed\n", name, n_cases, n_fail);
    ck_assert_int_eq(n_fail, 0);
    ck_assert_int_gt(n_cases, 40);
    free(inp);
    free(out);
    wk_vocab_free(&v);
    gguf_file_close(&g);
}

START_TEST(test_reference_qwen25) { run_reference("qwen2.5", "qwen2.5-vocab.gguf", false); }
END_TEST

START_TEST(test_reference_llama_spm) { run_reference("llama-spm", "llama-spm-vocab.gguf", true); }
END_TEST

START_TEST(test_reference_phi3) { run_reference("phi-3", "phi-3-vocab.gguf", true); }
END_TEST

/* Phi-3 chat markup: specials swallow the newline after them (rstrip in its
 * tokenizer.json, llama.cpp likewise); "▁Hello" is 15043 (phi-3.out). */
START_TEST(test_phi3_chat) {
    struct gguf_file g;
    struct wk_vocab v;
    ck_assert(load_vocab("models/phi-3-vocab.gguf", &g, &v));
    ck_assert_int_eq(v.eos, 32000);
    ck_assert_int_eq(v.eot, 32007); /* <|end|>, found by its text */
    ck_assert(wk_token_is_eog(&v, 32000));
    ck_assert(wk_token_is_eog(&v, 32007));
    ck_assert(!wk_token_is_eog(&v, 32001));
    expect_ids(&v, "<|user|>\nHello<|end|>\n<|assistant|>\n", true, (const int32_t[]){32010, 15043, 32007, 32001}, 4);
    /* <s> does not strip: the text after it keeps its newline */
    int32_t *ids, *plain;
    size_t n, n_plain;
    tok(&v, "<s>\nHello", 9, true, &ids, &n);
    tok(&v, "\nHello", 6, false, &plain, &n_plain);
    ck_assert_uint_eq(n, 1 + n_plain);
    ck_assert_int_eq(ids[0], 1);
    ck_assert(memcmp(ids + 1, plain, n_plain * sizeof *ids) == 0);
    free(ids);
    free(plain);
    wk_vocab_free(&v);
    gguf_file_close(&g);
}
END_TEST

// --- Qwen2.5 specifics -------------------------------------------------------------------

START_TEST(test_qwen_basics) {
    struct gguf_file g;
    struct wk_vocab v;
    ck_assert(load_vocab("models/qwen2.5-vocab.gguf", &g, &v));
    ck_assert_int_eq(v.type, WK_VOCAB_BPE);
    ck_assert_str_eq(v.pre, "qwen2");
    ck_assert_int_eq(v.n_tokens, 151936);
    ck_assert_int_eq(v.eos, 151645);
    ck_assert_int_eq(v.bos, 151643);
    ck_assert_int_eq(v.pad, 151643);
    ck_assert(!v.add_bos);

    expect_ids(&v, "Hello world", false, (const int32_t[]){9707, 1879}, 2);
    expect_ids(&v, " Hello world", false, (const int32_t[]){21927, 1879}, 2);

    /* parse_special: the control id, then "user\n" as plain text */
    int32_t *plain, *ids;
    size_t n_plain, n;
    tok(&v, "user\n", 5, false, &plain, &n_plain);
    ck_assert_uint_gt(n_plain, 0);
    tok(&v, "<|im_start|>user\n", 17, true, &ids, &n);
    ck_assert_uint_eq(n, 1 + n_plain);
    ck_assert_int_eq(ids[0], 151644);
    ck_assert_int_eq(ids[0], wk_token_id(&v, "<|im_start|>"));
    ck_assert(memcmp(ids + 1, plain, n_plain * sizeof *ids) == 0);
    free(ids);
    free(plain);

    /* a whole turn: control ids where the template put them, text between */
    const char *turn = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n";
    tok(&v, turn, strlen(turn), true, &ids, &n);
    int n_ctrl = 0;
    for (size_t i = 0; i < n; i++) n_ctrl += ids[i] == 151644 || ids[i] == 151645;
    ck_assert_int_eq(n_ctrl, 3);
    size_t dl;
    char *d = detok(&v, ids, n, true, &dl);
    ck_assert_str_eq(d, turn);
    free(d);
    d = detok(&v, ids, n, false, &dl);
    ck_assert_str_eq(d, "user\nHi\nassistant\n");
    free(d);
    free(ids);

    /* without parse_special a control token's text is plain text */
    tok(&v, "<|im_end|>", 10, false, &ids, &n);
    ck_assert_uint_gt(n, 1);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_ne(ids[i], 151645);
        ck_assert_int_eq(wk_token_attr(&v, ids[i]), WK_TOKEN_NORMAL);
    }
    d = detok(&v, ids, n, false, &dl);
    ck_assert_str_eq(d, "<|im_end|>");
    free(d);
    free(ids);
    /* nor does a user-defined token's text become its id */
    tok(&v, "<tool_call>", 11, false, &ids, &n);
    for (size_t i = 0; i < n; i++) ck_assert_int_ne(ids[i], 151657);
    free(ids);
    tok(&v, "<tool_call>", 11, true, &ids, &n);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(ids[0], 151657);
    free(ids);

    /* EOG, attributes, pieces, texts */
    ck_assert(wk_token_is_eog(&v, 151645));
    ck_assert(wk_token_is_eog(&v, 151643));
    ck_assert(!wk_token_is_eog(&v, 151644));
    ck_assert(!wk_token_is_eog(&v, 9707));
    ck_assert(!wk_token_is_eog(&v, -1));
    ck_assert(!wk_token_is_eog(&v, 151936));
    ck_assert_int_eq(wk_token_attr(&v, 151645), WK_TOKEN_CONTROL);
    ck_assert_int_eq(wk_token_attr(&v, 151657), WK_TOKEN_USER_DEFINED);
    ck_assert_int_eq(wk_token_attr(&v, 9707), WK_TOKEN_NORMAL);
    size_t pl;
    ck_assert_str_eq(wk_token_text(&v, 21927), "\xc4\xa0Hello"); /* "ĠHello" */
    const char *p = wk_token_piece(&v, 21927, false, &pl);
    ck_assert(pl == 6 && memcmp(p, " Hello", 6) == 0);
    p = wk_token_piece(&v, 151645, false, &pl);
    ck_assert_uint_eq(pl, 0);
    p = wk_token_piece(&v, 151645, true, &pl);
    ck_assert(pl == 10 && memcmp(p, "<|im_end|>", 10) == 0);
    p = wk_token_piece(&v, 151657, false, &pl); /* user-defined: always its text */
    ck_assert(pl == 11 && memcmp(p, "<tool_call>", 11) == 0);
    p = wk_token_piece(&v, 1000000, true, &pl);
    ck_assert_uint_eq(pl, 0);
    ck_assert_int_eq(wk_token_id(&v, "Hello"), 9707);
    ck_assert_int_eq(wk_token_id(&v, "no such token at all"), -1);
    ck_assert_ptr_nonnull(v.chat_template == NULL ? "" : v.chat_template);

    /* bytes that are not UTF-8 survive the round trip */
    static const char bad[] = "a\xff\xfe b\xc3(\xe2\x82 \xf0\x9f\x98\x80!\x80";
    tok(&v, bad, sizeof bad - 1, false, &ids, &n);
    d = detok(&v, ids, n, false, &dl);
    ck_assert(dl == sizeof bad - 1 && memcmp(d, bad, dl) == 0);
    free(d);
    free(ids);

    /* empty text: no ids, a freeable buffer */
    tok(&v, "", 0, true, &ids, &n);
    ck_assert_uint_eq(n, 0);
    free(ids);

    wk_vocab_free(&v);
    gguf_file_close(&g);
}
END_TEST

/* ~10 KB of mixed text tokenizes and round-trips (speed is a benchmark's
 * business, not a unit test's). */
START_TEST(test_qwen_long_text) {
    struct gguf_file g;
    struct wk_vocab v;
    char path[1024], err[256];
    tu_shared_path(path, sizeof path, "models/qwen2.5-vocab.gguf");
    ck_assert(gguf_file_open(path, &g, err, sizeof err) == WK_STATUS_OK);
    ck_assert_msg(wk_vocab_load(&g, &v, err, sizeof err) == WK_STATUS_OK, "%s", err);

    /* ~10 KB of mixed text built from the reference inputs */
    size_t inp_len;
    char *inp = tu_read_file(tu_shared_path(path, sizeof path, "reference/tokenizer/qwen2.5.inp"), &inp_len);
    ck_assert_ptr_nonnull(inp);
    size_t cap = 10240, n_text = 0;
    char *text = malloc(cap);
    ck_assert_ptr_nonnull(text);
    while (n_text < cap) {
        size_t k = inp_len < cap - n_text ? inp_len : cap - n_text;
        memcpy(text + n_text, inp, k);
        n_text += k;
    }
    int32_t *ids;
    size_t n;
    tok(&v, text, n_text, false, &ids, &n);
    size_t dl;
    char *d = detok(&v, ids, n, false, &dl);
    ck_assert(dl == n_text && memcmp(d, text, n_text) == 0);
    free(d);
    free(ids);
    free(text);
    free(inp);
    wk_vocab_free(&v);
    gguf_file_close(&g);
}
END_TEST

// --- small real models --------------------------------------------------------------------

START_TEST(test_stories260k) {
    struct gguf_file g;
    struct wk_vocab v;
    ck_assert(load_vocab("models/stories260K.gguf", &g, &v));
    ck_assert_int_eq(v.type, WK_VOCAB_SPM);
    ck_assert_int_eq(v.n_tokens, 512);
    ck_assert_int_eq(v.bos, 1);
    ck_assert_int_eq(v.eos, 2);
    ck_assert_int_eq(v.unk, 0);
    ck_assert_int_eq(v.pad, -1); /* 0xFFFFFFFF in the file */
    ck_assert(v.add_bos);
    ck_assert(v.add_space_prefix);
    /* reference/stories260K/once.txt: prompt_ids 1 403 407 261 378 (BOS added by the caller) */
    expect_ids(&v, "Once upon a time", false, (const int32_t[]){403, 407, 261, 378}, 4);
    expect_ids(&v, "Once upon a time", true, (const int32_t[]){403, 407, 261, 378}, 4);
    ck_assert(wk_token_is_eog(&v, 2));
    ck_assert(!wk_token_is_eog(&v, 1));
    /* a character outside the 512-token vocabulary: byte fallback, round trip */
    int32_t *ids;
    size_t n, dl;
    tok(&v, "Zoë 日本", strlen("Zoë 日本"), false, &ids, &n);
    char *d = detok(&v, ids, n, false, &dl);
    ck_assert_str_eq(d, " Zoë 日本");
    free(d);
    free(ids);
    /* bytes that are not UTF-8 (an invalid lead must not swallow the "▁" of
     * the spaces after it) */
    static const char bad[] = "\xff\xff  x\xe2\x96 \xc3";
    tok(&v, bad, sizeof bad - 1, false, &ids, &n);
    d = detok(&v, ids, n, false, &dl);
    ck_assert(dl == sizeof bad && d[0] == ' ' && memcmp(d + 1, bad, sizeof bad - 1) == 0);
    free(d);
    free(ids);
    /* parse_special: "<s>" is BOS; the text after it gets its own "▁" prefix */
    tok(&v, "<s>Once", 7, true, &ids, &n);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(ids[1], 403);
    free(ids);
    tok(&v, "<s>", 3, false, &ids, &n);
    for (size_t i = 0; i < n; i++) ck_assert_int_ne(ids[i], 1);
    free(ids);
    wk_vocab_free(&v);
    gguf_file_close(&g);
}
END_TEST

START_TEST(test_tiny_qwen2) {
    struct gguf_file g;
    struct wk_vocab v;
    ck_assert(load_vocab("models/tiny-qwen2-f32.gguf", &g, &v));
    char path[1024];
    size_t len;
    char *ref = tu_read_file(tu_shared_path(path, sizeof path, "reference/tiny-qwen2/f32.once.txt"), &len);
    ck_assert_msg(ref != NULL, "cannot read %s", path);
    ck_assert_int_eq(v.n_tokens, 1152);
    ck_assert_int_eq(v.eos, 1026);

    /* "prompt_ids: ..." of the reference run */
    const char *p = strstr(ref, "prompt_ids:");
    ck_assert_ptr_nonnull(p);
    p += strlen("prompt_ids:");
    int32_t want[64];
    size_t n_want = 0;
    for (char *e;; p = e) {
        long x = strtol(p, &e, 10);
        if (e == p || *p == '\n') break;
        want[n_want++] = (int32_t)x;
        if (*e == '\n') break;
    }
    ck_assert_uint_gt(n_want, 0);
    expect_ids(&v, "Once upon a time", true, want, n_want);
    free(ref);

    /* the chat prompt of reference/tiny-qwen2/f32.chat.txt */
    ref = tu_read_file(tu_shared_path(path, sizeof path, "reference/tiny-qwen2/f32.chat.txt"), &len);
    ck_assert_ptr_nonnull(ref);
    p = strstr(ref, "prompt_ids:");
    ck_assert_ptr_nonnull(p);
    p += strlen("prompt_ids:");
    n_want = 0;
    for (char *e;; p = e) {
        long x = strtol(p, &e, 10);
        if (e == p) break;
        want[n_want++] = (int32_t)x;
        if (*e == '\n') break;
    }
    expect_ids(&v, "<|im_start|>user\nWrite a haiku about GPUs.<|im_end|>\n<|im_start|>assistant\n", true, want,
               n_want);
    ck_assert(wk_token_is_eog(&v, 1026));
    ck_assert(wk_token_is_eog(&v, 1024));
    free(ref);
    wk_vocab_free(&v);
    gguf_file_close(&g);
}
END_TEST

// --- hand-built vocabularies that must be refused -------------------------------------

static void kv_strs(struct tu_wb *b, const char *k, const char *const *s, size_t n) {
    tu_wb_str(b, k);
    tu_wb_u32(b, 9);
    tu_wb_u32(b, 8);
    tu_wb_u64(b, n);
    for (size_t i = 0; i < n; i++) tu_wb_str(b, s[i]);
}

/* A byte-level vocab: the 256 byte chars, "ab" (256), "12" (257), "<|end|>"
 * (258, eos); merges "a b", "1 2"; pre-tokenizer `pre`. `variant` breaks one
 * thing. Returns the status of wk_vocab_load, err filled. */
enum variant { V_OK, V_PRE, V_MODEL, V_NO_MERGES, V_BAD_MERGE, V_BOS_RANGE, V_NO_TOKENS, V_TYPE_LEN };

static wk_status build_and_load(enum variant var, const char *pre, struct wk_vocab *v, char *err, size_t err_len) {
    static char texts[256][8];
    const char *tokens[259];
    uint32_t cp = 256;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        uint32_t c = keep ? (uint32_t)b : cp++;
        char *t = texts[n];
        if (c < 0x80) {
            t[0] = (char)c, t[1] = 0;
        } else {
            t[0] = (char)(0xC0 | (c >> 6)), t[1] = (char)(0x80 | (c & 0x3F)), t[2] = 0;
        }
        tokens[n] = texts[n];
        n++;
    }
    tokens[n++] = "ab";
    tokens[n++] = "12";
    tokens[n++] = "<|end|>";
    const char *merges[] = {"a b", var == V_BAD_MERGE ? "12" : "1 2"};
    struct tu_wb b = {0};
    int n_kv = 5 + (var == V_BOS_RANGE) + (var == V_TYPE_LEN) - (var == V_NO_MERGES) - (var == V_NO_TOKENS);
    tu_wb_u32(&b, GGUF_MAGIC);
    tu_wb_u32(&b, 3);
    tu_wb_u64(&b, 0);
    tu_wb_u64(&b, (uint64_t)n_kv);
    tu_wb_kv_str(&b, "tokenizer.ggml.model", var == V_MODEL ? "bert" : "gpt2");
    tu_wb_kv_str(&b, "tokenizer.ggml.pre", var == V_PRE ? "tekken-x" : pre);
    if (var != V_NO_TOKENS) kv_strs(&b, "tokenizer.ggml.tokens", tokens, (size_t)n);
    if (var != V_NO_MERGES) kv_strs(&b, "tokenizer.ggml.merges", merges, 2);
    if (var == V_BOS_RANGE) tu_wb_kv_u32(&b, "tokenizer.ggml.bos_token_id", 259);
    if (var == V_TYPE_LEN) {
        tu_wb_str(&b, "tokenizer.ggml.token_type");
        tu_wb_u32(&b, 9);
        tu_wb_u32(&b, 5);
        tu_wb_u64(&b, 3);
        for (int i = 0; i < 3; i++) tu_wb_u32(&b, 1);
    }
    tu_wb_kv_u32(&b, "tokenizer.ggml.eos_token_id", 258);
    struct gguf_file g;
    wk_status s = gguf_file_parse(b.p, b.n, &g, err, err_len);
    ck_assert_msg(s == WK_STATUS_OK, "gguf_file_parse: %s", err);
    s = wk_vocab_load(&g, v, err, err_len);
    gguf_file_close(&g); /* the vocab copies what it keeps */
    free(b.p);
    return s;
}

START_TEST(test_synthetic_ok) {
    struct wk_vocab v;
    char err[256] = "";
    ck_assert_msg(build_and_load(V_OK, "gpt-2", &v, err, sizeof err) == WK_STATUS_OK, "%s", err);
    ck_assert_str_eq(v.pre, "gpt-2");
    ck_assert_int_eq(v.n_tokens, 259);
    ck_assert_int_eq(v.bos, -1);
    ck_assert(!v.add_bos);
    /* "abab a" -> ab ab Ġ a : merges apply inside words only */
    int32_t *ids;
    size_t n;
    tok(&v, "abab a", 6, false, &ids, &n);
    int32_t id_ab = wk_token_id(&v, "ab"), id_a = wk_token_id(&v, "a"), id_sp = wk_token_id(&v, "\xc4\xa0");
    ck_assert_int_eq(id_ab, 256);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(ids[0], id_ab);
    ck_assert_int_eq(ids[1], id_ab);
    ck_assert_int_eq(ids[2], id_sp);
    ck_assert_int_eq(ids[3], id_a);
    free(ids);
    /* eos from the key is EOG, nothing else */
    ck_assert(wk_token_is_eog(&v, 258));
    ck_assert(!wk_token_is_eog(&v, 256));
    ck_assert(!wk_token_is_eog(&v, 257));
    wk_vocab_free(&v);
    wk_vocab_free(&v); /* safe twice */
}
END_TEST

/* Pre-tokenizer selection: how "12 1234'S" splits shows which regexes ran
 * (digits merge "1 2" only inside one piece). */
START_TEST(test_synthetic_pre) {
    static const struct {
        const char *pre;
        const char *want; /* expected token texts, space-separated; '_' = "Ġ" */
    } cases[] = {
        /* GPT-2: digit runs are one piece; "'S" is not a contraction (case) */
        {"gpt-2", "12 _ 12 3 4 ' S"},
        /* default: also "\p{N}+" then "[0-9]{3}" split 1234 into 123|4 */
        {"default", "12 _ 12 3 4 ' S"},
        /* smollm: single digits first, so "1 2" never merges */
        {"smollm", "1 2 _ 1 2 3 4 ' S"},
        /* qwen2: \p{N} one digit a piece; "'S" is a contraction (?i) */
        {"qwen2", "1 2 _ 1 2 3 4 ' S"},
        /* llama3: digits in runs of 1..3 */
        {"llama-bpe", "12 _ 12 3 4 ' S"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct wk_vocab v;
        char err[256] = "";
        ck_assert_msg(build_and_load(V_OK, cases[c].pre, &v, err, sizeof err) == WK_STATUS_OK, "%s: %s",
                      cases[c].pre, err);
        ck_assert_str_eq(v.pre, cases[c].pre);
        int32_t *ids;
        size_t n;
        tok(&v, "12 1234'S", 9, false, &ids, &n);
        char got[256] = "";
        for (size_t i = 0; i < n; i++) {
            const char *t = wk_token_text(&v, ids[i]);
            if (strcmp(t, "\xc4\xa0") == 0) t = "_";
            if (i) strcat(got, " ");
            strcat(got, t);
        }
        ck_assert_msg(strcmp(got, cases[c].want) == 0, "pre %s: got '%s', want '%s'", cases[c].pre, got,
                      cases[c].want);
        ck_assert(!v.add_bos); /* llama3 defaults to BOS, but this vocab has no BOS id */
        free(ids);
        wk_vocab_free(&v);
    }
}
END_TEST

static void expect_refused(enum variant var, wk_status want, const char *needle) {
    struct wk_vocab v;
    char err[256] = "";
    wk_status s = build_and_load(var, "gpt-2", &v, err, sizeof err);
    ck_assert_msg(s == want, "variant %d: got %s (%s), want %s", var, wk_status_name(s), err, wk_status_name(want));
    ck_assert_msg(strstr(err, needle) != NULL, "variant %d: '%s' does not name '%s'", var, err, needle);
    ck_assert_ptr_null(v.impl);
    wk_vocab_free(&v);
}

START_TEST(test_synthetic_refused) {
    expect_refused(V_PRE, WK_STATUS_BAD_MODEL, "unsupported pre-tokenizer 'tekken-x'");
    expect_refused(V_MODEL, WK_STATUS_BAD_MODEL, "'bert'");
    expect_refused(V_NO_MERGES, WK_STATUS_BAD_MODEL, "tokenizer.ggml.merges");
    expect_refused(V_BAD_MERGE, WK_STATUS_BAD_MODEL, "tokenizer.ggml.merges[1]");
    expect_refused(V_BOS_RANGE, WK_STATUS_BAD_MODEL, "tokenizer.ggml.bos_token_id");
    expect_refused(V_NO_TOKENS, WK_STATUS_BAD_MODEL, "tokenizer.ggml.tokens");
    expect_refused(V_TYPE_LEN, WK_STATUS_BAD_MODEL, "tokenizer.ggml.token_type");
}
END_TEST

START_TEST(test_bad_args) {
    int32_t *ids = (int32_t *)1;
    size_t n = 7;
    char err[256] = "";
    struct wk_vocab v;
    memset(&v, 0, sizeof v);
    ck_assert_int_eq(wk_tokenize(&v, "x", 1, false, &ids, &n, err, sizeof err), WK_STATUS_INVALID_ARGUMENT);
    ck_assert_ptr_null(ids);
    ck_assert_uint_eq(n, 0);
    size_t pl = 9;
    ck_assert_str_eq(wk_token_piece(&v, 0, true, &pl), "");
    ck_assert_uint_eq(pl, 0);
    ck_assert_int_eq(wk_token_id(&v, "x"), -1);
    wk_vocab_free(NULL);
}
END_TEST

/* Groups (tests/meson.build runs each as its own test):
 *   base    synthetic vocabularies built here
 *   shared  the vocabularies and reference logs in ../shared (SKIP, exit 77,
 *           when absent) */
static Suite *tokenizer_suite(const char *group) {
    Suite *s = suite_create("tokenizer");
    TCase *tc;
    if (!strcmp(group, "base")) {
        tc = tcase_create("synthetic");
        tcase_add_test(tc, test_synthetic_ok);
        tcase_add_test(tc, test_synthetic_pre);
        tcase_add_test(tc, test_synthetic_refused);
        tcase_add_test(tc, test_bad_args);
        suite_add_tcase(s, tc);
        return s;
    }
    static const char *const rels[] = {
        "models/qwen2.5-vocab.gguf", "models/llama-spm-vocab.gguf", "models/phi-3-vocab.gguf",
        "models/stories260K.gguf", "models/tiny-qwen2-f32.gguf",
        "reference/tokenizer/qwen2.5.inp", "reference/tokenizer/qwen2.5.out",
        "reference/tokenizer/llama-spm.inp", "reference/tokenizer/llama-spm.out",
        "reference/tokenizer/phi-3.inp", "reference/tokenizer/phi-3.out",
        "reference/tiny-qwen2/f32.once.txt", "reference/tiny-qwen2/f32.chat.txt", NULL};
    tu_require_shared("tokenizer tests on the shared vocabularies", rels);
    tc = tcase_create("reference");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_reference_qwen25);
    tcase_add_test(tc, test_reference_llama_spm);
    tcase_add_test(tc, test_reference_phi3);
    tcase_add_test(tc, test_phi3_chat);
    suite_add_tcase(s, tc);
    tc = tcase_create("qwen");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_qwen_basics);
    tcase_add_test(tc, test_qwen_long_text);
    suite_add_tcase(s, tc);
    tc = tcase_create("models");
    tcase_add_test(tc, test_stories260k);
    tcase_add_test(tc, test_tiny_qwen2);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv) {
    return tu_run_suite(tokenizer_suite(tu_group(argc, argv)));
}
