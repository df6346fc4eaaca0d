/* model.h — architecture hyper-parameters and the tensor map of a GGUF model.
 *
 * Every architecture is one entry of the architecture table (loader/arch.c):
 * the loader reads the entry and fills the description below, so the backends
 * walk one general forward pass and never test which architecture runs:
 *
 *   x = embed(token) * embd_scale
 *   per layer l:
 *     h = rmsnorm(x) * attn_norm
 *     q = Wq h + bq; k = Wk h + bk; v = Wv h + bv        (biases when present)
 *     q, k per head: rmsnorm(.) * attn_q_norm / attn_k_norm  (when present)
 *     rope(q), rope(k) with layer l's wk_rope (wk_model_rope)
 *     a = softmax(attn_scale * q Kᵀ, causal, window) V   (GQA; window 0 = all)
 *     o = Wo a; o = rmsnorm(o) * attn_post_norm           (when present)
 *     x += o
 *     h = rmsnorm(x) * ffn_norm
 *     f = Wdown (act(Wgate h) ⊙ Wup h)                    act: SiLU | tanh-GELU
 *     f = rmsnorm(f) * ffn_post_norm                      (when present)
 *     x += f
 *   logits = output · (rmsnorm(x) * output_norm)
 * Every rmsnorm uses hp.rms_eps. Fused tensors in the file (phi3's attn_qkv,
 * its gate+up ffn_up) are split by the loader into row-range views, so
 * wq/wk/wv and w_gate/w_up are always separate matrices here.
 *
 * Supported architectures (general.architecture): the rows of the table in
 * loader/arch.c; m->desc is the row the model was loaded with. Nothing
 * outside the loader should need it for the forward pass: every difference
 * is already in the fields below.
 *
 * Rope per layer (wk_model_rope): base = the layer's rope_theta (gemma3's
 * sliding-window layers use 10000, its global ones rope.freq_base);
 * frequency factors = rope_freqs (llama3) when present, else LongRoPE's
 * long factors when the configured context n_ctx exceeds
 * rope.scaling.original_context_length and the short ones otherwise (the
 * choice llama.cpp makes: by context size, not by position, so a 128k phi3
 * run at n_ctx 4096 rotates with the short factors from position 0 and one
 * at n_ctx 8192 with the long ones from position 0), else a linear
 * rope.scaling.factor on the global layers; attn_factor scales cos and sin.
 *
 * Tensor shapes as GGUF stores them (ne[0] innermost = the input dimension):
 *   token_embd.weight        {n_embd, n_vocab}
 *   blk.N.attn_norm.weight   {n_embd}
 *   blk.N.attn_q.weight      {n_embd, n_head*head_dim}      (+ .bias {n_head*head_dim})
 *   blk.N.attn_k.weight      {n_embd, n_head_kv*head_dim}   (+ .bias)
 *   blk.N.attn_v.weight      {n_embd, n_head_kv*head_dim}   (+ .bias)
 *   blk.N.attn_output.weight {n_head*head_dim, n_embd}
 *   blk.N.ffn_norm.weight    {n_embd}
 *   blk.N.ffn_gate.weight    {n_embd, n_ff}
 *   blk.N.ffn_up.weight      {n_embd, n_ff}
 *   blk.N.ffn_down.weight    {n_ff, n_embd}
 *   output_norm.weight       {n_embd}
 *   output.weight            {n_embd, n_vocab}  (optional: tied to token_embd)
 * Every matrix is "n_out rows of n_in elements": y[o] = dot(W row o, x).
 */
#ifndef WK_MODEL_H
#define WK_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/rope.h"
#include "loader/arch.h"
#include "loader/gguf.h"
#include "loader/tokenizer.h"
#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A view of one tensor in the mapped file. data == NULL means "absent"
 * (only for optional tensors: biases, output). A view of a fused tensor is
 * a row range of it: data = fused data + row0 * row_bytes, ne[1] = rows,
 * name "<fused name>#q" (k, v, gate, up). */
struct wk_tensor {
    char name[64];     /* e.g. "blk.3.attn_q.weight" */
    uint32_t type;     /* enum ggml_type */
    int64_t ne[4];     /* ne[0] = row length (input dim), ne[1] = rows */
    const void *data;  /* borrowed: into the mmap */
    uint64_t nbytes;
};

struct wk_layer {
    struct wk_tensor attn_norm;        /* {n_embd} f32 */
    struct wk_tensor wq, wk, wv;       /* see header comment (may be views of one fused tensor) */
    struct wk_tensor bq, bk, bv;       /* biases, data == NULL when absent */
    struct wk_tensor attn_q_norm;      /* {head_dim} f32, per-head norm of q; data NULL when absent */
    struct wk_tensor attn_k_norm;      /* {head_dim} f32, per-head norm of k; data NULL when absent */
    struct wk_tensor wo;
    struct wk_tensor attn_post_norm;   /* {n_embd} f32, norm of Wo a before the add; NULL when absent */
    struct wk_tensor ffn_norm;
    struct wk_tensor w_gate, w_up, w_down; /* gate/up may be views of one fused tensor */
    struct wk_tensor ffn_post_norm;    /* {n_embd} f32, norm of the FFN output before the add; NULL when absent */
    int window;                        /* sliding window: a query at position p sees keys k
                                        * with p - window < k <= p; 0 = every earlier key */
    float rope_theta;                  /* this layer's rope base (local layers may differ) */
};

struct wk_hparams {
    int n_vocab;
    int n_ctx_train;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;     /* n_embd / n_head unless attention.key_length says */
    int n_ff;
    int rope_dim;     /* rotated dims per head (rope.dimension_count; default head_dim) */
    float rope_theta; /* rope.freq_base; default 10000 (global layers) */
    float rms_eps;    /* attention.layer_norm_rms_epsilon */
    enum wk_rope_type rope_type;
    enum wk_act act;  /* FFN activation */
    float embd_scale; /* the embedding row is multiplied by this (1, or sqrt(n_embd) for gemma3) */
    float attn_scale; /* scores = attn_scale * q·k (1/sqrt(head_dim) unless the arch says) */
    int n_swa;        /* sliding window of the local layers; 0 = none */
    /* LongRoPE (phi3): frequency factors chosen by the configured context
     * (long when n_ctx > n_ctx_orig, as llama.cpp does), and the cos/sin scale. */
    int n_ctx_orig;              /* rope.scaling.original_context_length; 0 = none */
    float rope_attn_factor;      /* 1 = none */
    float rope_linear;           /* rope.scaling.factor of type linear (global layers); 1 = none */
};

struct wk_model {
    struct gguf_file gguf; /* owns the mapping every tensor view borrows */
    char arch_name[32];    /* "qwen2" (== desc->name) */
    char name[128];        /* general.name, or the file's base name */
    struct wk_hparams hp;
    struct wk_tensor tok_embd;
    struct wk_tensor output_norm;
    struct wk_tensor output;  /* == tok_embd's view when tied */
    struct wk_tensor rope_factors_long, rope_factors_short; /* {rope_dim/2} f32; NULL when absent */
    struct wk_tensor rope_freqs;  /* {rope_dim/2} f32 (llama3), every context; NULL when absent */
    float *rope_linear_factors;   /* {rope_dim/2}, each hp.rope_linear; owned, NULL when none */
    bool tied_output;
    struct wk_layer *layers;  /* n_layer entries, owned */
    struct wk_vocab vocab;
    uint64_t n_params;        /* elements in all tensors */
    uint64_t weight_bytes;    /* bytes of all tensors */
    char ftype_name[32];      /* the file type: general.file_type ("Q4_K_M"), else the
                               * dominant matrix type ("q4_K") */
    const struct wk_arch_desc *desc; /* the architecture table's entry (loader/arch.h) */
};

/* The rope of layer `layer` when sequences run up to n_ctx positions:
 * dim, the layer's base, the frequency factors (long or short by n_ctx, see
 * wk_hparams) and the attention factor. Borrows from m. */
struct wk_rope wk_model_rope(const struct wk_model *m, int layer, int n_ctx);

/* Open, validate and map a model: GGUF, architecture, every tensor by name and
 * shape, and the tokenizer. On error nothing stays allocated; err names the
 * key or tensor. */
wk_status wk_model_load(const char *path, struct wk_model *m, char *err, size_t err_len);

/* Same, from a parsed GGUF (takes ownership of *g, also on failure). */
wk_status wk_model_from_gguf(struct gguf_file *g, struct wk_model *m, char *err, size_t err_len);

void wk_model_free(struct wk_model *m);

#ifdef __cplusplus
}
#endif

#endif
