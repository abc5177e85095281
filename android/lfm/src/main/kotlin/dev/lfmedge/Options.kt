package dev.lfmedge

/** The GPU API to run on; on Android AUTO means Vulkan, falling back to OpenGL ES. */
enum class Backend(internal val code: Int) { AUTO(0), VULKAN(1), METAL(2), DX12(3), GL(4) }

/**
 * How to load a model. Every value goes to the library as it is: a negative one is an
 * [LfmException] with code [LfmException.INVALID_ARGUMENT] naming it, never the default.
 */
data class ModelOptions(
    val backend: Backend = Backend.AUTO,
    /**
     * GPU memory for the weights and every session of this model, reserved before
     * anything is allocated; a session with contextLength 0 gets all the context the
     * budget has left. 0 = no budget.
     */
    val vramBudgetBytes: Long = 0,
    /**
     * 0: each session has a KV cache of its own. N: one pool of N tokens shared by all
     * the model's sessions, each taking blocks as it grows (a session that finds it
     * full stops with StopReason.CONTEXT_FULL).
     */
    val kvPoolTokens: Int = 0,
    /**
     * Lowers the adapter's largest storage buffer binding to this (a phone's limit, for
     * testing on a desktop): larger weights are then bound in parts. 0: the adapter's own.
     */
    val maxBindingBytes: Long = 0,
    /** Lowers the adapter's largest buffer to this: larger weights are uploaded in parts. 0: the adapter's own. */
    val maxBufferBytes: Long = 0,
)

/** How to open a session; negative values are errors, as in [ModelOptions]. */
data class SessionOptions(
    /**
     * Tokens the KV cache holds (capped at the model's max_position_embeddings); 0: the
     * shared pool's size, or all that the model's VRAM budget has left, or 4096.
     */
    val contextLength: Int = 4096,
    /** Most tokens per forward pass while feeding a prompt; 0: 128. */
    val batch: Int = 128,
)

/**
 * How to generate: penalties over the recent tokens, then temperature (0: greedy, and
 * the sampling options are unused), top-k, top-p, min-p, and a seeded draw. The library
 * checks the values when a generation starts: one out of range (a negative count, a
 * topP outside (0, 1], ...) is an [LfmException] with code [LfmException.INVALID_ARGUMENT]
 * naming the field, never the default.
 */
data class GenerateOptions(
    /** 0 feeds the prompt and generates nothing. */
    val maxTokens: Int = 256,
    /** At least 0; 0 is greedy. */
    val temperature: Float = 0f,
    /** Keep the k most likely tokens; 0: all. */
    val topK: Int = 0,
    /** In (0, 1]: keep the most likely tokens up to this probability mass. */
    val topP: Float = 1f,
    /** In [0, 1]: keep tokens at least this fraction of the most likely one's probability; 0: all. */
    val minP: Float = 0f,
    /** Above 0; above 1 discourages tokens already seen (HF's repetition_penalty); 1: none. */
    val repetitionPenalty: Float = 1f,
    /** Subtracted once from the logit of a token already seen (OpenAI's). */
    val presencePenalty: Float = 0f,
    /** Subtracted from a token's logit once per time it was seen (OpenAI's). */
    val frequencyPenalty: Float = 0f,
    /** Penalties look at the last N tokens; 0: all the session holds. */
    val penaltyWindow: Int = 0,
    /** The same seed gives the same tokens. */
    val seed: Long = 0,
    /**
     * Strings that end the generation when produced ([StopReason.STOP_STRING]); they are
     * not streamed: text that may begin one is held back until it cannot.
     */
    val stop: List<String> = emptyList(),
    /** Keep generating past end-of-sequence tokens. */
    val ignoreEos: Boolean = false,
    /**
     * What the output must be; null: anything. The tokens it forbids are masked before
     * sampling, every option above still applying, and end-of-sequence tokens are
     * allowed only where it may end. One that does not compile is an [LfmException]
     * with code [LfmException.INVALID_ARGUMENT] before any token, naming where it is wrong.
     */
    val constraint: Constraint? = null,
) {
    /** The options as the native methods read them, every value as it is. */
    internal fun toParams(): GenerateParams = GenerateParams(
        maxTokens, temperature, topK, topP, minP, repetitionPenalty, presencePenalty,
        frequencyPenalty, penaltyWindow, seed, stop.toTypedArray(), ignoreEos,
        constraint?.kind ?: GenerateParams.CONSTRAINT_NONE, constraint?.text,
    )
}

/** A constraint on the output, as lfm_edge.h's lfm_constraint_kind numbers them. */
sealed class Constraint(internal val kind: Int, internal val text: String) {
    /** A JSON value valid against this schema (llguidance's subset of JSON Schema). */
    data class JsonSchema(val schema: String) : Constraint(GenerateParams.CONSTRAINT_JSON_SCHEMA, schema)

    /** Text that this regex (Rust's syntax) matches whole. */
    data class Regex(val pattern: String) : Constraint(GenerateParams.CONSTRAINT_REGEX, pattern)

    /** A sentence of this grammar, in llguidance's Lark dialect (`%json {…}` embeds a schema). */
    data class Grammar(val lark: String) : Constraint(GenerateParams.CONSTRAINT_GRAMMAR, lark)
}

/** Tokens a session holds, and how many its context can hold. */
data class ContextUsage(val used: Int, val capacity: Int)

/**
 * How the model must use the tools of [LfmSession.setTools] (the C library's tool_choice).
 * A tool named auto, required or none cannot be chosen by name.
 */
sealed class ToolChoice(internal val text: String) {
    /** The model chooses; a call it opens is constrained to the tools' schemas until it closes it. */
    data object Auto : ToolChoice("auto")

    /** The reply is one to four calls of the tools, their arguments valid against the tools' schemas. */
    data object Required : ToolChoice("required")

    /** The tools are listed in the prompt; decoding is free. */
    data object None : ToolChoice("none")

    /** As [Required], calls of the tool named [name] only. */
    data class Function(val name: String) : ToolChoice(name)
}

/**
 * A call in a chat reply: the tool's [name] and its [arguments], a JSON object's text
 * (`{"city": "Paris", "days": 3}`) valid against the tool's parameters schema when the
 * call was constrained.
 */
data class ToolCall(val name: String, val arguments: String)
