// Greedy continuation of given token ids by llama.cpp's CPU backend, for
// make_gguf_fixtures.py (which builds it against llama.cpp's static libraries).
//
//   llama_cpp_greedy MODEL.gguf N_STEPS PROMPT_ID...
//
// prints one line per generated token: its id and its top-1/top-2 logit margin.
// No chat template, no sampler chain, eos ignored: the argmax (first on ties) of the
// last position's logits is fed back, with llama.cpp's default context otherwise
// (F16 KV cache, flash attention as llama.cpp's auto picks it), on one thread.
// llama.cpp's log is silenced unless LLAMA_CPP_GREEDY_LOG is set.
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf N_STEPS PROMPT_ID...\n", argv[0]);
        return 1;
    }
    if (!getenv("LLAMA_CPP_GREEDY_LOG")) llama_log_set([](ggml_log_level, const char *, void *) {}, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 2;
    const int n_steps = atoi(argv[2]);
    std::vector<llama_token> ids;
    for (int i = 3; i < argc; ++i) ids.push_back(atoi(argv[i]));

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = cp.n_batch = cp.n_ubatch = ids.size() + n_steps;
    cp.n_threads = cp.n_threads_batch = 1;
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) return 3;
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    llama_token next = 0;
    for (int step = 0; step < n_steps; ++step) {
        llama_batch batch = step == 0 ? llama_batch_get_one(ids.data(), ids.size()) : llama_batch_get_one(&next, 1);
        if (llama_decode(ctx, batch)) return 4;
        const float * logits = llama_get_logits_ith(ctx, -1);
        int top1 = 0, top2 = -1;
        for (int t = 1; t < n_vocab; ++t) {
            if (logits[t] > logits[top1]) {
                top2 = top1;
                top1 = t;
            } else if (top2 < 0 || logits[t] > logits[top2]) {
                top2 = t;
            }
        }
        next = top1;
        printf("%d %.9g\n", top1, logits[top1] - logits[top2]);
    }
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
