package dev.lfmedge.app

import dev.lfmedge.Constraint
import dev.lfmedge.GenerateOptions
import dev.lfmedge.LfmException
import dev.lfmedge.LfmModel
import dev.lfmedge.LfmSession
import dev.lfmedge.ModelOptions
import dev.lfmedge.SessionOptions
import dev.lfmedge.ToolChoice
import java.io.File
import kotlin.concurrent.thread
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.awaitCancellation
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.runBlocking

/*
 * The Kotlin API as an app uses it (a package of its own: public API only), on the host
 * JVM against the Linux build of the library: Flows streaming a generation and a chat,
 * cancelled by their collectors, a session saved and restored, and errors. Prints
 * "name: value" lines that ffi/tests/kotlin.rs compares with the fixtures' references.
 *
 * java -Djava.library.path=DIR dev.lfmedge.app.KotlinCheckKt GGUF_FILE PROMPT_TEXT MODEL_DIR
 *     DEMO_MODEL_DIR TOOLS_JSON
 */

/** Greedy, past end-of-sequence tokens, as the references were made. */
private fun greedy(maxTokens: Int) = GenerateOptions(maxTokens = maxTokens, ignoreEos = true)

private fun hex(text: String) = text.toByteArray(Charsets.UTF_8).joinToString("") { "%02x".format(it) }

private suspend fun Flow<String>.text() = toList().joinToString("")

/** The code and message of the [LfmException] that [call] throws, or "no error". */
private suspend fun failure(call: suspend () -> Unit): String =
    try {
        call()
        "no error"
    } catch (e: LfmException) {
        "${e.code} ${e.message}"
    }

/** Generates with a blocking callback: the ids (-1 for held-back text left out), the text, the stop reason. */
private fun blocking(session: LfmSession, prompt: String, options: GenerateOptions): Triple<List<Int>, String, String> {
    val ids = mutableListOf<Int>()
    val text = StringBuilder()
    val stop = session.generate(prompt, options) { piece, id ->
        if (id >= 0) ids += id
        text.append(piece)
        true
    }
    return Triple(ids, text.toString(), stop.name)
}

fun main(args: Array<String>) {
    val (gguf, prompt, folder, demo, tools) = args
    // A hang (a Flow that never completes, a call that never returns) fails with every
    // thread's stack rather than holding the test forever.
    thread(isDaemon = true, name = "watchdog") {
        Thread.sleep(5 * 60 * 1000L)
        System.err.println("timed out after 5 minutes")
        Thread.getAllStackTraces().forEach { (thread, stack) ->
            System.err.println("\"${thread.name}\"")
            stack.forEach { System.err.println("    at $it") }
        }
        Runtime.getRuntime().halt(1)
    }
    runBlocking {
        check(gguf, prompt, folder)
        checkTools(demo, tools)
        println("done")
    }
}

/**
 * Tools on the demo model: calls under [ToolChoice.Required] through a Flow and under
 * [ToolChoice.Function] through the blocking call, printed "tool-call N: NAME ARGUMENTS"
 * and "named-call N: ...", errors, and a tool result that continues the chat.
 */
private suspend fun checkTools(demo: String, tools: String) {
    LfmModel.load(demo).use { model ->
        model.newSession().use { session ->
            session.setTools(tools, ToolChoice.Required)
            session.chat("Will it rain in Paris this week?", options = GenerateOptions(maxTokens = 300)).text()
            session.toolCalls.forEachIndexed { i, call -> println("tool-call $i: ${call.name} ${call.arguments}") }
            println("bad-tools: " + failure { session.setTools("[{") })
            println("unknown-tool-choice: " + failure { session.setTools(tools, ToolChoice.Function("get_time")) })

            session.setTools(tools)
            val held = session.context.used
            session.chat("""{"rain": true}""", role = "tool", options = greedy(6)).text()
            println("tool-result: $held -> ${session.context.used}")

            session.reset()
            println("calls-after-reset: ${session.toolCalls.size}")
            session.setTools(tools, ToolChoice.Function("get_weather"))
            val stop = session.chat("Rain in Oslo?", "user", GenerateOptions(maxTokens = 300)) { _, _ -> true }
            println("named-stop: $stop")
            session.toolCalls.forEachIndexed { i, call -> println("named-call $i: ${call.name} ${call.arguments}") }
        }
    }
}

private suspend fun check(gguf: String, prompt: String, folder: String) = coroutineScope {
    LfmModel.load(gguf).use { model ->
        println("tokenize: " + model.tokenize(prompt).joinToString(","))
        model.newSession().use { session ->
            val streamed = session.generate(prompt, greedy(24)).text()
            println("flow-greedy-utf8: " + hex(streamed))
            println("flow-context: " + session.context.used)

            session.reset()
            val (ids, text, stop) = blocking(session, prompt, greedy(24))
            println("greedy: " + ids.joinToString(","))
            println("greedy-stop: $stop")
            println("blocking-equals-flow: " + (text == streamed))

            // The collector takes two pieces and goes: the native generation stops
            // (take returns once it has) long before its 1000 tokens.
            session.reset()
            val two = session.generate(prompt, greedy(1000)).take(2).toList()
            println("take-2: ${two.size} pieces, context ${session.context.used}")
            val more = session.generate("", greedy(4)).text()
            println("continues-after-take: " + more.isNotEmpty())

            // The collecting coroutine is cancelled while the generation runs.
            session.reset()
            val first = CompletableDeferred<Unit>()
            val job = launch(Dispatchers.Default) {
                session.generate(prompt, greedy(1000)).collect {
                    first.complete(Unit)
                    awaitCancellation()
                }
            }
            first.await()
            job.cancelAndJoin()
            println("job-cancelled: ${job.isCancelled}, context ${session.context.used}")
            // The same with no buffer: the worker waits to hand over the second piece
            // when its coroutine is cancelled.
            session.reset()
            val handedOver = CompletableDeferred<Unit>()
            val unbuffered = launch(Dispatchers.Default) {
                session.generate(prompt, greedy(1000)).buffer(0).collect {
                    handedOver.complete(Unit)
                    awaitCancellation()
                }
            }
            handedOver.await()
            delay(300)
            unbuffered.cancelAndJoin()
            println("unbuffered-cancelled: ${unbuffered.isCancelled}, context ${session.context.used}")
            session.reset()
            println("same-after-cancel: " + (session.generate(prompt, greedy(24)).text() == streamed))

            // A stop string ends the generation and is not streamed.
            val stopAt = streamed.substring(0, streamed.offsetByCodePoints(0, 2))
            val withStop = greedy(24).copy(stop = listOf(stopAt))
            session.reset()
            val untilStop = session.generate(prompt, withStop).text()
            session.reset()
            val (_, _, stopReason) = blocking(session, prompt, withStop)
            println("stop-string: $stopReason " + untilStop.contains(stopAt))

            // Bad values reach the library as they are and come back as errors.
            println("negative-max-tokens: " + failure { session.generate(prompt, GenerateOptions(maxTokens = -1)).text() })
            println("negative-top-k: " + failure { session.chat("Hi", options = GenerateOptions(topK = -1)).text() })
            println("negative-penalty-window: " + failure { blocking(session, prompt, GenerateOptions(penaltyWindow = -1)) })
            val badSchema = Constraint.JsonSchema("""{"type": "object", "properties": {"n": {"type": "intger"}}}""")
            println("bad-schema: " + failure { session.generate(prompt, GenerateOptions(maxTokens = 4, constraint = badSchema)).text() })
            println("usable-after-errors: " + (session.generate("", greedy(2)).text().isNotEmpty()))

            // A regex constraint shapes the whole output and ends it where it may end.
            session.reset()
            val shaped = GenerateOptions(maxTokens = 16, constraint = Constraint.Regex("[a-z]{3}-[0-9]{2}"))
            val (_, shapedText, shapedStop) = blocking(session, prompt, shaped)
            println("regex-constraint: $shapedStop $shapedText")
        }

        // A chat through Flows, and the same through the blocking calls.
        val chats = listOf(true, false).map { flow ->
            model.newSession().use { session ->
                session.addMessage("system", "Be brief.")
                val replies = listOf("Hi", "More").map { turn ->
                    if (flow) {
                        session.chat(turn, options = greedy(4)).text()
                    } else {
                        val text = StringBuilder()
                        session.chat(turn, "user", greedy(4)) { piece, _ -> text.append(piece); true }
                        text.toString()
                    }
                }
                replies.joinToString(" ") { hex(it) } + ", context ${session.context.used}"
            }
        }
        println("chat-flow: " + chats[0])
        println("chat-blocking: " + chats[1])

        // Saved halfway, restored into a new session, which goes on as the first does.
        val file = File.createTempFile("lfm-session", ".bin")
        try {
            model.newSession().use { saved ->
                val head = saved.generate(prompt, greedy(12)).text()
                saved.save(file.path)
                val tail = saved.generate("", greedy(12)).text()
                model.newSession().use { restored ->
                    restored.load(file.path)
                    val restoredTail = restored.generate("", greedy(12)).text()
                    println("restored: " + (restoredTail == tail) + " " + hex(head + tail))
                }
            }
        } finally {
            file.delete()
        }

        println("negative-context: " + failure { model.newSession(SessionOptions(contextLength = -1)).close() })
    }

    suspend fun load(options: ModelOptions) = failure { LfmModel.load(gguf, options).close() }
    println("missing-model: " + failure { LfmModel.load("/nonexistent/model").close() })
    println("negative-budget: " + load(ModelOptions(vramBudgetBytes = -1)))
    println("negative-pool: " + load(ModelOptions(kvPoolTokens = -1)))
    println("negative-binding: " + load(ModelOptions(maxBindingBytes = -1)))

    // A model folder (safetensors) through the same API.
    LfmModel.load(folder).use { model ->
        model.newSession().use { session ->
            println("folder-greedy: " + blocking(session, prompt, greedy(24)).first.joinToString(","))
        }
    }
}
