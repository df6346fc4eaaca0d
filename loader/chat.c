/* chat.c — chat templates to token sequences (see chat.h).
 *
 * What llama.cpp does for a chat request: render the messages to one string
 * (llm_chat_apply_template), then tokenize it with special tokens parsed.
 * Parsing splits the string at every special token; each stretch of plain
 * text between two special tokens is tokenized on its own (SentencePiece
 * vocabularies prefix each stretch with a space when add_space_prefix).
 *
 * We build the same sequence without ever parsing user text for specials:
 *   ctl(b, "<|im_start|>")  a control token, looked up by its exact text;
 *   lit(b, "user\n")        template text, appended to the current plain run;
 *   lit(b, content)         message content, likewise (never parsed).
 * A run is tokenized (parse_special = false) when the next control token
 * comes or at the end, so "user\n" + content is one tokenize call, exactly
 * the fragment llama.cpp would tokenize — and "<|im_end|>" typed inside a
 * message stays the plain text it is.
 *
 * Renderings (llama.cpp's built-in templates unless said otherwise):
 *   chatml  <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
 *           plus, as the model's Jinja template does (Qwen2 / Qwen2.5), a
 *           default system message when the first message is not a system
 *           message. The default text is read from the template itself: the
 *           first literal '<|im_start|>system\n...<|im_end|>' in it (Qwen2.5:
 *           "You are Qwen, created by Alibaba Cloud. You are a helpful
 *           assistant."). llama.cpp's built-in chatml adds none; the flag
 *           WK_CHAT_NO_DEFAULT_SYSTEM gives that behaviour.
 *   llama2  [INST] {sys}\n{user} [/INST]{assistant}</s>[INST] ...  with
 *           llama.cpp's variants chosen from the template text: <<SYS>>
 *           blocks ("<<SYS>>" in it), "<s>" before later turns ("bos_token +
 *           '[INST]"), trimmed content ("content.strip()"). No generation
 *           prompt: the text already ends with " [/INST]".
 *   phi3    <|{role}|>\n{content}<|end|>\n ... <|assistant|>\n
 *           (Phi-3 vocabularies: the tokenizer makes these tokens swallow the
 *           whitespace after them, as llama.cpp and Hugging Face's rstrip=true
 *           do; we ask the tokenizer which tokens do and drop that
 *           whitespace from the plain run likewise.)
 *   zephyr  <|{role}|>\n{content}<|endoftext|>\n ... <|assistant|>\n  where a
 *           role marker is a token if the vocabulary has it as a special
 *           token, else plain text (as parsing the rendered string would do).
 * BOS first when the vocabulary adds one (tokenizer.ggml.add_bos_token).
 */
#include "loader/chat.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ----------------------------------------------------------------------------
// detection

static bool has(const char *t, const char *needle) { return strstr(t, needle) != NULL; }

enum wk_chat_template wk_chat_detect(const char *t) {
    if (!t) return WK_CHAT_UNKNOWN;
    /* a template given by name */
    if (!strcmp(t, "chatml")) return WK_CHAT_CHATML;
    if (!strcmp(t, "llama2") || !strcmp(t, "llama2-sys") || !strcmp(t, "llama2-sys-bos") ||
        !strcmp(t, "llama2-sys-strip"))
        return WK_CHAT_LLAMA2;
    if (!strcmp(t, "phi3")) return WK_CHAT_PHI3;
    if (!strcmp(t, "zephyr")) return WK_CHAT_ZEPHYR;
    /* llm_chat_detect_template's cascade, in its order; the branches that
     * lead to templates we do not implement return UNKNOWN so a template is
     * never taken for a different one */
    if (has(t, "<|im_start|>")) {
        if (has(t, "<|im_sep|>") || has(t, "<end_of_utterance>")) return WK_CHAT_UNKNOWN; /* phi4, smolvlm */
        return WK_CHAT_CHATML;
    }
    if (!strncmp(t, "mistral", 7) || has(t, "[INST]")) {
        if (has(t, "[SYSTEM_PROMPT]") || has(t, "' [INST] ' + system_message") ||
            has(t, "[AVAILABLE_TOOLS]"))
            return WK_CHAT_UNKNOWN; /* mistral v1 / v3 / v7 */
        return WK_CHAT_LLAMA2;
    }
    if (has(t, "<|assistant|>") && has(t, "<|end|>")) return WK_CHAT_PHI3;
    if (has(t, "[gMASK]<sop>")) return WK_CHAT_UNKNOWN;                          /* chatglm4 */
    if (has(t, "<|assistant|>") && has(t, "<|user|>")) return WK_CHAT_UNKNOWN;   /* falcon3, glmedge */
    if (has(t, "<|{{ item['role'] }}|>") && has(t, "<|begin_of_image|>")) return WK_CHAT_UNKNOWN;
    if (has(t, "<|user|>") && has(t, "<|endoftext|>")) return WK_CHAT_ZEPHYR;
    return WK_CHAT_UNKNOWN;
}

const char *wk_chat_template_name(enum wk_chat_template t) {
    switch (t) {
    case WK_CHAT_CHATML: return "chatml";
    case WK_CHAT_LLAMA2: return "llama2";
    case WK_CHAT_ZEPHYR: return "zephyr";
    case WK_CHAT_PHI3: return "phi3";
    default: return "unknown";
    }
}

struct llama2_variant {
    bool system; /* <<SYS>> blocks */
    bool bos_in_history;
    bool strip;
};

static struct llama2_variant llama2_variant_of(const char *t) {
    struct llama2_variant v = {false, false, false};
    if (!t) return v;
    if (!strcmp(t, "llama2-sys-strip") || has(t, "content.strip()")) {
        v.system = v.strip = true;
    } else if (!strcmp(t, "llama2-sys-bos") || has(t, "bos_token + '[INST]")) {
        v.system = v.bos_in_history = true;
    } else if (!strcmp(t, "llama2-sys") || has(t, "<<SYS>>")) {
        v.system = true;
    }
    return v;
}

/* The default system message of a ChatML Jinja template: the first literal
 * <|im_start|>system\n...<|im_end|> in it whose text is a plain string (no
 * quote, brace or '+', i.e. not an expression). Writes the unescaped text to
 * buf; false if there is none. */
static bool chatml_default_system(const char *t, char *buf, size_t cap) {
    static const char head[] = "<|im_start|>system";
    if (!t) return false;
    for (const char *p = strstr(t, head); p; p = strstr(p + 1, head)) {
        const char *q = p + sizeof head - 1;
        if (q[0] == '\\' && q[1] == 'n') q += 2;
        else if (q[0] == '\n') q += 1;
        else continue;
        const char *end = strstr(q, "<|im_end|>");
        if (!end || end == q) continue;
        size_t n = 0;
        bool ok = true;
        for (const char *c = q; c < end && ok; c++) {
            char ch = *c;
            if (ch == '\'' || ch == '"' || ch == '{' || ch == '}' || ch == '+') ok = false;
            else if (ch == '\\') { /* Jinja string escapes */
                c++;
                ch = *c == 'n' ? '\n' : *c == 't' ? '\t' : *c;
            }
            if (ok) {
                if (n + 1 >= cap) ok = false;
                else buf[n++] = ch;
            }
        }
        if (!ok) continue;
        buf[n] = '\0';
        return true;
    }
    return false;
}

// ----------------------------------------------------------------------------
// the token builder

struct builder {
    const struct wk_vocab *v;
    const char *tmpl_name;
    int32_t *ids;
    size_t n, cap;
    char *run; /* pending plain text */
    size_t run_len, run_cap;
    bool rstrip_pending; /* right after a token that swallows whitespace */
    char *err;
    size_t err_len;
};

static wk_status push_id(struct builder *b, int32_t id) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        int32_t *p = realloc(b->ids, cap * sizeof *p);
        if (!p) return wk_errf(b->err, b->err_len, WK_STATUS_OOM_HOST, "wk_chat_tokenize: out of memory");
        b->ids = p;
        b->cap = cap;
    }
    b->ids[b->n++] = id;
    return WK_STATUS_OK;
}

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Append template text or message content to the current plain run. */
static wk_status lit_n(struct builder *b, const char *s, size_t len) {
    if (b->rstrip_pending) {
        while (len > 0 && is_space(*s)) {
            s++;
            len--;
        }
        if (len == 0) return WK_STATUS_OK;
        b->rstrip_pending = false;
    }
    if (b->run_len + len + 1 > b->run_cap) {
        size_t cap = b->run_cap ? b->run_cap : 256;
        while (cap < b->run_len + len + 1) cap *= 2;
        char *p = realloc(b->run, cap);
        if (!p) return wk_errf(b->err, b->err_len, WK_STATUS_OOM_HOST, "wk_chat_tokenize: out of memory");
        b->run = p;
        b->run_cap = cap;
    }
    memcpy(b->run + b->run_len, s, len);
    b->run_len += len;
    return WK_STATUS_OK;
}

static wk_status lit(struct builder *b, const char *s) { return lit_n(b, s, strlen(s)); }

/* Tokenize the pending run as plain text. */
static wk_status flush_run(struct builder *b) {
    if (b->run_len == 0) return WK_STATUS_OK;
    int32_t *ids = NULL;
    size_t n = 0;
    wk_status st = wk_tokenize(b->v, b->run, b->run_len, false, &ids, &n, b->err, b->err_len);
    b->run_len = 0;
    for (size_t i = 0; st == WK_STATUS_OK && i < n; i++) st = push_id(b, ids[i]);
    free(ids);
    return st;
}

static bool is_special_attr(int attr) {
    return attr == WK_TOKEN_CONTROL || attr == WK_TOKEN_USER_DEFINED;
}

/* Does this special token swallow the whitespace after it when the
 * tokenizer parses specials (Phi-3's "rstrip")? Asked of the tokenizer
 * itself: "<tok> " must come back as the token alone. */
static wk_status token_rstrips(struct builder *b, int32_t id, const char *text, bool *yes) {
    char probe[80];
    int len = snprintf(probe, sizeof probe, "%s ", text);
    *yes = false;
    if (len <= 0 || (size_t)len >= sizeof probe) return WK_STATUS_OK;
    int32_t *ids = NULL;
    size_t n = 0;
    wk_status st = wk_tokenize(b->v, probe, (size_t)len, true, &ids, &n, b->err, b->err_len);
    if (st == WK_STATUS_OK) *yes = n == 1 && ids[0] == id;
    free(ids);
    return st;
}

/* A control token of the template: it must exist in the vocabulary. */
static wk_status ctl(struct builder *b, const char *text) {
    int32_t id = wk_token_id(b->v, text);
    if (id < 0)
        return wk_errf(b->err, b->err_len, WK_STATUS_INVALID_ARGUMENT,
                       "wk_chat_tokenize: the %s chat template needs the token \"%s\", which the "
                       "vocabulary does not have", b->tmpl_name, text);
    wk_status st = flush_run(b);
    if (st == WK_STATUS_OK) st = push_id(b, id);
    if (st == WK_STATUS_OK) st = token_rstrips(b, id, text, &b->rstrip_pending);
    return st;
}

/* A marker that is a token when the vocabulary has it as a special token,
 * plain text otherwise. */
static wk_status ctl_or_lit(struct builder *b, const char *text) {
    int32_t id = wk_token_id(b->v, text);
    if (id >= 0 && is_special_attr(wk_token_attr(b->v, id))) return ctl(b, text);
    return lit(b, text);
}

/* ctl(b, "<|" role "|>") for phi3 / zephyr */
static wk_status role_marker(struct builder *b, const char *role, bool strict) {
    char tok[64];
    snprintf(tok, sizeof tok, "<|%s|>", role);
    return strict ? ctl(b, tok) : ctl_or_lit(b, tok);
}

// ----------------------------------------------------------------------------
// the templates

#define TRY(x) do { wk_status st_ = (x); if (st_ != WK_STATUS_OK) return st_; } while (0)

static wk_status render_chatml(struct builder *b, const struct wk_chat_msg *m, size_t n,
                               const char *default_system) {
    if (default_system && strcmp(m[0].role, "system") != 0) {
        TRY(ctl(b, "<|im_start|>"));
        TRY(lit(b, "system\n"));
        TRY(lit(b, default_system));
        TRY(ctl(b, "<|im_end|>"));
        TRY(lit(b, "\n"));
    }
    for (size_t i = 0; i < n; i++) {
        TRY(ctl(b, "<|im_start|>"));
        TRY(lit(b, m[i].role));
        TRY(lit(b, "\n"));
        TRY(lit(b, m[i].content));
        TRY(ctl(b, "<|im_end|>"));
        TRY(lit(b, "\n"));
    }
    TRY(ctl(b, "<|im_start|>"));
    return lit(b, "assistant\n");
}

static wk_status lit_trimmed(struct builder *b, const char *s, bool trim) {
    size_t len = strlen(s);
    if (trim) {
        while (len > 0 && is_space(*s)) {
            s++;
            len--;
        }
        while (len > 0 && is_space(s[len - 1])) len--;
    }
    return lit_n(b, s, len);
}

static wk_status render_llama2(struct builder *b, const struct wk_chat_msg *m, size_t n,
                               struct llama2_variant var) {
    bool inside_turn = true;
    TRY(lit(b, "[INST] "));
    for (size_t i = 0; i < n; i++) {
        if (!inside_turn) {
            inside_turn = true;
            if (var.bos_in_history) TRY(ctl(b, "<s>"));
            TRY(lit(b, "[INST] "));
        }
        if (!strcmp(m[i].role, "system")) {
            if (var.system) {
                TRY(lit(b, "<<SYS>>\n"));
                TRY(lit_trimmed(b, m[i].content, var.strip));
                TRY(lit(b, "\n<</SYS>>\n\n"));
            } else {
                TRY(lit_trimmed(b, m[i].content, var.strip));
                TRY(lit(b, "\n"));
            }
        } else if (!strcmp(m[i].role, "user")) {
            TRY(lit_trimmed(b, m[i].content, var.strip));
            TRY(lit(b, " [/INST]"));
        } else {
            TRY(lit_trimmed(b, m[i].content, var.strip));
            TRY(ctl(b, "</s>"));
            inside_turn = false;
        }
    }
    return WK_STATUS_OK;
}

static wk_status render_phi3_zephyr(struct builder *b, const struct wk_chat_msg *m, size_t n,
                                    bool phi3) {
    const char *end = phi3 ? "<|end|>" : "<|endoftext|>";
    for (size_t i = 0; i < n; i++) {
        TRY(role_marker(b, m[i].role, phi3));
        TRY(lit(b, "\n"));
        TRY(lit(b, m[i].content));
        TRY(ctl(b, end));
        TRY(lit(b, "\n"));
    }
    TRY(role_marker(b, "assistant", phi3));
    return lit(b, "\n");
}

#undef TRY

// ----------------------------------------------------------------------------
// public

wk_status wk_chat_tokenize_as(const struct wk_vocab *v, enum wk_chat_template tmpl,
                              unsigned flags, const struct wk_chat_msg *msgs, size_t n,
                              int32_t **out, size_t *n_out, char *err, size_t err_len) {
    *out = NULL;
    *n_out = 0;
    if (tmpl == WK_CHAT_UNKNOWN) tmpl = wk_chat_detect(v->chat_template);
    if (tmpl == WK_CHAT_UNKNOWN)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                       "%s: unsupported chat template%s (supported: chatml, llama2, phi3, zephyr)",
                       __func__, v->chat_template ? "" : " (the model has none)");
    if (n == 0 || !msgs)
        return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT, "%s: no messages", __func__);
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].role || !msgs[i].content)
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                           "%s: message %zu has no %s", __func__, i, msgs[i].role ? "content" : "role");
        if (strcmp(msgs[i].role, "system") && strcmp(msgs[i].role, "user") &&
            strcmp(msgs[i].role, "assistant"))
            return wk_errf(err, err_len, WK_STATUS_INVALID_ARGUMENT,
                           "%s: message %zu has role \"%.32s\" (expected system, user or assistant)",
                           __func__, i, msgs[i].role);
    }

    struct builder b = {.v = v, .tmpl_name = wk_chat_template_name(tmpl), .err = err,
                        .err_len = err_len};
    wk_status st = WK_STATUS_OK;
    if (v->add_bos && v->bos >= 0) st = push_id(&b, v->bos);
    if (st == WK_STATUS_OK) {
        switch (tmpl) {
        case WK_CHAT_CHATML: {
            char sys[1024];
            bool def = !(flags & WK_CHAT_NO_DEFAULT_SYSTEM) &&
                       chatml_default_system(v->chat_template, sys, sizeof sys);
            st = render_chatml(&b, msgs, n, def ? sys : NULL);
            break;
        }
        case WK_CHAT_LLAMA2:
            st = render_llama2(&b, msgs, n, llama2_variant_of(v->chat_template));
            break;
        case WK_CHAT_PHI3: st = render_phi3_zephyr(&b, msgs, n, true); break;
        case WK_CHAT_ZEPHYR: st = render_phi3_zephyr(&b, msgs, n, false); break;
        default: st = WK_STATUS_INTERNAL; break;
        }
    }
    if (st == WK_STATUS_OK) st = flush_run(&b);
    free(b.run);
    if (st != WK_STATUS_OK) {
        free(b.ids);
        return st;
    }
    *out = b.ids;
    *n_out = b.n;
    return WK_STATUS_OK;
}

wk_status wk_chat_tokenize(const struct wk_vocab *v, const struct wk_chat_msg *msgs, size_t n,
                           int32_t **out, size_t *n_out, char *err, size_t err_len) {
    return wk_chat_tokenize_as(v, WK_CHAT_UNKNOWN, 0, msgs, n, out, n_out, err, err_len);
}
