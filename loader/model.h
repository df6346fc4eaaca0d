/* model.h — architecture hyper-parameters and the tensor map of a GGUF model.
 *
 * Supported architectures (general.architecture):
 *   llama  NORM rope (adjacent pairs), optional q/k/v biases (none usually)
 *   qwen2  NEOX rope (halves), q/k/v biases, tied output when output.weight absent
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

#include "loader/gguf.h"
#include "loader/tokenizer.h"
#include "worker/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum wk_arch { WK_ARCH_LLAMA = 0, WK_ARCH_QWEN2 = 1 };
enum wk_rope_type { WK_ROPE_NORM = 0, WK_ROPE_NEOX = 2 };

/* A view of one tensor in the mapped file. data == NULL means "absent"
 * (only for optional tensors: biases, output). */
struct wk_tensor {
    char name[64];     /* e.g. "blk.3.attn_q.weight" */
    uint32_t type;     /* enum ggml_type */
    int64_t ne[4];     /* ne[0] = row length (input dim), ne[1] = rows */
    const void *data;  /* borrowed: into the mmap */
    uint64_t nbytes;
};

struct wk_layer {
    struct wk_tensor attn_norm;        /* {n_embd} f32 */
    struct wk_tensor wq, wk, wv;       /* see header comment */
    struct wk_tensor bq, bk, bv;       /* biases, data == NULL when absent */
    struct wk_tensor wo;
    struct wk_tensor ffn_norm;
    struct wk_tensor w_gate, w_up, w_down;
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
    float rope_theta; /* rope.freq_base; default 10000 */
    float rms_eps;    /* attention.layer_norm_rms_epsilon */
    enum wk_rope_type rope_type;
};

struct wk_model {
    struct gguf_file gguf; /* owns the mapping every tensor view borrows */
    enum wk_arch arch;
    char arch_name[32];    /* "qwen2" */
    char name[128];        /* general.name, or the file's base name */
    struct wk_hparams hp;
    struct wk_tensor tok_embd;
    struct wk_tensor output_norm;
    struct wk_tensor output;  /* == tok_embd's view when tied */
    bool tied_output;
    struct wk_layer *layers;  /* n_layer entries, owned */
    struct wk_vocab vocab;
    uint64_t n_params;        /* elements in all tensors */
    uint64_t weight_bytes;    /* bytes of all tensors */
    char ftype_name[32];      /* dominant matrix type, e.g. "q4_K" (for Health) */
};

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
