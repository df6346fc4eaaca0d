/* arch.c — the architecture table (see arch.h). One row per family; the
 * loader (model.c) walks the row and never tests which family it loads. */
#include "loader/arch.h"

#include <stdio.h>
#include <string.h>

static const char *const tensor_suffix[WK_LT__COUNT] = {
    [WK_LT_ATTN_NORM] = "attn_norm.weight",
    [WK_LT_Q] = "attn_q.weight",
    [WK_LT_K] = "attn_k.weight",
    [WK_LT_V] = "attn_v.weight",
    [WK_LT_QKV] = "attn_qkv.weight",
    [WK_LT_BQ] = "attn_q.bias",
    [WK_LT_BK] = "attn_k.bias",
    [WK_LT_BV] = "attn_v.bias",
    [WK_LT_Q_NORM] = "attn_q_norm.weight",
    [WK_LT_K_NORM] = "attn_k_norm.weight",
    [WK_LT_OUT] = "attn_output.weight",
    [WK_LT_ATTN_POST_NORM] = "post_attention_norm.weight",
    [WK_LT_FFN_NORM] = "ffn_norm.weight",
    [WK_LT_GATE] = "ffn_gate.weight",
    [WK_LT_UP] = "ffn_up.weight",
    [WK_LT_GATE_UP] = "ffn_up.weight",
    [WK_LT_DOWN] = "ffn_down.weight",
    [WK_LT_FFN_POST_NORM] = "post_ffw_norm.weight",
};

#define REQ WK_NEED_REQ
#define OPT WK_NEED_OPT

/* The tensors every family shares: pre-norms, attention output, down. */
#define COMMON [WK_LT_ATTN_NORM] = REQ, [WK_LT_OUT] = REQ, [WK_LT_FFN_NORM] = REQ, [WK_LT_DOWN] = REQ
#define SEPARATE_QKV [WK_LT_Q] = REQ, [WK_LT_K] = REQ, [WK_LT_V] = REQ
#define SEPARATE_GATE_UP [WK_LT_GATE] = REQ, [WK_LT_UP] = REQ

static const struct wk_arch_desc arch_table[] = {
    {
        /* Llama 2/3, SmolLM2, TinyStories: adjacent-pair rope, SwiGLU,
         * optional biases (some fine-tunes carry them), llama3 rope_freqs. */
        .name = "llama",
        .tensors = {COMMON, SEPARATE_QKV, SEPARATE_GATE_UP,
                    [WK_LT_BQ] = OPT, [WK_LT_BK] = OPT, [WK_LT_BV] = OPT},
        .rope_freqs = true,
        .rope_type = WK_ROPE_NORM,
        .rope_theta_default = 10000.0f,
        .act = WK_ACT_SILU,
        .chat = WK_CHAT_UNKNOWN, /* Llama 2 and 3 differ: only the file's template says */
        .eog = {"<|eot_id|>", "<|eom_id|>", NULL},
    },
    {
        /* Qwen2 / Qwen2.5: q/k/v biases, NEOX rope, ChatML. */
        .name = "qwen2",
        .tensors = {COMMON, SEPARATE_QKV, SEPARATE_GATE_UP,
                    [WK_LT_BQ] = REQ, [WK_LT_BK] = REQ, [WK_LT_BV] = REQ},
        .rope_type = WK_ROPE_NEOX,
        .rope_theta_default = 1000000.0f,
        .act = WK_ACT_SILU,
        .chat = WK_CHAT_CHATML,
        .eog = {"<|im_end|>", "<|endoftext|>", NULL},
    },
    {
        /* Phi-3: fused attn_qkv and gate+up, NEOX rope, LongRoPE (128k).
         * No sliding window: some files carry attention.sliding_window
         * (2047), which llama.cpp ignores for phi3, and so do we. */
        .name = "phi3",
        .tensors = {COMMON, [WK_LT_QKV] = REQ, [WK_LT_GATE_UP] = REQ},
        .rope_factors = true,
        .rope_type = WK_ROPE_NEOX,
        .rope_theta_default = 10000.0f,
        .act = WK_ACT_SILU,
        .chat = WK_CHAT_PHI3,
        .eog = {"<|end|>", "<|endoftext|>", NULL},
        .special_rstrip = true,
    },
    {
        /* Gemma 3 (text): embeddings × √n_embd, per-head q/k norms, pre and
         * post norms around attention and FFN, GeGLU, five sliding-window
         * layers (rope base 10000) then one global (rope.freq_base), tied
         * output. Its norm weights are stored with Gemma's +1 folded in.
         * Query scale 1/√head_dim (query_pre_attn_scalar = head_dim; the
         * 27B model's n_embd/n_head is not covered). */
        .name = "gemma3",
        .tensors = {COMMON, SEPARATE_QKV, SEPARATE_GATE_UP,
                    [WK_LT_Q_NORM] = REQ, [WK_LT_K_NORM] = REQ,
                    [WK_LT_ATTN_POST_NORM] = REQ, [WK_LT_FFN_POST_NORM] = REQ},
        .rope_type = WK_ROPE_NEOX,
        .rope_theta_default = 1000000.0f,
        .rope_theta_swa = 10000.0f,
        .swa_period = 6,
        .act = WK_ACT_GELU_TANH,
        .embd_scale = WK_EMBD_SCALE_SQRT_EMBD,
        .chat = WK_CHAT_UNKNOWN, /* no gemma template yet: plain completion */
        .eog = {"<end_of_turn>", NULL},
    },
};

#undef REQ
#undef OPT

const struct wk_arch_desc *wk_arch_find(const char *name, size_t len) {
    for (size_t i = 0; i < sizeof arch_table / sizeof *arch_table; i++) {
        const char *n = arch_table[i].name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) return &arch_table[i];
    }
    return NULL;
}

const char *wk_arch_tensor_suffix(enum wk_lt t) {
    return (unsigned)t < WK_LT__COUNT ? tensor_suffix[t] : "?";
}

void wk_arch_list(char *buf, size_t n) {
    size_t used = 0;
    if (n) buf[0] = 0;
    for (size_t i = 0; i < sizeof arch_table / sizeof *arch_table && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", arch_table[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
}
