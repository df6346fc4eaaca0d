/* arch.h — the architecture table: one row per general.architecture.
 *
 * A row says, as data, everything that differs between the transformer
 * families this worker runs (the general forward pass is in loader/model.h):
 *
 *   tensors      which per-layer tensors exist (required / optional / never),
 *                including fused ones: attn_qkv (rows: q, then k, then v) and
 *                a gate+up ffn_up (rows: gate, then up). The loader turns a
 *                fused matrix into row-range views (a row range of a GGUF
 *                matrix is contiguous bytes), so backends only ever see
 *                separate wq/wk/wv and w_gate/w_up.
 *   norms        per-head q/k norms and post-attention / post-FFN norms are
 *                tensors of the row like any other (present = applied).
 *   rope         NORM (adjacent pairs) or NEOX (halves); LongRoPE frequency
 *                factors (phi3: rope_factors_long/short, long when the
 *                configured context exceeds rope.scaling.original_context_length,
 *                as llama.cpp chooses); llama3's rope_freqs; the base of
 *                sliding-window layers when it differs from rope.freq_base.
 *   attention    sliding-window pattern: with swa_period p, layer l is global
 *                (sees every earlier key) when l % p == p - 1 and windowed
 *                (attention.sliding_window keys) otherwise (llama.cpp's
 *                set_swa_pattern); 0 = every layer global.
 *   ffn          the gated activation: SwiGLU (silu) or GeGLU (tanh GELU).
 *   embedding    scale of the looked-up row (1, or √n_embd for gemma).
 *   output       output.weight, or tied to token_embd when absent.
 *   chat, eog    the chat template family used when tokenizer.chat_template
 *                is absent, the token texts that end generation beside
 *                eos/eot (marked when the vocabulary has them), and whether
 *                special tokens strip the spaces after them (phi3).
 *
 * Adding a family is a row here (plus, at most, one new operation in each
 * backend when it needs one the general pass lacks).
 */
#ifndef WK_ARCH_H
#define WK_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loader/chat.h"

#ifdef __cplusplus
extern "C" {
#endif

enum wk_rope_type { WK_ROPE_NORM = 0, WK_ROPE_NEOX = 2 };
/* The gated FFN's activation: SwiGLU (silu) or GeGLU with the tanh GELU. */
enum wk_act { WK_ACT_SILU = 0, WK_ACT_GELU_TANH = 1 };
enum wk_embd_scale { WK_EMBD_SCALE_ONE = 0, WK_EMBD_SCALE_SQRT_EMBD = 1 };

/* How much a row wants a tensor. */
enum wk_need { WK_NEED_NO = 0, WK_NEED_OPT = 1, WK_NEED_REQ = 2 };

/* Per-layer tensors, named "blk.N.<wk_arch_tensor_suffix(t)>". */
enum wk_lt {
    WK_LT_ATTN_NORM,      /* attn_norm.weight            {n_embd} */
    WK_LT_Q,              /* attn_q.weight               {n_embd, n_head*hd} */
    WK_LT_K,              /* attn_k.weight               {n_embd, n_head_kv*hd} */
    WK_LT_V,              /* attn_v.weight               {n_embd, n_head_kv*hd} */
    WK_LT_QKV,            /* attn_qkv.weight (fused)     {n_embd, (n_head + 2 n_head_kv)*hd} */
    WK_LT_BQ,             /* attn_q.bias */
    WK_LT_BK,             /* attn_k.bias */
    WK_LT_BV,             /* attn_v.bias */
    WK_LT_Q_NORM,         /* attn_q_norm.weight          {hd}, per head */
    WK_LT_K_NORM,         /* attn_k_norm.weight          {hd}, per head */
    WK_LT_OUT,            /* attn_output.weight          {n_head*hd, n_embd} */
    WK_LT_ATTN_POST_NORM, /* post_attention_norm.weight  {n_embd} */
    WK_LT_FFN_NORM,       /* ffn_norm.weight             {n_embd} */
    WK_LT_GATE,           /* ffn_gate.weight             {n_embd, n_ff} */
    WK_LT_UP,             /* ffn_up.weight               {n_embd, n_ff} */
    WK_LT_GATE_UP,        /* ffn_up.weight (fused)       {n_embd, 2 n_ff}: gate rows, then up */
    WK_LT_DOWN,           /* ffn_down.weight             {n_ff, n_embd} */
    WK_LT_FFN_POST_NORM,  /* post_ffw_norm.weight        {n_embd} */
    WK_LT__COUNT
};

#define WK_ARCH_MAX_EOG 4

struct wk_arch_desc {
    const char *name;                    /* general.architecture */
    uint8_t tensors[WK_LT__COUNT];       /* enum wk_need of each per-layer tensor */
    bool rope_factors;                   /* LongRoPE: rope_factors_long/short.weight and
                                          * rope.scaling.{original_context_length,attn_factor} */
    bool rope_freqs;                     /* optional rope_freqs.weight (llama3): factors for every context */
    enum wk_rope_type rope_type;
    float rope_theta_default;            /* rope.freq_base when the file has none */
    float rope_theta_swa;                /* base of sliding-window layers; 0 = rope.freq_base */
    int swa_period;                      /* see the header comment; 0 = no sliding window */
    enum wk_act act;
    enum wk_embd_scale embd_scale;
    enum wk_chat_template chat;          /* fallback chat template family */
    const char *eog[WK_ARCH_MAX_EOG];    /* extra end-of-generation texts, NULL-terminated */
    bool special_rstrip;                 /* SPM: special tokens eat the spaces after them (phi3;
                                          * llama.cpp also applies it to models named "phi-3") */
};

/* The row of an architecture name (len bytes, not NUL-terminated), or NULL. */
const struct wk_arch_desc *wk_arch_find(const char *name, size_t len);

/* "attn_norm.weight" ... */
const char *wk_arch_tensor_suffix(enum wk_lt t);

/* "llama, qwen2, ..." (every row's name) into buf, for error messages. */
void wk_arch_list(char *buf, size_t n);

/* Whether layer l of n uses the sliding window (desc->swa_period rule). */
static inline bool wk_arch_layer_is_swa(const struct wk_arch_desc *d, int l) {
    return d->swa_period > 0 && l % d->swa_period != d->swa_period - 1;
}

#ifdef __cplusplus
}
#endif

#endif
