/* fuzz-tokenizer.c — libFuzzer target for the tokenizers.
 *
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true -Dcuda=disabled -Db_lundef=false
 *        ninja -C build-fuzz tests/fuzz-tokenizer
 * Run:   ORCD_SHARED=/path/to/shared build-fuzz/tests/fuzz-tokenizer -max_total_time=300
 *
 * The vocabularies (full Qwen2.5 byte-level BPE, stories260K and Phi-3
 * SentencePiece) are loaded once. Each input is tokenized with and without
 * special-token parsing, every id must be in range, and detokenizing must give
 * the input back: byte-exact for BPE; for SPM " " + input (llama.cpp's space
 * prefix) unless the input itself holds "▁", which detokenizes as a space. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/gguf.h"
#include "loader/tokenizer.h"

#define MAX_VOCABS 3

static struct gguf_file g_files[MAX_VOCABS];
static struct wk_vocab g_vocabs[MAX_VOCABS];
static int g_n;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *root = getenv("ORCD_SHARED");
    static const char *const rel[MAX_VOCABS] = {"models/qwen2.5-vocab.gguf", "models/stories260K.gguf",
                                                "models/phi-3-vocab.gguf"};
    for (int i = 0; i < MAX_VOCABS; i++) {
        char path[1024], err[256];
        snprintf(path, sizeof path, "%s/%s", root && *root ? root : "../shared", rel[i]);
        if (gguf_file_open(path, &g_files[g_n], err, sizeof err) != WK_STATUS_OK) {
            fprintf(stderr, "fuzz-tokenizer: skip %s: %s\n", path, err);
            continue;
        }
        if (wk_vocab_load(&g_files[g_n], &g_vocabs[g_n], err, sizeof err) != WK_STATUS_OK) {
            fprintf(stderr, "fuzz-tokenizer: %s: %s\n", path, err);
            abort();
        }
        g_n++;
    }
    if (g_n == 0) {
        fprintf(stderr, "fuzz-tokenizer: no vocabulary found (set ORCD_SHARED)\n");
        abort();
    }
    return 0;
}

static void check(const struct wk_vocab *v, const uint8_t *data, size_t size, bool special) {
    int32_t *ids = NULL;
    size_t n = 0;
    char err[256];
    if (wk_tokenize(v, (const char *)data, size, special, &ids, &n, err, sizeof err) != WK_STATUS_OK) abort();
    if (!ids) abort();
    size_t cap = size * 4 + 16, o = 0;
    char *d = malloc(cap);
    if (!d) abort();
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= v->n_tokens) abort();
        size_t pl;
        const char *p = wk_token_piece(v, ids[i], true, &pl);
        if (o + pl > cap) abort(); /* pieces can never outgrow the input this much */
        memcpy(d + o, p, pl);
        o += pl;
    }
    if (v->type == WK_VOCAB_BPE) {
        if (o != size || memcmp(d, data, size) != 0) abort();
    } else if (!memmem(data, size, "\xe2\x96\x81", 3)) {
        /* every fragment after a special token gets its own space prefix, so
         * only the plain-text case has a simple closed form */
        if (!special && size > 0 && (o != size + 1 || d[0] != ' ' || memcmp(d + 1, data, size) != 0)) abort();
        if (size == 0 && o != 0) abort();
    }
    free(d);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int i = 0; i < g_n; i++) {
        check(&g_vocabs[i], data, size, false);
        check(&g_vocabs[i], data, size, true);
    }
    return 0;
}
