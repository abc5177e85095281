package dev.lfmedge

import java.util.concurrent.locks.ReentrantLock
import kotlin.concurrent.withLock
import kotlinx.coroutines.CancellationException
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.channels.ProducerScope
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.job
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking

/**
 * A conversation with a model: its KV cache, and the chat turns so far. Calls take
 * turns (a second one waits for the first); [cancel] and [close] may come from any
 * thread. Generation streams either as a cold [Flow] of text pieces (collecting runs
 * the generation on [Dispatchers.IO]; cancelling the collector stops it before the
 * next forward pass) or, blocking, into a [TokenCallback]. Failures are [LfmException]s,
 * thrown by the blocking calls and by the Flow's collect; [GenerateOptions] are checked
 * when a generation starts.
 */
class LfmSession internal constructor(private var handle: Long) : AutoCloseable {
    /** Held by every native call but [cancel]; close() waits for the running call. */
    private val callLock = ReentrantLock()

    /** Guards the handle for [cancel], which runs beside a call, and [streaming]. */
    private val handleLock = Any()

    /** The worker of the Flow whose native generation is running, if one is. */
    private var streaming: Job? = null

    /**
     * Continues the session with [prompt] (tokenized with bos when the session is
     * empty; "" continues from the last generated token) and streams the continuation.
     */
    @JvmOverloads
    fun generate(prompt: String, options: GenerateOptions = GenerateOptions()): Flow<String> =
        stream { session, callback -> LfmNative.generate(session, prompt, options.toParams(), callback) }

    /** As [generate], blocking, streaming into [callback]. */
    fun generate(prompt: String, options: GenerateOptions, callback: TokenCallback): StopReason =
        StopReason.of(call { LfmNative.generate(it, prompt, options.toParams(), callback) })

    /** Continues the session with token ids, fed as they are (include bos yourself). */
    fun generateTokens(tokens: IntArray, options: GenerateOptions, callback: TokenCallback): StopReason =
        StopReason.of(call { LfmNative.generateTokens(it, tokens, options.toParams(), callback) })

    /**
     * Adds [content] as a [role] turn and streams the assistant's reply, rendered with the
     * model's chat template; each turn feeds only what it adds to the cache.
     */
    @JvmOverloads
    fun chat(
        content: String,
        role: String = "user",
        options: GenerateOptions = GenerateOptions(),
    ): Flow<String> =
        stream { session, callback -> LfmNative.chat(session, role, content, options.toParams(), callback) }

    /** As [chat], blocking, streaming into [callback]. */
    fun chat(content: String, role: String, options: GenerateOptions, callback: TokenCallback): StopReason =
        StopReason.of(call { LfmNative.chat(it, role, content, options.toParams(), callback) })

    /** Adds a turn (a system prompt, earlier turns) without running the model. */
    fun addMessage(role: String, content: String) = call { LfmNative.chatAdd(it, role, content) }

    /**
     * Lists [tools] in the chat turns from now on, a JSON array in OpenAI's shape
     * (`[{"type": "function", "function": {"name", "description", "parameters"}}]`; null
     * or `[]`: none), rendered by the model's chat template; [choice] says how the model
     * must call them, and [GenerateOptions.constraint] must be null under [ToolChoice.Required]
     * or [ToolChoice.Function]. Read a reply's calls from [toolCalls] and answer each with
     * [chat] (or [addMessage]) in the role "tool". Invalid JSON, a tool without a name or
     * a choice naming no tool is an [LfmException] with code [LfmException.INVALID_ARGUMENT],
     * the tools staying as they were. The tools stay across [reset] and [load]; [save]
     * does not write them.
     */
    @JvmOverloads
    fun setTools(tools: String?, choice: ToolChoice = ToolChoice.Auto) =
        call { LfmNative.chatSetTools(it, tools, choice.text) }

    /**
     * The calls in the last chat reply, in order; empty when it made none, or when a call
     * it opened does not parse (cut off by [GenerateOptions.maxTokens], or written freely
     * under [ToolChoice.None]).
     */
    val toolCalls: List<ToolCall>
        get() = call {
            LfmNative.chatToolCalls(it).toList().chunked(2) { (name, arguments) -> ToolCall(name, arguments) }
        }

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

    /**
     * Runs a blocking generation on an IO thread, its pieces sent down a Flow. When the
     * collector goes away, the Flow's scope cancels the worker: a piece waiting for room
     * in the buffer is dropped, the callback returns false, and the native generation is
     * cancelled (only it: a later call on the session is left alone).
     */
    private fun stream(native: (Long, TokenCallback) -> Int): Flow<String> = callbackFlow {
        val worker = launch(Dispatchers.IO) {
            val self = coroutineContext.job
            val callback = TokenCallback { text, _ -> text.isEmpty() || deliver(text, self) }
            try {
                call { session ->
                    synchronized(handleLock) { streaming = self }
                    try {
                        native(session, callback)
                    } finally {
                        synchronized(handleLock) { streaming = null }
                    }
                }
                close()
            } catch (e: Throwable) {
                close(e)
            }
        }
        awaitClose {
            synchronized(handleLock) {
                if (streaming === worker && handle != 0L) LfmNative.sessionCancel(handle)
            }
        }
    }

    /**
     * Sends [text] down the Flow, waiting while its buffer is full; false once the
     * collector is gone. The wait is a child of [worker], so that cancelling the worker
     * ends it (the channel itself is closed only when the worker completes).
     */
    private fun ProducerScope<String>.deliver(text: String, worker: Job): Boolean {
        if (!worker.isActive) return false
        val sent = trySend(text)
        if (sent.isSuccess || sent.isClosed) return sent.isSuccess
        return try {
            runBlocking(worker) { runCatching { send(text) }.isSuccess }
        } catch (e: CancellationException) {
            false
        }
    }
}
