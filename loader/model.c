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

static wk_status get_str_key(const struct gguf_file *g, const char *arch, const char *suffix, struct gguf_str *out,
                             char *err, size_t err_len) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (!gguf_get_str(g, key, out)) {
        if (gguf_find_kv(g, key))
            return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: key '%s' is not a string", key);
        out->ptr = NULL;
        out->len = 0;
    }
    return WK_STATUS_OK;
}

static wk_status load_hparams(struct wk_model *m, char *err, size_t err_len) {
    const struct gguf_file *g = &m->gguf;
    const struct wk_arch_desc *d = m->desc;
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
    TRY(get_float_key(g, a, "rope.freq_base", false, d->rope_theta_default, &hp->rope_theta, err, err_len));
    TRY(get_float_key(g, a, "attention.layer_norm_rms_epsilon", false, 1e-5f, &hp->rms_eps, err, err_len));
    hp->n_swa = 0;
    if (d->swa_period > 0)
        TRY(get_int_key(g, a, "attention.sliding_window", false, 0, 0, 1 << 24, &hp->n_swa, err, err_len));
    hp->n_ctx_orig = 0;
    hp->rope_attn_factor = 1.0f;
    if (d->rope_factors) {
        TRY(get_int_key(g, a, "rope.scaling.original_context_length", false, 0, 0, 1 << 24, &hp->n_ctx_orig, err,
                        err_len));
        TRY(get_float_key(g, a, "rope.scaling.attn_factor", false, 1.0f, &hp->rope_attn_factor, err, err_len));
    }
    /* rope.scaling.type: none, or linear (rope.scaling.factor divides every
     * frequency of the global layers); anything else would rotate wrongly. */
    hp->rope_linear = 1.0f;
    struct gguf_str st;
    TRY(get_str_key(g, a, "rope.scaling.type", &st, err, err_len));
    if (st.ptr && gguf_str_eq(st, "linear")) {
        TRY(get_float_key(g, a, "rope.scaling.factor", false, 1.0f, &hp->rope_linear, err, err_len));
    } else if (st.ptr && !gguf_str_eq(st, "none") && !(d->rope_factors && (gguf_str_eq(st, "longrope") || gguf_str_eq(st, "su")))) {
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: %s.rope.scaling.type '%.*s' is not supported",
                       a, (int)(st.len > 32 ? 32 : st.len), st.ptr);
    }
#undef TRY
    if (hp->n_head % hp->n_head_kv != 0)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "wk_model_load: head_count %d is not a multiple of head_count_kv %d", hp->n_head, hp->n_head_kv);
    if (hp->head_dim % 2 != 0 || hp->rope_dim % 2 != 0 || hp->rope_dim > hp->head_dim)
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "wk_model_load: head_dim %d / rope dimension %d must be even with rope <= head",
                       hp->head_dim, hp->rope_dim);
    hp->rope_type = d->rope_type;
    hp->act = d->act;
    hp->embd_scale = d->embd_scale == WK_EMBD_SCALE_SQRT_EMBD ? sqrtf((float)hp->n_embd) : 1.0f;
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
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
    bool shape_ok = ti->ne[0] == ne0 && ti->ne[1] == (ne1 ? ne1 : 1) && ti->ne[2] == 1 && ti->ne[3] == 1;
    if (!shape_ok) {
        return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                       "wk_model_load: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld] "
                       "from the hyper-parameters",
                       name, (long long)ti->ne[0], (long long)ti->ne[1], (long long)ti->ne[2],
                       (long long)ti->ne[3], (long long)ne0, (long long)(ne1 ? ne1 : 1));
    }
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

/* Rows [row0, row0 + rows) of the matrix `fused` as a matrix of its own:
 * a GGUF matrix stores whole rows one after another, so the range is the
 * contiguous bytes from data + row0 * row_bytes. */
static struct wk_tensor row_view(const struct wk_tensor *fused, int64_t row0, int64_t rows, const char *part) {
    struct wk_tensor v = *fused;
    const size_t rb = wk_row_bytes(fused->type, fused->ne[0]);
    snprintf(v.name, sizeof v.name, "%.56s#%s", fused->name, part);
    v.ne[1] = rows;
    v.data = (const uint8_t *)fused->data + (size_t)row0 * rb;
    v.nbytes = (uint64_t)rows * rb;
    return v;
}

static wk_status map_tensors(struct wk_model *m, char *err, size_t err_len) {
    const struct wk_arch_desc *d = m->desc;
    const struct wk_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, F = hp->n_ff, V = hp->n_vocab, HD = hp->head_dim;
    const int64_t QD = (int64_t)hp->n_head * hp->head_dim, KD = (int64_t)hp->n_head_kv * hp->head_dim;
    wk_status s;
    char nm[96];
#define MAP(t, name, a, b, req, vec) \
    do { if ((s = map_tensor(m, t, name, a, b, req, vec, err, err_len)) != WK_STATUS_OK) return s; } while (0)
    MAP(&m->tok_embd, "token_embd.weight", E, V, true, false);
    MAP(&m->output_norm, "output_norm.weight", E, 0, true, true);
    MAP(&m->output, "output.weight", E, V, false, false);
    m->tied_output = m->output.data == NULL;
    if (m->tied_output) m->output = m->tok_embd;
    const int64_t half = hp->rope_dim / 2;
    if (d->rope_factors) {
        MAP(&m->rope_factors_long, "rope_factors_long.weight", half, 0, false, true);
        MAP(&m->rope_factors_short, "rope_factors_short.weight", half, 0, false, true);
        if (!m->rope_factors_long.data != !m->rope_factors_short.data)
            return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                           "wk_model_load: rope_factors_long and rope_factors_short come in pairs (one is missing)");
    }
    if (d->rope_freqs) MAP(&m->rope_freqs, "rope_freqs.weight", half, 0, false, true);
    if (hp->rope_linear != 1.0f) {
        if (m->rope_freqs.data || m->rope_factors_long.data)
            return wk_errf(err, err_len, WK_STATUS_BAD_MODEL,
                           "wk_model_load: linear rope scaling together with rope frequency factors is not supported");
        m->rope_linear_factors = malloc((size_t)half * sizeof(float));
        if (!m->rope_linear_factors) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_model_load: out of memory");
        for (int64_t i = 0; i < half; i++) m->rope_linear_factors[i] = hp->rope_linear;
    }

    /* The expected shape of each per-layer tensor: {ne0, ne1}, ne1 = 0 for vectors. */
    const int64_t shape[WK_LT__COUNT][2] = {
        [WK_LT_ATTN_NORM] = {E, 0},      [WK_LT_Q] = {E, QD},          [WK_LT_K] = {E, KD},
        [WK_LT_V] = {E, KD},             [WK_LT_QKV] = {E, QD + 2 * KD}, [WK_LT_BQ] = {QD, 0},
        [WK_LT_BK] = {KD, 0},            [WK_LT_BV] = {KD, 0},         [WK_LT_Q_NORM] = {HD, 0},
        [WK_LT_K_NORM] = {HD, 0},        [WK_LT_OUT] = {QD, E},        [WK_LT_ATTN_POST_NORM] = {E, 0},
        [WK_LT_FFN_NORM] = {E, 0},       [WK_LT_GATE] = {E, F},        [WK_LT_UP] = {E, F},
        [WK_LT_GATE_UP] = {E, 2 * F},    [WK_LT_DOWN] = {F, E},        [WK_LT_FFN_POST_NORM] = {E, 0},
    };
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_model_load: out of memory");
    for (int l = 0; l < hp->n_layer; l++) {
        struct wk_layer *L = &m->layers[l];
        /* where each role lands; the fused ones go to a scratch tensor first */
        struct wk_tensor qkv, gate_up;
        struct wk_tensor *dst[WK_LT__COUNT] = {
            [WK_LT_ATTN_NORM] = &L->attn_norm, [WK_LT_Q] = &L->wq,     [WK_LT_K] = &L->wk,
            [WK_LT_V] = &L->wv,                [WK_LT_QKV] = &qkv,     [WK_LT_BQ] = &L->bq,
            [WK_LT_BK] = &L->bk,               [WK_LT_BV] = &L->bv,    [WK_LT_Q_NORM] = &L->attn_q_norm,
            [WK_LT_K_NORM] = &L->attn_k_norm,  [WK_LT_OUT] = &L->wo,   [WK_LT_ATTN_POST_NORM] = &L->attn_post_norm,
            [WK_LT_FFN_NORM] = &L->ffn_norm,   [WK_LT_GATE] = &L->w_gate, [WK_LT_UP] = &L->w_up,
            [WK_LT_GATE_UP] = &gate_up,        [WK_LT_DOWN] = &L->w_down, [WK_LT_FFN_POST_NORM] = &L->ffn_post_norm,
        };
        memset(&qkv, 0, sizeof qkv);
        memset(&gate_up, 0, sizeof gate_up);
        for (int t = 0; t < WK_LT__COUNT; t++) {
            if (d->tensors[t] == WK_NEED_NO) continue;
            snprintf(nm, sizeof nm, "blk.%d.%s", l, wk_arch_tensor_suffix((enum wk_lt)t));
            MAP(dst[t], nm, shape[t][0], shape[t][1], d->tensors[t] == WK_NEED_REQ, shape[t][1] == 0);
        }
        if (qkv.data) {
            L->wq = row_view(&qkv, 0, QD, "q");
            L->wk = row_view(&qkv, QD, KD, "k");
            L->wv = row_view(&qkv, QD + KD, KD, "v");
        }
        if (gate_up.data) {
            L->w_gate = row_view(&gate_up, 0, F, "gate");
            L->w_up = row_view(&gate_up, F, F, "up");
        }
        const bool swa = wk_arch_layer_is_swa(d, l) && hp->n_swa > 0;
        L->window = swa ? hp->n_swa : 0;
        L->rope_theta = swa && d->rope_theta_swa > 0 ? d->rope_theta_swa : hp->rope_theta;
    }
#undef MAP
    return WK_STATUS_OK;
}

/* llama.cpp's LLAMA_FTYPE numbering (general.file_type); 1024 = "guessed". */
static const char *ftype_name(uint32_t ft) {
    static const char *const names[] = {
        [0] = "F32",     [1] = "F16",      [2] = "Q4_0",     [3] = "Q4_1",     [7] = "Q8_0",
        [8] = "Q5_0",    [9] = "Q5_1",     [10] = "Q2_K",    [11] = "Q3_K_S",  [12] = "Q3_K_M",
        [13] = "Q3_K_L", [14] = "Q4_K_S",  [15] = "Q4_K_M",  [16] = "Q5_K_S",  [17] = "Q5_K_M",
        [18] = "Q6_K",   [19] = "IQ2_XXS", [20] = "IQ2_XS",  [21] = "Q2_K_S",  [22] = "IQ3_XS",
        [23] = "IQ3_XXS", [24] = "IQ1_S",  [25] = "IQ4_NL",  [26] = "IQ3_S",   [27] = "IQ3_M",
        [28] = "IQ2_S",  [29] = "IQ2_M",   [30] = "IQ4_XS",  [31] = "IQ1_M",   [32] = "BF16",
        [36] = "TQ1_0",  [37] = "TQ2_0",   [38] = "MXFP4_MOE",
    };
    ft &= ~1024u;
    return ft < sizeof names / sizeof *names ? names[ft] : NULL;
}

/* Sum sizes; name the file type from general.file_type, else the dominant
 * matrix type by bytes. */
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
    uint32_t ft;
    const char *fname = gguf_get_u32(&m->gguf, "general.file_type", &ft) ? ftype_name(ft) : NULL;
    if (fname) {
        snprintf(m->ftype_name, sizeof m->ftype_name, "%s", fname);
        return;
    }
    uint32_t best = 0;
    for (uint32_t ty = 0; ty < GGML_TYPE__COUNT; ty++)
        if (by_type[ty] > by_type[best]) best = ty;
    const struct wk_type_info *info = wk_type_info(best);
    snprintf(m->ftype_name, sizeof m->ftype_name, "%s", info ? info->name : "?");
}

/* The row's end-of-generation texts and, when the file has no chat template,
 * its template family. */
static wk_status apply_vocab_rules(struct wk_model *m, char *err, size_t err_len) {
    const struct wk_arch_desc *d = m->desc;
    for (int i = 0; i < WK_ARCH_MAX_EOG && d->eog[i]; i++) {
        int32_t id = wk_token_id(&m->vocab, d->eog[i]);
        if (id >= 0) wk_vocab_set_eog(&m->vocab, id);
    }
    if (!m->vocab.chat_template && d->chat != WK_CHAT_UNKNOWN) {
        /* wk_chat_detect takes a family by its name */
        const char *name = wk_chat_template_name(d->chat);
        m->vocab.chat_template = malloc(strlen(name) + 1);
        if (!m->vocab.chat_template) return wk_errf(err, err_len, WK_STATUS_OOM_HOST, "wk_model_load: out of memory");
        memcpy(m->vocab.chat_template, name, strlen(name) + 1);
    }
    return WK_STATUS_OK;
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
    m->desc = wk_arch_find(arch.ptr, arch.len);
    if (!m->desc) {
        char list[128];
        wk_arch_list(list, sizeof list);
        s = wk_errf(err, err_len, WK_STATUS_BAD_MODEL, "wk_model_load: unsupported architecture '%.*s' (supported: %s)",
                    (int)(arch.len > 64 ? 64 : arch.len), arch.ptr, list);
        goto fail;
    }
    snprintf(m->arch_name, sizeof m->arch_name, "%s", m->desc->name);

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
    if ((s = apply_vocab_rules(m, err, err_len)) != WK_STATUS_OK) goto fail;
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
    free(m->rope_linear_factors);
    gguf_file_close(&m->gguf);
    memset(m, 0, sizeof *m);
    m->gguf.fd = -1;
}

struct wk_rope wk_model_rope(const struct wk_model *m, int layer, int n_ctx) {
    const struct wk_hparams *hp = &m->hp;
    const struct wk_layer *L = &m->layers[layer];
    const float *f = NULL;
    if (m->rope_freqs.data) {
        f = m->rope_freqs.data;
    } else if (m->rope_factors_long.data) {
        /* by the configured context, not by position (llama.cpp's choice) */
        const int orig = hp->n_ctx_orig > 0 ? hp->n_ctx_orig : hp->n_ctx_train;
        f = n_ctx > orig ? m->rope_factors_long.data : m->rope_factors_short.data;
    } else if (m->rope_linear_factors && L->window == 0) {
        f = m->rope_linear_factors; /* local (windowed) layers are not scaled */
    }
    struct wk_rope r = {
        .dim = hp->rope_dim,
        .theta = L->rope_theta,
        .freq_factors = f,
        .attn_factor = hp->rope_attn_factor,
    };
    return r;
}
