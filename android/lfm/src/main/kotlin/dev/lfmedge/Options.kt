package dev.lfmedge

/** The GPU API to run on; on Android AUTO means Vulkan, falling back to OpenGL ES. */
enum class Backend(internal val code: Int) { AUTO(0), VULKAN(1), METAL(2), DX12(3), GL(4) }

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
)

data class SessionOptions(
    /**
     * Tokens the KV cache holds (capped at the model's max_position_embeddings); 0: the
     * shared pool's size, or all that the model's VRAM budget has left, or 4096.
     */
    val contextLength: Int = 4096,
    /** Most tokens per forward pass while feeding a prompt. */
    val batch: Int = 128,
)

data class GenerateOptions(
    /** 0 feeds the prompt and generates nothing. */
    val maxTokens: Int = 256,
    /** 0 is greedy. */
    val temperature: Float = 0f,
    /** The same seed gives the same tokens. */
    val seed: Long = 0,
    /** Keep generating past end-of-sequence tokens. */
    val ignoreEos: Boolean = false,
)

/** Tokens a session holds, and how many its context can hold. */
data class ContextUsage(val used: Int, val capacity: Int)
