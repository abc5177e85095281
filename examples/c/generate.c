/*
 * An app embedding lfm-edge through its C API: load a model, open a session, stream a
 * continuation (or chat turns), print the generated ids last. Ctrl-C stops generation
 * through the cancel flag.
 *
 *   cargo build --release -p lfm-edge-ffi
 *   cc -std=c11 -Wall -Wextra -pedantic -Iffi/include examples/c/generate.c \
 *      -Ltarget/release -llfm_edge_ffi -Wl,-rpath,"$PWD/target/release" -o generate
 *   ./generate fixtures/lfm2-tiny-conv-first --prompt "Return the array" --max-tokens 32
 *   ./generate fixtures/gguf/lfm2-tiny-kquant-Q4_K_M.gguf --tokens 1,441,276 --ignore-eos
 *   ./generate models/lfm2-demo-Q8_0.gguf --chat "Hi!" --chat "Tell me more." \
 *      --temperature 0.8 --top-p 0.9 --seed 2 --stop "."
 * MODEL is a model folder, a .gguf file or hf:OWNER/REPO[:FILE].
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lfm_edge.h"

#define MAX_IDS 4096
#define MAX_TURNS 16
#define MAX_STOPS 8

/* Set by Ctrl-C, read by the library before each forward pass. */
static _Atomic int32_t cancel_flag;

static void on_interrupt(int signal_number) {
    (void)signal_number;
    atomic_store(&cancel_flag, 1);
}

/* The ids generated so far, printed after the text. */
typedef struct {
    uint32_t ids[MAX_IDS];
    size_t count;
} generated_ids;

static bool print_token(const char *text, size_t text_len, uint32_t token, void *user_data) {
    generated_ids *generated = user_data;
    fwrite(text, 1, text_len, stdout);
    fflush(stdout);
    if (token != LFM_TOKEN_NONE && generated->count < MAX_IDS) {
        generated->ids[generated->count++] = token;
    }
    return true;
}

static int fail(const char *what, lfm_status status) {
    fprintf(stderr, "error: %s failed (status %d): %s\n", what, (int)status,
            lfm_last_error_message());
    return 1;
}

/* "1,2,3" into ids; 0 when the text is not such a list. */
static size_t parse_ids(const char *text, uint32_t *ids, size_t capacity) {
    size_t count = 0;
    while (count < capacity) {
        char *end;
        unsigned long id = strtoul(text, &end, 10);
        if (end == text) {
            return 0;
        }
        ids[count++] = (uint32_t)id;
        if (*end == '\0') {
            return count;
        }
        if (*end != ',') {
            return 0;
        }
        text = end + 1;
    }
    return count;
}

static int usage(const char *program) {
    fprintf(stderr,
            "usage: %s MODEL (--prompt TEXT | --tokens IDS | --chat MESSAGE...)\n"
            "          [--max-tokens N] [--temperature T] [--top-k K] [--top-p P]\n"
            "          [--min-p P] [--repetition-penalty R] [--presence-penalty P]\n"
            "          [--frequency-penalty F] [--penalty-window N] [--seed S]\n"
            "          [--stop TEXT]... [--ignore-eos]\n",
            program);
    return 2;
}

int main(int argc, char **argv) {
    const char *prompt = NULL, *tokens = NULL, *turns[MAX_TURNS], *stops[MAX_STOPS];
    size_t n_turns = 0, n_stops = 0;
    lfm_generate_options options = lfm_generate_options_default();
    if (argc < 3) {
        return usage(argv[0]);
    }
    for (int i = 2; i < argc; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(flag, "--ignore-eos") == 0) {
            options.ignore_eos = true;
            continue;
        }
        if (!value) {
            return usage(argv[0]);
        }
        i++;
        if (strcmp(flag, "--prompt") == 0) {
            prompt = value;
        } else if (strcmp(flag, "--tokens") == 0) {
            tokens = value;
        } else if (strcmp(flag, "--chat") == 0 && n_turns < MAX_TURNS) {
            turns[n_turns++] = value;
        } else if (strcmp(flag, "--max-tokens") == 0) {
            options.max_tokens = (uint32_t)strtoul(value, NULL, 10);
        } else if (strcmp(flag, "--temperature") == 0) {
            options.temperature = strtof(value, NULL);
        } else if (strcmp(flag, "--top-k") == 0) {
            options.top_k = (uint32_t)strtoul(value, NULL, 10);
        } else if (strcmp(flag, "--top-p") == 0) {
            options.top_p = strtof(value, NULL);
        } else if (strcmp(flag, "--min-p") == 0) {
            options.min_p = strtof(value, NULL);
        } else if (strcmp(flag, "--repetition-penalty") == 0) {
            options.repetition_penalty = strtof(value, NULL);
        } else if (strcmp(flag, "--presence-penalty") == 0) {
            options.presence_penalty = strtof(value, NULL);
        } else if (strcmp(flag, "--frequency-penalty") == 0) {
            options.frequency_penalty = strtof(value, NULL);
        } else if (strcmp(flag, "--penalty-window") == 0) {
            options.penalty_window = (uint32_t)strtoul(value, NULL, 10);
        } else if (strcmp(flag, "--seed") == 0) {
            options.seed = strtoull(value, NULL, 10);
        } else if (strcmp(flag, "--stop") == 0 && n_stops < MAX_STOPS) {
            stops[n_stops++] = value;
        } else {
            return usage(argv[0]);
        }
    }
    if (!prompt && !tokens && n_turns == 0) {
        return usage(argv[0]);
    }
    options.stop_strings = stops;
    options.n_stop_strings = n_stops;

    lfm_model *model = NULL;
    lfm_status status = lfm_model_load(argv[1], NULL, &model);
    if (status != LFM_OK) {
        return fail("lfm_model_load", status);
    }
    lfm_session *session = NULL;
    status = lfm_session_new(model, NULL, &session);
    /* The session keeps the weights alive: the app can drop its model handle now. */
    lfm_model_free(model);
    if (status != LFM_OK) {
        return fail("lfm_session_new", status);
    }
    signal(SIGINT, on_interrupt);

    static generated_ids generated;
    const volatile int32_t *cancel = (const volatile int32_t *)&cancel_flag;
    lfm_generation result = {0};
    if (tokens) {
        static uint32_t ids[MAX_IDS];
        size_t n = parse_ids(tokens, ids, MAX_IDS);
        if (n == 0) {
            fprintf(stderr, "error: --tokens: expected comma-separated ids\n");
            return 2;
        }
        status = lfm_generate_tokens(session, ids, n, &options, print_token, &generated,
                                     cancel, &result);
    } else if (prompt) {
        status = lfm_generate(session, prompt, &options, print_token, &generated, cancel,
                              &result);
    }
    for (size_t t = 0; t < n_turns && status == LFM_OK; t++) {
        printf("%s> %s\n", t ? "\n" : "", turns[t]);
        status = lfm_chat(session, "user", turns[t], &options, print_token, &generated,
                          cancel, &result);
    }
    if (status != LFM_OK) {
        lfm_session_free(session);
        return fail("generation", status);
    }

    printf("\n");
    for (size_t i = 0; i < generated.count; i++) {
        printf(i ? ",%u" : "%u", (unsigned)generated.ids[i]);
    }
    printf("\n");
    fprintf(stderr, "stopped: reason %d after %zu tokens (prompt %zu)\n",
            (int)result.stop_reason, result.generated_tokens, result.prompt_tokens);
    lfm_session_free(session);
    return 0;
}
