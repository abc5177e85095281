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
         * Loads a model directory as published on the Hugging Face hub (config.json,
         * model.safetensors, tokenizer.json, tokenizer_config.json). Blocks for the
         * upload of the weights: call it off the main thread.
         */
        @JvmStatic
        @JvmOverloads
        fun load(path: String, options: ModelOptions = ModelOptions()): LfmModel =
            LfmModel(LfmNative.modelLoad(
                path, options.backend.code, options.vramBudgetBytes, options.kvPoolTokens
            ))
    }

    /** Ids as the model's tokenizer.json gives them (HF `Tokenizer.encode`). */
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
