/* fuzz-model.c — libFuzzer target for model loading from untrusted GGUF bytes:
 * gguf_file_parse, then wk_model_from_gguf (architecture table, every tensor
 * by name and shape, hyper-parameters, the tokenizer), then a tokenization.
 *
 * Build: CC=clang meson setup build-fuzz -Dfuzz=true -Dcuda=disabled -Db_lundef=false
 *        ninja -C build-fuzz tests/fuzz-model
 * Seed:  small synthetic models (tools/orcd-synth --vocab-size 300 --layers 1
 *        --embd 32 ...), e.g. in fuzz-corpus-model-seed/
 * Run:   build-fuzz/tests/fuzz-model fuzz-corpus-model fuzz-corpus-model-seed -max_total_time=600
 *
 * Invariants (abort on violation): a failure comes with a message and frees
 * everything (LeakSanitizer); on success every tensor view lies inside the
 * input and has the bytes its shape implies, the vocabulary's special ids are
 * in range, and tokenizing a short text gives ids in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "loader/gguf.h"
#include "loader/model.h"
#include "loader/quants.h"
#include "loader/tokenizer.h"

static const uint8_t *g_lo, *g_hi;

static void check_view(const struct wk_tensor *t) {
    if (!t->data) return;
    const uint8_t *p = t->data;
    if (p < g_lo || p > g_hi || t->nbytes > (uint64_t)(g_hi - p)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    if (size) memcpy(buf, data, size);
    g_lo = buf;
    g_hi = buf + size;

    struct gguf_file g;
    char err[512] = "";
    if (gguf_file_parse(buf, size, &g, err, sizeof err) != WK_STATUS_OK) {
        free(buf);
        return 0;
    }
    struct wk_model *m = calloc(1, sizeof *m);
    if (!m) abort();
    err[0] = '\0';
    wk_status st = wk_model_from_gguf(&g, m, err, sizeof err); /* owns g now */
    if (st != WK_STATUS_OK) {
        if (!err[0]) abort();
        free(m);
        free(buf);
        return 0;
    }
    if (m->hp.n_layer <= 0 || m->hp.n_embd <= 0 || m->hp.n_vocab <= 0) abort();
    check_view(&m->tok_embd);
    check_view(&m->output_norm);
    check_view(&m->output);
    for (int l = 0; l < m->hp.n_layer; l++) {
        const struct wk_layer *L = &m->layers[l];
        check_view(&L->attn_norm);
        check_view(&L->wq);
        check_view(&L->wk);
        check_view(&L->wv);
        check_view(&L->wo);
    }
    const struct wk_vocab *v = &m->vocab;
    int32_t sp[] = {v->bos, v->eos, v->eot, v->unk, v->pad};
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++)
        if (sp[i] < -1 || sp[i] >= v->n_tokens) abort();
    static const char text[] = "Hello, world! <|im_end|> \xC3\xA9t\xC3\xA9 123";
    int32_t *ids = NULL;
    size_t n = 0;
    if (wk_tokenize(v, text, sizeof text - 1, false, &ids, &n, err, sizeof err) == WK_STATUS_OK) {
        for (size_t i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= v->n_tokens) abort();
            size_t pl = 0;
            (void)wk_token_piece(v, ids[i], true, &pl);
        }
    }
    free(ids);
    wk_model_free(m);
    free(m);
    free(buf);
    return 0;
}
