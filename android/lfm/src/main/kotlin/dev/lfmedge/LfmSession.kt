package dev.lfmedge

import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.channels.trySendBlocking
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.launch

/**
 * A conversation with a model: its KV cache, and the chat turns so far. Calls take
 * turns (a second one waits for the first); [cancel] and [close] may come from any
 * thread. Generation streams either as a cold [Flow] of text pieces (collecting runs
 * the generation on [Dispatchers.IO]; cancelling the collector stops it before the
 * next forward pass) or, blocking, into a [TokenCallback].
 */
class LfmSession internal constructor(private var handle: Long) : AutoCloseable {
    /** Held by every native call but [cancel]; close() waits for the running call. */
    private val callLock = ReentrantLock()

    /** Guards the handle for [cancel], which runs beside a call. */
    private val handleLock = Any()

    /**
     * Continues the session with [prompt] (tokenized with bos when the session is
     * empty) and streams the continuation.
     */
    @JvmOverloads
    fun generate(prompt: String, options: GenerateOptions = GenerateOptions()): Flow<String> =
        stream { callback -> generate(prompt, options, callback) }

    /** As [generate], blocking, streaming into [callback]. */
    fun generate(prompt: String, options: GenerateOptions, callback: TokenCallback): StopReason =
        StopReason.of(
            call {
                LfmNative.generate(
                    it, prompt, options.maxTokens, options.temperature, options.seed,
                    options.ignoreEos, callback,
                )
            },
        )

    /** Continues the session with token ids, fed as they are (include bos yourself). */
    fun generateTokens(tokens: IntArray, options: GenerateOptions, callback: TokenCallback): StopReason =
        StopReason.of(
            call {
                LfmNative.generateTokens(
                    it, tokens, options.maxTokens, options.temperature, options.seed,
                    options.ignoreEos, callback,
                )
            },
        )

    /**
     * Adds [content] as a [role] turn and streams the assistant's reply, rendered with the
     * model's chat template; each turn feeds only what it adds to the cache.
     */
    @JvmOverloads
    fun chat(
        content: String,
        role: String = "user",
        options: GenerateOptions = GenerateOptions(),
    ): Flow<String> = stream { callback -> chat(content, role, options, callback) }

    /** As [chat], blocking, streaming into [callback]. */
    fun chat(content: String, role: String, options: GenerateOptions, callback: TokenCallback): StopReason =
        StopReason.of(
            call {
                LfmNative.chat(
                    it, role, content, options.maxTokens, options.temperature, options.seed,
                    options.ignoreEos, callback,
                )
            },
        )

    /** Adds a turn (a system prompt, earlier turns) without running the model. */
    fun addMessage(role: String, content: String) = call { LfmNative.chatAdd(it, role, content) }

    /** Forgets the cache and the conversation. */
    fun reset() = call { LfmNative.sessionReset(it) }

    /**
     * Writes the session (its cache, the conversation) to [path], e.g. before the app
     * goes to the background; [load] picks it up in a later process with nothing fed again.
     */
    fun save(path: String) = call { LfmNative.sessionSave(it, path) }

    /** Replaces this session with one [save] wrote for the same model. */
    fun load(path: String) = call { LfmNative.sessionLoad(it, path) }

    val context: ContextUsage
        get() = call {
            val (used, capacity) = LfmNative.sessionContext(it)
            ContextUsage(used, capacity)
        }

    /** Stops the running generation before its next forward pass ([StopReason.CANCELLED]). */
    fun cancel() {
        synchronized(handleLock) {
            if (handle != 0L) LfmNative.sessionCancel(handle)
        }
    }

    override fun close() {
        cancel()
        callLock.withLock {
            synchronized(handleLock) {
                if (handle != 0L) {
                    LfmNative.sessionFree(handle)
                    handle = 0L
                }
            }
        }
    }

    private fun live(): Long = synchronized(handleLock) {
        check(handle != 0L) { "the session is closed" }
        handle
    }

    private fun <T> call(native: (Long) -> T): T = callLock.withLock { native(live()) }

    /** Runs a blocking generation on an IO thread, its pieces sent down a Flow. */
    private fun stream(generation: (TokenCallback) -> StopReason): Flow<String> = callbackFlow {
        val worker = launch(Dispatchers.IO) {
            try {
                generation(TokenCallback { text, _ -> text.isEmpty() || trySendBlocking(text).isSuccess })
                close()
            } catch (e: Throwable) {
                close(e)
            }
        }
        awaitClose { if (worker.isActive) this@LfmSession.cancel() }
    }
}
