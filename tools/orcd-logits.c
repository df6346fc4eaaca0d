/* orcd-logits — shows what the model computes.
 *
 *   orcd-logits -m MODEL [-p TEXT | --ids "1 2 3"] [-n N] [--ignore-eos]
 *               [--teacher "ids"] [-o LOGITS.f32] [--device cpu|cuda[:N]] [--ctx N]
 *
 * Tokenizes TEXT (special tokens parsed, BOS added when the model asks for
 * it), runs the prompt as one batch, then N steps of greedy decoding — or of
 * teacher forcing with the given ids. Prints "prompt_ids: ..." and
 * "gen_ids: ..." and the generated text, and writes the logits in the
 * reference format of ../shared/reference: raw float32 rows of n_vocab, row 0
 * at the last prompt position, row k at the position of generated token k-1
 * (N+1 rows). Errors go to stderr with exit status 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader/model.h"
#include "core/backend.h"
#include "worker/backend-open.h"

static int parse_ids(const char *s, int32_t **out, size_t *n) {
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n') p++;
        if (!*p) break;
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p) { free(v); return -1; }
        if (k == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) { free(v); return -1; }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    *out = v;
    *n = k;
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: orcd-logits -m MODEL [-p TEXT | --ids \"1 2 3\"] [-n N] [--ignore-eos]\n"
                    "                   [--teacher \"ids\"] [-o LOGITS.f32] [--device cpu|cuda[:N]] [--ctx N]\n");
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *ids_arg = NULL, *teacher_arg = NULL, *out_path = NULL;
    const char *device = "cpu";
    int n_gen = 32, n_ctx = 0;
    bool ignore_eos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && next && (i++, 1))
        if (ARG("-m") || ARG("--model")) model_path = next;
        else if (ARG("-p") || ARG("--prompt")) prompt = next;
        else if (ARG("--ids")) ids_arg = next;
        else if (ARG("-n")) n_gen = atoi(next);
        else if (ARG("--teacher")) teacher_arg = next;
        else if (ARG("-o")) out_path = next;
        else if (ARG("--device")) device = next;
        else if (ARG("--ctx")) n_ctx = atoi(next);
        else if (strcmp(a, "--ignore-eos") == 0) ignore_eos = true;
        else { usage(); fprintf(stderr, "orcd-logits: unknown or incomplete argument '%s'\n", a); return 1; }
#undef ARG
    }
    if (!model_path || (!prompt && !ids_arg) || n_gen < 0) { usage(); return 1; }

    char err[512] = "";
    struct wk_model m;
    wk_status s = wk_model_load(model_path, &m, err, sizeof err);
    if (s != WK_STATUS_OK) { fprintf(stderr, "orcd-logits: %s: %s\n", wk_status_name(s), err); return 1; }

    int32_t *prompt_ids = NULL, *teacher = NULL;
    size_t n_prompt = 0, n_teacher = 0;
    int rc = 1;
    struct wk_backend *b = NULL;
    float *logits = NULL;
    int32_t *all = NULL;
    FILE *fo = NULL;
    if (ids_arg) {
        if (parse_ids(ids_arg, &prompt_ids, &n_prompt) != 0) { fprintf(stderr, "orcd-logits: bad --ids\n"); goto done; }
    } else {
        int32_t *toks = NULL;
        size_t nt = 0;
        s = wk_tokenize(&m.vocab, prompt, strlen(prompt), true, &toks, &nt, err, sizeof err);
        if (s != WK_STATUS_OK) { fprintf(stderr, "orcd-logits: %s\n", err); goto done; }
        bool bos = m.vocab.add_bos && m.vocab.bos >= 0;
        prompt_ids = malloc((nt + 1) * sizeof *prompt_ids);
        if (!prompt_ids) { free(toks); goto done; }
        if (bos) prompt_ids[n_prompt++] = m.vocab.bos;
        memcpy(prompt_ids + n_prompt, toks, nt * sizeof *toks);
        n_prompt += nt;
        free(toks);
    }
    if (n_prompt == 0) { fprintf(stderr, "orcd-logits: empty prompt\n"); goto done; }
    if (teacher_arg) {
        if (parse_ids(teacher_arg, &teacher, &n_teacher) != 0) { fprintf(stderr, "orcd-logits: bad --teacher\n"); goto done; }
        n_gen = (int)n_teacher;
    }
    if (n_ctx <= 0) n_ctx = (int)n_prompt + n_gen + 1;
    s = wk_backend_open(&m, device, &(struct wk_backend_config){.n_ctx = n_ctx}, &b, err, sizeof err);
    if (s != WK_STATUS_OK) { fprintf(stderr, "orcd-logits: %s: %s\n", wk_status_name(s), err); goto done; }
    fprintf(stderr, "orcd-logits: %s on %s, %zu prompt tokens\n", m.name, b->info.device, n_prompt);

    const int V = m.hp.n_vocab;
    logits = malloc((size_t)V * sizeof *logits);
    all = malloc((n_prompt + (size_t)n_gen + 1) * sizeof *all);
    if (!logits || !all) goto done;
    memcpy(all, prompt_ids, n_prompt * sizeof *all);
    if (out_path && !(fo = fopen(out_path, "wb"))) { fprintf(stderr, "orcd-logits: cannot write %s\n", out_path); goto done; }

    printf("prompt_ids:");
    for (size_t i = 0; i < n_prompt; i++) printf(" %d", prompt_ids[i]);
    printf("\n");

    s = wk_backend_forward_one(b, prompt_ids, (int)n_prompt, 0, logits, false, err, sizeof err);
    int n_done = 0;
    size_t n_all = n_prompt;
    const struct wk_sampling greedy = {.temperature = 0, .top_p = 1, .repetition_penalty = 1};
    while (s == WK_STATUS_OK) {
        if (fo && fwrite(logits, sizeof(float), (size_t)V, fo) != (size_t)V) { s = WK_STATUS_IO; break; }
        if (n_done == n_gen) break;
        int32_t next;
        if (teacher) {
            next = teacher[n_done];
        } else {
            struct wk_sample_out so;
            s = wk_backend_sample_one(b, &greedy, all, n_all, (uint64_t)n_done, &so, err, sizeof err);
            if (s != WK_STATUS_OK) break;
            next = so.token;
            if (!ignore_eos && wk_token_is_eog(&m.vocab, next)) break;
        }
        all[n_all++] = next;
        n_done++;
        /* the logits row at this token's position; the last row is written
         * after the loop's final forward */
        s = wk_backend_forward_one(b, &next, 1, (int)n_all - 1, logits, false, err, sizeof err);
    }
    if (s != WK_STATUS_OK) { fprintf(stderr, "orcd-logits: %s: %s\n", wk_status_name(s), err); goto done; }

    printf("gen_ids:");
    for (size_t i = n_prompt; i < n_all; i++) printf(" %d", all[i]);
    printf("\n---- text ----\n");
    for (size_t i = n_prompt; i < n_all; i++) {
        size_t len;
        const char *piece = wk_token_piece(&m.vocab, all[i], false, &len);
        fwrite(piece, 1, len, stdout);
    }
    printf("\n");
    rc = 0;
done:
    if (fo) fclose(fo);
    free(all);
    free(logits);
    free(prompt_ids);
    free(teacher);
    wk_backend_free(b);
    wk_model_free(&m);
    return rc;
}
