package dev.lfmedge

import java.util.concurrent.locks.ReentrantReadWriteLock
import kotlin.concurrent.read
import kotlin.concurrent.write

/**
 * An LFM2 model loaded onto the GPU. Thread-safe: tokenize and open sessions from any
 * thread. Sessions keep the weights alive, so the model may be closed before them.
 */
class LfmModel private constructor(private var handle: Long) : AutoCloseable {
    /** Native calls read the handle; close() waits for them before freeing it. */
    private val lock = ReentrantReadWriteLock()

    companion object {
        /**
         * Loads a model onto the GPU. [path] is one of:
         * - a model folder as published on the Hugging Face hub: config.json,
         *   model.safetensors (or model.safetensors.index.json and its shards),
         *   tokenizer.json, and tokenizer_config.json for the chat template;
         * - a .gguf file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K),
         *   its quantized blocks kept as they are in GPU memory;
         * - "hf:OWNER/REPO" (a safetensors checkpoint) or "hf:OWNER/REPO:FILE" (a .gguf
         *   file of the repository), downloaded into the Hugging Face cache (HF_HOME)
         *   unless it is there already.
         * Blocks for the upload of the weights (and any download): call it off the main
         * thread. Throws [LfmException]: [LfmException.IO] for a path that cannot be read.
         */
        @JvmStatic
        @JvmOverloads
        fun load(path: String, options: ModelOptions = ModelOptions()): LfmModel =
            LfmModel(
                LfmNative.modelLoad(
                    path, options.backend.code, options.vramBudgetBytes, options.kvPoolTokens,
                    options.maxBindingBytes, options.maxBufferBytes,
                ),
            )
    }

    /** Ids as the model's tokenizer gives them (tokenizer.json or the GGUF file's; HF `Tokenizer.encode`). */
    @JvmOverloads
    fun tokenize(text: String, addSpecialTokens: Boolean = true): IntArray =
        withHandle { LfmNative.tokenize(it, text, addSpecialTokens) }

    /** A new conversation with its own KV cache, allocated here once. */
    @JvmOverloads
    fun newSession(options: SessionOptions = SessionOptions()): LfmSession =
        LfmSession(withHandle { LfmNative.sessionNew(it, options.contextLength, options.batch) })

    override fun close() {
        lock.write {
            if (handle != 0L) {
                LfmNative.modelFree(handle)
                handle = 0L
            }
        }
    }

    private fun <T> withHandle(call: (Long) -> T): T = lock.read {
        check(handle != 0L) { "the model is closed" }
        call(handle)
    }
}
