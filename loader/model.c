/* model.c — from a parsed GGUF to a validated wk_model: architecture,
 * hyper-parameters, every tensor by name with its shape checked, tokenizer.
 * See model.h for the tensor shapes. */
#include "loader/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/quants.h"

// --- hyper-parameters -------------------------------------------------------

/* Limits that keep a hostile file from asking for absurd buffers; far above
 * any model this worker targets. */
#define MAX_LAYERS 512
#define MAX_EMBD 65536
#define MAX_FF 262144
#define MAX_HEADS 1024
#define MAX_HEAD_DIM 1024
#define MAX_VOCAB 1048576

static wk_status get_int_key(const struct gguf_file *g, const char *arch, const char *suffix,
                             bool required, int def, int lo, int hi, int *out, char *err,
                             size_t err_len) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int64_t v;
    if (!gguf_get_i64(g, key, &v)) {
        if (gguf_find_kv(g, key))
            return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: key '%s' is not an integer", key);
        if (required)
            return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: missing key '%s'", key);
        v = def;
    }
    if (v < lo || v > hi)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "wk_model_load: key '%s' = %lld is outside [%d, %d]", key, (long long)v, lo, hi);
    *out = (int)v;
    return WK_STATUS_OK;
}

static wk_status get_float_key(const struct gguf_file *g, const char *arch, const char *suffix,
                               bool required, float def, float *out, char *err, size_t err_len) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    float v;
    if (!gguf_get_f32(g, key, &v)) {
        if (required || gguf_find_kv(g, key))
            return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: missing or non-numeric key '%s'", key);
        v = def;
    }
    if (!(v > 0.0f) || v != v || v > 1e30f)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: key '%s' = %g is not a positive number", key, v);
    *out = v;
    return WK_STATUS_OK;
}

static wk_status load_hparams(struct wk_model *m, char *err, size_t err_len) {
    const struct gguf_file *g = &m->gguf;
    const char *a = m->arch_name;
    struct wk_hparams *hp = &m->hp;
    wk_status s;
#define TRY(x) do { if ((s = (x)) != WK_STATUS_OK) return s; } while (0)
    TRY(get_int_key(g, a, "block_count", true, 0, 1, MAX_LAYERS, &hp->n_layer, err, err_len));
    TRY(get_int_key(g, a, "embedding_length", true, 0, 1, MAX_EMBD, &hp->n_embd, err, err_len));
    TRY(get_int_key(g, a, "feed_forward_length", true, 0, 1, MAX_FF, &hp->n_ff, err, err_len));
    TRY(get_int_key(g, a, "attention.head_count", true, 0, 1, MAX_HEADS, &hp->n_head, err, err_len));
    TRY(get_int_key(g, a, "attention.head_count_kv", false, hp->n_head, 1, MAX_HEADS, &hp->n_head_kv, err, err_len));
    TRY(get_int_key(g, a, "context_length", false, 2048, 1, 1 << 24, &hp->n_ctx_train, err, err_len));
    int def_hd = hp->n_embd / hp->n_head;
    TRY(get_int_key(g, a, "attention.key_length", false, def_hd, 1, MAX_HEAD_DIM, &hp->head_dim, err, err_len));
    int vlen;
    TRY(get_int_key(g, a, "attention.value_length", false, hp->head_dim, 1, MAX_HEAD_DIM, &vlen, err, err_len));
    if (vlen != hp->head_dim)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "wk_model_load: value_length %d != key_length %d is not supported", vlen, hp->head_dim);
    TRY(get_int_key(g, a, "rope.dimension_count", false, hp->head_dim, 2, MAX_HEAD_DIM, &hp->rope_dim, err, err_len));
    TRY(get_float_key(g, a, "rope.freq_base", false, 10000.0f, &hp->rope_theta, err, err_len));
    TRY(get_float_key(g, a, "attention.layer_norm_rms_epsilon", false, 1e-5f, &hp->rms_eps, err, err_len));
#undef TRY
    if (hp->n_head % hp->n_head_kv != 0)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "wk_model_load: head_count %d is not a multiple of head_count_kv %d", hp->n_head, hp->n_head_kv);
    if (hp->head_dim % 2 != 0 || hp->rope_dim % 2 != 0 || hp->rope_dim > hp->head_dim)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "wk_model_load: head_dim %d / rope dimension %d must be even with rope <= head",
                       hp->head_dim, hp->rope_dim);
    hp->rope_type = m->arch == WK_ARCH_QWEN2 ? WK_ROPE_NEOX : WK_ROPE_NORM;
    hp->act = WK_ACT_SILU;
    hp->embd_scale = 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    hp->rope_attn_factor = 1.0f;
    return WK_STATUS_OK;
}

// --- tensors ------------------------------------------------------------------

/* Look up `name` and check it against the expected shape {ne0, ne1} (ne1 = 0:
 * a vector). required = false: absent is fine (t->data stays NULL). vec_f32:
 * norms and biases must be F32. */
static wk_status map_tensor(struct wk_model *m, struct wk_tensor *t, const char *name, int64_t ne0,
                            int64_t ne1, bool required, bool vec_f32, char *err, size_t err_len) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    const struct gguf_tensor_info *ti = gguf_find_tensor(&m->gguf, name);
    if (!ti) {
        if (!required) return WK_STATUS_OK;
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: missing tensor '%s'", name);
    }
    uint32_t want_dims = ne1 ? 2 : 1;
    bool shape_ok = ti->ne[0] == ne0 && ti->ne[1] == (ne1 ? ne1 : 1) && ti->ne[2] == 1 && ti->ne[3] == 1;
    if (!shape_ok) {
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "wk_model_load: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld] "
                       "from the hyper-parameters",
                       name, (long long)ti->ne[0], (long long)ti->ne[1], (long long)ti->ne[2],
                       (long long)ti->ne[3], (long long)ne0, (long long)(ne1 ? ne1 : 1));
    }
    (void)want_dims;
    const struct wk_type_info *info = wk_type_info(ti->type);
    if (!info || !info->supported)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: tensor '%s' has unsupported type %s (%u)",
                       name, info ? info->name : "unknown", ti->type);
    if (vec_f32 && ti->type != GGML_TYPE_F32)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: tensor '%s' must be f32, is %s", name,
                       info->name);
    t->type = ti->type;
    for (int i = 0; i < 4; i++) t->ne[i] = ti->ne[i];
    t->data = ti->data;
    t->nbytes = ti->nbytes;
    return WK_STATUS_OK;
}

static wk_status map_tensors(struct wk_model *m, char *err, size_t err_len) {
    const struct wk_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab;
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim;
    wk_status s;
    char nm[64];
#define MAP(t, name, a, b, req, vec) \
    do { if ((s = map_tensor(m, t, name, a, b, req, vec, err, err_len)) != WK_STATUS_OK) return s; } while (0)
    MAP(&m->tok_embd, "token_embd.weight", E, V, true, false);
    MAP(&m->output_norm, "output_norm.weight", E, 0, true, true);
    MAP(&m->output, "output.weight", E, V, false, false);
    m->tied_output = m->output.data == NULL;
    if (m->tied_output) m->output = m->tok_embd;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_model_load: out of memory");
    for (int l = 0; l < hp->n_layer; l++) {
        struct wk_layer *L = &m->layers[l];
#define NM(suffix) (snprintf(nm, sizeof nm, "blk.%d.%s", l, suffix), nm)
        MAP(&L->attn_norm, NM("attn_norm.weight"), E, 0, true, true);
        MAP(&L->wq, NM("attn_q.weight"), E, QD, true, false);
        MAP(&L->wk, NM("attn_k.weight"), E, KD, true, false);
        MAP(&L->wv, NM("attn_v.weight"), E, KD, true, false);
        bool need_bias = m->arch == WK_ARCH_QWEN2;
        MAP(&L->bq, NM("attn_q.bias"), QD, 0, need_bias, true);
        MAP(&L->bk, NM("attn_k.bias"), KD, 0, need_bias, true);
        MAP(&L->bv, NM("attn_v.bias"), KD, 0, need_bias, true);
        MAP(&L->wo, NM("attn_output.weight"), QD, E, true, false);
        MAP(&L->ffn_norm, NM("ffn_norm.weight"), E, 0, true, true);
        MAP(&L->w_gate, NM("ffn_gate.weight"), E, F, true, false);
        MAP(&L->w_up, NM("ffn_up.weight"), E, F, true, false);
        MAP(&L->w_down, NM("ffn_down.weight"), F, E, true, false);
        L->rope_theta = hp->rope_theta;
#undef NM
    }
#undef MAP
    return WK_STATUS_OK;
}

/* Sum sizes; name the dominant matrix type by bytes. */
static void summarize(struct wk_model *m) {
    uint64_t by_type[GGML_TYPE__COUNT] = {0};
    for (uint64_t i = 0; i < m->gguf.n_tensors; i++) {
        const struct gguf_tensor_info *t = &m->gguf.tensors[i];
        uint64_t n = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) n *= (uint64_t)t->ne[d];
        m->n_params += n;
        m->weight_bytes += t->nbytes;
        if (t->n_dims >= 2 && t->type < GGML_TYPE__COUNT) by_type[t->type] += t->nbytes;
    }
    uint32_t best = 0;
    for (uint32_t ty = 0; ty < GGML_TYPE__COUNT; ty++)
        if (by_type[ty] > by_type[best]) best = ty;
    const struct wk_type_info *info = wk_type_info(best);
    snprintf(m->ftype_name, sizeof m->ftype_name, "%s", info ? info->name : "?");
}

wk_status wk_model_from_gguf(struct gguf_file *g, struct wk_model *m, char *err, size_t err_len) {
    memset(m, 0, sizeof *m);
    m->gguf = *g;
    memset(g, 0, sizeof *g);
    g->fd = -1;
    wk_status s;

    struct gguf_str arch;
    if (!gguf_get_str(&m->gguf, "general.architecture", &arch)) {
        s = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: missing key 'general.architecture'");
        goto fail;
    }
    if (gguf_str_eq(arch, "llama")) {
        m->arch = WK_ARCH_LLAMA;
    } else if (gguf_str_eq(arch, "qwen2")) {
        m->arch = WK_ARCH_QWEN2;
    } else {
        s = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: unsupported architecture '%.*s' (supported: llama, qwen2)",
                    (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
        goto fail;
    }
    snprintf(m->arch_name, sizeof m->arch_name, "%s", m->arch == WK_ARCH_QWEN2 ? "qwen2" : "llama");

    struct gguf_str name;
    if (gguf_get_str(&m->gguf, "general.name", &name))
        snprintf(m->name, sizeof m->name, "%.*s", (int)(name.len > 127 ? 127 : name.len), name.ptr);
    else
        snprintf(m->name, sizeof m->name, "%s", m->arch_name);

    if ((s = load_hparams(m, err, err_len)) != WK_STATUS_OK) goto fail;

    const struct gguf_tensor_info *te = gguf_find_tensor(&m->gguf, "token_embd.weight");
    if (!te) {
        s = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: missing tensor 'token_embd.weight'");
        goto fail;
    }
    if (te->ne[1] < 1 || te->ne[1] > MAX_VOCAB) {
        s = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: tensor 'token_embd.weight' has %lld rows (vocab)",
                    (long long)te->ne[1]);
        goto fail;
    }
    m->hp.n_vocab = (int)te->ne[1];

    if ((s = map_tensors(m, err, err_len)) != WK_STATUS_OK) goto fail;
    if ((s = wk_vocab_load(&m->gguf, &m->vocab, err, err_len)) != WK_STATUS_OK) goto fail;
    if (m->vocab.n_tokens > m->hp.n_vocab) {
        s = wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                    "wk_model_load: tokenizer has %d tokens but token_embd.weight only %d rows",
                    m->vocab.n_tokens, m->hp.n_vocab);
        goto fail;
    }
    summarize(m);
    return WK_STATUS_OK;
fail:
    wk_model_free(m);
    return s;
}

wk_status wk_model_load(const char *path, struct wk_model *m, char *err, size_t err_len) {
    struct gguf_file g;
    memset(m, 0, sizeof *m);
    m->gguf.fd = -1;
    wk_status s = gguf_file_open(path, &g, err, err_len);
    if (s != WK_STATUS_OK) return s;
    return wk_model_from_gguf(&g, m, err, err_len);
}

void wk_model_free(struct wk_model *m) {
    if (!m) return;
    wk_vocab_free(&m->vocab);
    free(m->layers);
    gguf_file_close(&m->gguf);
    memset(m, 0, sizeof *m);
    m->gguf.fd = -1;
}

struct wk_rope wk_model_rope(const struct wk_model *m, int layer, int n_ctx) {
    const struct wk_hparams *hp = &m->hp;
    const struct wk_tensor *f = hp->n_ctx_orig > 0 && n_ctx > hp->n_ctx_orig ? &m->rope_factors_long
                                                                             : &m->rope_factors_short;
    struct wk_rope r = {
        .dim = hp->rope_dim,
        .theta = m->layers[layer].rope_theta,
        .freq_factors = f->data,
        .attn_factor = hp->rope_attn_factor,
    };
    return r;
}
