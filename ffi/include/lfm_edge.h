/*
 * lfm_edge.h: the C API of lfm-edge, which runs Liquid AI's LFM2 models on any GPU
 * through wgpu (Vulkan, Metal, DX12, OpenGL ES).
 *
 * Link liblfm_edge_ffi (.so / .dylib / .dll, or the static .a with the system
 * libraries it needs: on Linux -lm -ldl -lpthread). Kept by hand; ffi/tests/header.rs
 * checks that it declares exactly the library's exported functions and that every
 * struct has the library's layout.
 *
 * Conventions
 * - Every function but the *_default, *_free, lfm_version and lfm_last_error_message
 *   returns an lfm_status; on anything but LFM_OK, lfm_last_error_message() tells
 *   what failed and why (the file, tensor or value at fault).
 * - Every pointer argument is checked: NULL where one is required gives
 *   LFM_ERROR_NULL_ARGUMENT. Options pointers may be NULL for the defaults.
 * - Options structs are versioned: each starts with `struct_size`, which its
 *   lfm_*_options_default() sets. Start from the default and change fields:
 *       lfm_generate_options options = lfm_generate_options_default();
 *       options.top_p = 0.9f;
 *   The library reads `struct_size` bytes, so an app built against this header keeps
 *   working with a later library that appends fields (they take their defaults). A
 *   struct_size the library does not know is LFM_ERROR_INVALID_ARGUMENT.
 * - Strings are UTF-8 and NUL-terminated; strings the library returns are owned by it.
 * - No Rust panic crosses this boundary: one is reported as LFM_ERROR_INTERNAL.
 *
 * Threads
 * - lfm_model: immutable once loaded; use it and open sessions on it from any number
 *   of threads at once. Each session holds a reference to the model, so the model
 *   handle may be freed before its sessions (the weights go with the last of them).
 * - lfm_session: one call at a time. A call made while another call on the same
 *   session runs (from another thread, or from inside a token callback) is refused
 *   with LFM_ERROR_BUSY instead of waiting. Sessions may move between threads;
 *   different sessions run concurrently (their GPU work shares one queue per model).
 *   lfm_session_cancel is the exception: call it from any thread while a call runs.
 *   Never free a session while a call on it runs.
 * - Token callbacks run on the calling thread, inside the generating call.
 * - lfm_last_error_message is per thread.
 */
#ifndef LFM_EDGE_H
#define LFM_EDGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lfm_status {
    LFM_OK = 0,
    LFM_ERROR_NULL_ARGUMENT = 1,
    /* A value out of range: not UTF-8, an unknown backend, a token id past the
     * vocabulary, an empty prompt, a conversation the chat template refuses, tools that
     * are not valid JSON or a tool choice that names no tool. */
    LFM_ERROR_INVALID_ARGUMENT = 2,
    /* A file or directory that cannot be read. */
    LFM_ERROR_IO = 3,
    /* config.json, the weights, the tokenizer or the chat template is invalid or
     * missing (e.g. chatting with a model that ships no chat template). */
    LFM_ERROR_MODEL = 4,
    /* No GPU adapter for the requested backend. */
    LFM_ERROR_NO_ADAPTER = 5,
    /* A device error, or a buffer above the adapter's limits. */
    LFM_ERROR_GPU = 6,
    /* The prompt does not fit in what is left of the session's context, or of the
     * model's shared KV pool. */
    LFM_ERROR_CONTEXT_FULL = 7,
    /* The output buffer is too small; the needed size was written. */
    LFM_ERROR_BUFFER_TOO_SMALL = 8,
    /* Another call is using the session. */
    LFM_ERROR_BUSY = 9,
    /* A bug in the library (a caught panic); a session it hit may be unusable. */
    LFM_ERROR_INTERNAL = 10,
    /* The model's VRAM budget cannot hold the weights, or even a one-token session
     * beside what is already in it; the message has the numbers. */
    LFM_ERROR_BUDGET = 11
} lfm_status;

typedef enum lfm_backend {
    LFM_BACKEND_AUTO = 0, /* the best native API (Vulkan, Metal, DX12), then OpenGL ES;
                           * honours the WGPU_BACKEND environment variable */
    LFM_BACKEND_VULKAN = 1,
    LFM_BACKEND_METAL = 2,
    LFM_BACKEND_DX12 = 3,
    LFM_BACKEND_GL = 4
} lfm_backend;

typedef enum lfm_stop_reason {
    LFM_STOP_MAX_TOKENS = 0,
    /* The model produced an end-of-sequence token (neither streamed nor kept). */
    LFM_STOP_END_OF_SEQUENCE = 1,
    /* The token callback returned false. */
    LFM_STOP_CALLBACK = 2,
    /* A cancel flag was set, or lfm_session_cancel was called. */
    LFM_STOP_CANCELLED = 3,
    /* The session's context, or the model's shared KV pool, has no room for another
     * token. */
    LFM_STOP_CONTEXT_FULL = 4,
    /* One of options->stop_strings was produced (it is not streamed). */
    LFM_STOP_STOP_STRING = 5
} lfm_stop_reason;

/* What lfm_generate_options.constraint holds. The bindings number kinds the same:
 * JNI's GenerateParams.constraintKind, Kotlin's and Swift's Constraint (JsonSchema /
 * .jsonSchema, Regex / .regex, Grammar / .grammar for LFM_CONSTRAINT_LARK). */
typedef enum lfm_constraint_kind {
    LFM_CONSTRAINT_NONE = 0,
    /* A JSON schema (llguidance's subset): the output is a JSON value valid against it. */
    LFM_CONSTRAINT_JSON_SCHEMA = 1,
    /* A regex (Rust's syntax) that matches the whole output. */
    LFM_CONSTRAINT_REGEX = 2,
    /* A grammar in llguidance's Lark dialect (%json {...} embeds a schema). */
    LFM_CONSTRAINT_LARK = 3
} lfm_constraint_kind;

/* The token passed to the callback with text held back for a stop string that never
 * completed, let go at the end of the generation. */
#define LFM_TOKEN_NONE UINT32_MAX

/* Opaque handles. */
typedef struct lfm_model lfm_model;
typedef struct lfm_session lfm_session;

typedef struct lfm_model_options {
    uint32_t struct_size; /* sizeof(lfm_model_options), set by lfm_model_options_default */
    int32_t backend;      /* an lfm_backend */
    /* GPU memory for the weights and every session of this model (activations, conv
     * state, KV cache), reserved before anything is allocated: a session whose
     * context_length is 0 gets all the context the budget has left. 0 = no budget. */
    uint64_t vram_budget_bytes;
    /* Lower the adapter's max_storage_buffer_binding_size / max_buffer_size to a
     * phone's (larger weights are then bound or uploaded in parts); 0 = the adapter's. */
    uint64_t max_binding_bytes;
    uint64_t max_buffer_bytes;
    /* 0: each session has a KV cache of its own, sized to its context. N: one pool of
     * N tokens (in blocks of 16) shared by all the model's sessions, each taking blocks
     * as it grows; a session whose context_length is 0 may use all of it. A session
     * that finds the pool full stops with LFM_STOP_CONTEXT_FULL, or its prompt is
     * refused with LFM_ERROR_CONTEXT_FULL. */
    uint32_t kv_pool_tokens;
} lfm_model_options;

typedef struct lfm_session_options {
    uint32_t struct_size;    /* set by lfm_session_options_default */
    uint32_t context_length; /* tokens the KV cache holds; 0 = 4096, or the shared
                              * pool's size, or with a VRAM budget all that the
                              * budget has left (capped at the
                              * model's max_position_embeddings) */
    uint32_t batch;          /* most tokens per forward pass while feeding a prompt;
                              * 0 = 128 */
} lfm_session_options;

/*
 * How to sample, as the command line's options: penalties over the recent tokens,
 * then temperature (0: greedy, and the rest is skipped), top-k, top-p, min-p, and a
 * seeded draw. Values out of range are LFM_ERROR_INVALID_ARGUMENT, naming the field.
 */
typedef struct lfm_generate_options {
    uint32_t struct_size;     /* set by lfm_generate_options_default */
    uint32_t max_tokens;      /* 0 feeds the prompt and generates nothing; default 256 */
    float temperature;        /* >= 0; 0 is greedy (the default) */
    uint32_t top_k;           /* keep the k most likely tokens; 0 = all */
    float top_p;              /* in (0, 1]: keep the most likely tokens up to this mass */
    float min_p;              /* in [0, 1]: keep tokens at least this fraction of the
                               * most likely one's probability; 0 = all */
    float repetition_penalty; /* > 0; 1 = none; above 1 discourages tokens seen (HF's) */
    float presence_penalty;   /* subtracted once from a seen token's logit (OpenAI's) */
    float frequency_penalty;  /* subtracted once per time a token was seen (OpenAI's) */
    uint32_t penalty_window;  /* penalties look at the last N tokens; 0 = all held */
    uint64_t seed;            /* the same seed gives the same tokens */
    /* `n_stop_strings` UTF-8 strings that end the generation when produced (they are
     * not streamed: text that may begin one is held back until it cannot); the
     * pointers need only live during the call. NULL when n_stop_strings is 0. */
    const char *const *stop_strings;
    size_t n_stop_strings;
    bool ignore_eos;          /* keep generating past end-of-sequence tokens */
    /* Since the second version of this struct (an app built against the first passes
     * the first's struct_size and gets no constraint): what the output must be. The
     * tokens the constraint forbids are masked before sampling, every option above
     * still applying, and end-of-sequence tokens are allowed only where it may end.
     * A constraint that does not compile, or allows nothing, is
     * LFM_ERROR_INVALID_ARGUMENT before any token, the message naming where it is
     * wrong; one that max_tokens cuts short stops with LFM_STOP_MAX_TOKENS. */
    uint64_t constraint_kind; /* an lfm_constraint_kind; 64 bits wide so that it starts
                               * past the first version's padding on every ABI */
    const char *constraint;   /* the JSON schema, regex or Lark grammar (UTF-8); NULL
                               * with LFM_CONSTRAINT_NONE; needs only live during the
                               * call */
} lfm_generate_options;

typedef struct lfm_generation {
    size_t prompt_tokens;    /* tokens of the prompt the cache did not hold already */
    size_t generated_tokens;
    int32_t stop_reason;     /* an lfm_stop_reason */
} lfm_generation;

/*
 * Called for each generated token with the text it completes: `text_len` bytes at
 * `text`, also NUL-terminated, valid only during the call. The text may be empty (a
 * token that ends inside a UTF-8 character: its bytes come with a later token, or text
 * held back because it may begin a stop string). `token` is LFM_TOKEN_NONE for held-back
 * text let go at the end. Return true to go on, false to stop (LFM_STOP_CALLBACK).
 */
typedef bool (*lfm_token_callback)(const char *text, size_t text_len, uint32_t token,
                                   void *user_data);

/* "0.1.0": the library's version, static storage. */
const char *lfm_version(void);

/* The message of the last call that failed on this thread, "" if none; valid until
 * the next failing call on this thread. */
const char *lfm_last_error_message(void);

lfm_model_options lfm_model_options_default(void);
lfm_session_options lfm_session_options_default(void);
lfm_generate_options lfm_generate_options_default(void);

/*
 * Loads a model onto a GPU. `path` is one of:
 * - a model folder as published on the Hugging Face hub: config.json,
 *   model.safetensors (or model.safetensors.index.json and its shards),
 *   tokenizer.json, and tokenizer_config.json for the chat template;
 * - a .gguf file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K),
 *   its quantized blocks kept as they are in VRAM;
 * - "hf:OWNER/REPO" (a safetensors checkpoint) or "hf:OWNER/REPO:FILE" (a .gguf file
 *   in the repository), fetched into the Hugging Face cache (HF_HOME, HF_ENDPOINT,
 *   HF_TOKEN) unless it is there already.
 * `options` may be NULL. On failure *out_model is NULL.
 */
lfm_status lfm_model_load(const char *path, const lfm_model_options *options,
                          lfm_model **out_model);

/* Frees a model; NULL is a no-op. Sessions opened on it stay usable. */
void lfm_model_free(lfm_model *model);

/*
 * Token ids of `text` as the model's tokenizer.json gives them (HF Tokenizer.encode),
 * with the special tokens (bos) when `add_special_tokens`. Writes the count to
 * *out_count; if it exceeds `capacity`, returns LFM_ERROR_BUFFER_TOO_SMALL and writes
 * no ids (call with capacity 0 and out_tokens NULL to learn the size).
 */
lfm_status lfm_tokenize(const lfm_model *model, const char *text, bool add_special_tokens,
                        uint32_t *out_tokens, size_t capacity, size_t *out_count);

/*
 * Opens a session on `model`: its own KV cache and conv state, allocated here once.
 * `options` may be NULL. On failure *out_session is NULL.
 */
lfm_status lfm_session_new(const lfm_model *model, const lfm_session_options *options,
                           lfm_session **out_session);

/* Frees a session; NULL is a no-op. No call may be using it. */
void lfm_session_free(lfm_session *session);

/* Forgets everything the session holds: the cache and the chat conversation. */
lfm_status lfm_session_reset(lfm_session *session);

/*
 * Writes the session to the file at `path`: its cache (KV rows, conv state), the chat
 * conversation and the last generated token, so that lfm_session_load picks it up in
 * a later process without feeding anything again.
 */
lfm_status lfm_session_save(lfm_session *session, const char *path);

/*
 * Replaces the session with one lfm_session_save wrote, for the same model (weights
 * and precision), with a context that holds its tokens. A file for another model, or
 * not a session file, is LFM_ERROR_INVALID_ARGUMENT, and the session stays as it was.
 */
lfm_status lfm_session_load(lfm_session *session, const char *path);

/*
 * Stops the call running on `session` before its next forward pass (it returns LFM_OK
 * with LFM_STOP_CANCELLED). Callable from any thread; with no call running it has no
 * effect (each call starts uncancelled).
 */
lfm_status lfm_session_cancel(const lfm_session *session);

/* Tokens the session holds, and how many its context can hold. */
lfm_status lfm_session_context(const lfm_session *session, size_t *out_used,
                               size_t *out_capacity);

/*
 * Feeds `prompt` after what the session holds, then generates up to
 * options->max_tokens tokens, streaming each to `on_token` (may be NULL).
 *
 * The prompt is tokenized as HF Tokenizer.encode (bos included) when the session is
 * empty, and without special tokens when it continues: calls on one session continue
 * one text; lfm_session_reset starts a new one. The last generated token is fed by
 * the next call (ending costs no forward pass); an end-of-sequence token is dropped.
 * A prompt of "" continues from the last generated token.
 *
 * `cancel` may be NULL, or point to an int32_t that another thread sets to non-zero
 * (an atomic store, e.g. C11 atomic_store_explicit on an _Atomic int32_t cast, or
 * std::atomic<int32_t>) to stop before the next forward pass, the prompt's included.
 * A generation that stops early (callback, cancel, context full) still returns LFM_OK;
 * `out_result` (may be NULL) says how it ended.
 */
lfm_status lfm_generate(lfm_session *session, const char *prompt,
                        const lfm_generate_options *options, lfm_token_callback on_token,
                        void *user_data, const volatile int32_t *cancel,
                        lfm_generation *out_result);

/* As lfm_generate, with the prompt given as `n_tokens` ids (fed as they are: include
 * the bos id yourself). `tokens` may be NULL when `n_tokens` is 0. */
lfm_status lfm_generate_tokens(lfm_session *session, const uint32_t *tokens, size_t n_tokens,
                               const lfm_generate_options *options,
                               lfm_token_callback on_token, void *user_data,
                               const volatile int32_t *cancel, lfm_generation *out_result);

/*
 * Adds a message ("system", "user", "assistant", "tool"...) to the session's chat
 * conversation without running the model: a system prompt, or earlier turns.
 */
lfm_status lfm_chat_add(lfm_session *session, const char *role, const char *content);

/*
 * Adds a message and streams the assistant's reply, which joins the conversation
 * however it ended. The conversation is rendered with the model's chat template
 * (tokenizer_config.json, or the GGUF file's), and the cache keeps what it holds up to
 * the first difference from the rendering: each turn feeds only what it adds. (After
 * lfm_generate on the same session, or with a template that rewrites earlier turns,
 * less is kept.) Streaming, cancel and out_result as lfm_generate.
 *
 * With tools (lfm_chat_set_tools) the conversation is rendered with them, the reply is
 * decoded under the tool choice's constraint, and it joins the conversation with its
 * call markers (special tokens of LFM2's tokenizer, which the callback's text leaves
 * out); lfm_chat_tool_calls reads its calls. Answer a call with role "tool" and the
 * result as content (wrapped in <|tool_response_start|>...<|tool_response_end|> for a
 * template without tools of its own, as LFM2's does).
 */
lfm_status lfm_chat(lfm_session *session, const char *role, const char *content,
                    const lfm_generate_options *options, lfm_token_callback on_token,
                    void *user_data, const volatile int32_t *cancel,
                    lfm_generation *out_result);

/*
 * The tools that later lfm_chat turns list, and how the model must call them; the
 * command line's `generate --chat --tools FILE --tool-choice CHOICE`, through the same
 * library code. `tools_json` is a JSON array of tools in OpenAI's shape (or of the bare
 * function objects); NULL or "[]" lists none:
 *     [{"type": "function", "function": {"name": "get_weather",
 *       "description": "The weather in a city",
 *       "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
 *                      "required": ["city"]}}}]
 * The chat template gets them as its `tools` variable; a template without one (the
 * demo model's) gets LFM2's rendering, "List of tools: <|tool_list_start|>[...]
 * <|tool_list_end|>" at the end of the system turn. `tool_choice` (NULL: "auto") is
 * - "auto": the model chooses; a call it opens (<|tool_call_start|>) is constrained to
 *   the tools' schemas until it closes it;
 * - "required": the reply is one to four calls, each of a listed tool, keyword
 *   arguments valid against its "parameters" schema;
 * - "none": the tools are listed, decoding is free;
 * - a tool's name: as "required", calls of that tool only (a tool named auto, required
 *   or none cannot be chosen by name).
 * Under "required" or a name the whole reply is calls: an options->constraint with it
 * is LFM_ERROR_INVALID_ARGUMENT at lfm_chat; under "auto" such a constraint applies to
 * the whole reply instead. Invalid JSON, a tool without a valid name, a name listed
 * twice, a choice that names no tool, "required" without tools, or parameters that do
 * not compile into a grammar are LFM_ERROR_INVALID_ARGUMENT, the message naming which;
 * the session's tools are then left as they were. The strings need only live during
 * the call. The tools stay across lfm_session_reset and lfm_session_load, and
 * lfm_session_save does not write them; lfm_generate and lfm_generate_tokens ignore them.
 */
lfm_status lfm_chat_set_tools(lfm_session *session, const char *tools_json,
                              const char *tool_choice);

/*
 * The calls in the reply of the last lfm_chat, as one JSON array: what
 * `lfm-edge generate --print-tool-calls` prints, e.g.
 *     [{"name":"get_weather","arguments":{"city":"Paris"}}]
 * "[]" when the reply made none, before any reply, after lfm_session_reset or
 * lfm_session_load, and when a call it opened does not parse (one cut off by
 * max_tokens, or one written freely under "none"). Writes the bytes the JSON takes,
 * its terminating NUL included, to *out_size; if they exceed `capacity`, returns
 * LFM_ERROR_BUFFER_TOO_SMALL and writes nothing to `out_json` (call with capacity 0
 * and out_json NULL to learn the size). The buffer is the caller's.
 */
lfm_status lfm_chat_tool_calls(const lfm_session *session, char *out_json, size_t capacity,
                               size_t *out_size);

#ifdef __cplusplus
}
#endif

#endif /* LFM_EDGE_H */
