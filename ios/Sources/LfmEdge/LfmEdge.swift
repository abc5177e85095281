// A thin Swift API over lfm_edge.h: everything it does happens in the C ABI, which
// ffi/tests exercises on Linux; this file only adapts types, errors and streaming.
import Foundation
import LfmEdgeFFI

/// A failure in the native library: its `lfm_status` and message.
public struct LfmError: Error, CustomStringConvertible, Sendable {
    public let status: UInt32
    public let message: String
    public var description: String { message }
}

/// Throws for anything but LFM_OK; must run on the thread of the failing call (the
/// message is per thread).
private func check(_ status: lfm_status) throws {
    guard status == LFM_OK else {
        throw LfmError(status: status.rawValue, message: String(cString: lfm_last_error_message()))
    }
}

/// A count for the C library: a negative one is an error naming it (as in the Kotlin
/// and JNI layers), never "the default".
private func count(_ value: Int, _ name: String) throws -> UInt32 {
    guard let count = UInt32(exactly: value) else {
        let why = value < 0 ? "is negative" : "is too large"
        throw LfmError(status: LFM_ERROR_INVALID_ARGUMENT.rawValue, message: "\(name) \(value) \(why)")
    }
    return count
}

/// The GPU API to run on; on iOS `.auto` is Metal.
public enum Backend: Int32, Sendable {
    case auto = 0, vulkan, metal, dx12, gl
}

/// What the output must be (the C library's `lfm_constraint_kind` and its text).
public enum Constraint: Sendable, Equatable {
    /// A JSON value valid against this schema (llguidance's subset of JSON Schema).
    case jsonSchema(String)
    /// Text that this regex (Rust's syntax) matches whole.
    case regex(String)
    /// A sentence of this grammar, in llguidance's Lark dialect (`%json {…}` embeds a schema).
    case grammar(String)

    var native: (kind: lfm_constraint_kind, text: String) {
        switch self {
        case .jsonSchema(let text): return (LFM_CONSTRAINT_JSON_SCHEMA, text)
        case .regex(let text): return (LFM_CONSTRAINT_REGEX, text)
        case .grammar(let text): return (LFM_CONSTRAINT_LARK, text)
        }
    }
}

/// How the model must use the tools of `LfmSession.setTools` (the C library's
/// `tool_choice`). A tool named auto, required or none cannot be chosen by name.
public enum ToolChoice: Sendable, Equatable {
    /// The model chooses; a call it opens is constrained to the tools' schemas until it closes it.
    case auto
    /// The reply is one to four calls of the tools, their arguments valid against the tools' schemas.
    case required
    /// The tools are listed in the prompt; decoding is free.
    case none
    /// As `.required`, calls of the tool with this name only.
    case function(String)

    var native: String {
        switch self {
        case .auto: return "auto"
        case .required: return "required"
        case .none: return "none"
        case .function(let name): return name
        }
    }
}

/// A call in a chat reply: the tool's name and its arguments, a JSON object's text
/// (`{"city":"Paris","days":3}`), valid against the tool's parameters schema when the
/// call was constrained.
public struct ToolCall: Sendable, Equatable {
    public let name: String
    public let arguments: String

    /// The calls in the JSON array `lfm_chat_tool_calls` writes, `[{"name": …, "arguments": {…}}]`.
    static func calls(in json: String) throws -> [ToolCall] {
        let unreadable = LfmError(
            status: LFM_ERROR_INTERNAL.rawValue, message: "tool calls the library wrote do not read as JSON: \(json)")
        guard let calls = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] else {
            throw unreadable
        }
        return try calls.map { call in
            guard let name = call["name"] as? String, let arguments = call["arguments"] as? [String: Any] else {
                throw unreadable
            }
            let text = try JSONSerialization.data(withJSONObject: arguments, options: [.sortedKeys])
            return ToolCall(name: name, arguments: String(decoding: text, as: UTF8.self))
        }
    }
}

/// How to generate: the C library's `lfm_generate_options`, with its defaults. Sampling
/// applies the penalties over the recent tokens, then temperature (0: greedy, and the
/// rest is skipped), top-k, top-p, min-p, and a seeded draw. Values out of range throw
/// an `LfmError` naming the field when the generation starts.
public struct GenerateOptions: Sendable {
    /// 0 feeds the prompt and generates nothing.
    public var maxTokens: Int
    /// >= 0; 0 is greedy.
    public var temperature: Float
    /// Keep the k most likely tokens; 0 = all.
    public var topK: Int
    /// In (0, 1]: keep the most likely tokens up to this probability mass.
    public var topP: Float
    /// In [0, 1]: keep tokens at least this fraction of the most likely one's probability.
    public var minP: Float
    /// > 0; 1 = none; above 1 discourages tokens seen (HF's).
    public var repetitionPenalty: Float
    /// Subtracted once from a seen token's logit (OpenAI's).
    public var presencePenalty: Float
    /// Subtracted once per time a token was seen (OpenAI's).
    public var frequencyPenalty: Float
    /// The penalties look at the last N tokens; 0 = all the session holds.
    public var penaltyWindow: Int
    /// The same seed gives the same tokens.
    public var seed: UInt64
    /// Texts that end the generation when produced; they are not streamed (text that may
    /// begin one is held back until it cannot).
    public var stop: [String]
    /// Keep generating past end-of-sequence tokens.
    public var ignoreEos: Bool
    /// What the output must be; nil: anything. The tokens it forbids are masked before
    /// sampling, every option above still applying, and end-of-sequence tokens are
    /// allowed only where it may end. One that does not compile throws an `LfmError`
    /// (`LFM_ERROR_INVALID_ARGUMENT`) before any token, naming where it is wrong.
    public var constraint: Constraint?

    /// Each option left nil takes the library's default.
    public init(
        maxTokens: Int? = nil, temperature: Float? = nil, topK: Int? = nil, topP: Float? = nil,
        minP: Float? = nil, repetitionPenalty: Float? = nil, presencePenalty: Float? = nil,
        frequencyPenalty: Float? = nil, penaltyWindow: Int? = nil, seed: UInt64? = nil,
        stop: [String] = [], ignoreEos: Bool? = nil, constraint: Constraint? = nil
    ) {
        let defaults = lfm_generate_options_default()
        self.maxTokens = maxTokens ?? Int(defaults.max_tokens)
        self.temperature = temperature ?? defaults.temperature
        self.topK = topK ?? Int(defaults.top_k)
        self.topP = topP ?? defaults.top_p
        self.minP = minP ?? defaults.min_p
        self.repetitionPenalty = repetitionPenalty ?? defaults.repetition_penalty
        self.presencePenalty = presencePenalty ?? defaults.presence_penalty
        self.frequencyPenalty = frequencyPenalty ?? defaults.frequency_penalty
        self.penaltyWindow = penaltyWindow ?? Int(defaults.penalty_window)
        self.seed = seed ?? defaults.seed
        self.stop = stop
        self.ignoreEos = ignoreEos ?? defaults.ignore_eos
        self.constraint = constraint
    }

    /// Calls `body` with the C options (from `lfm_generate_options_default`, so that
    /// `struct_size` is set) and the stop strings and the constraint as C strings, alive
    /// during the call.
    func withNative<R>(_ body: (UnsafePointer<lfm_generate_options>) -> R) throws -> R {
        var options = lfm_generate_options_default()
        options.max_tokens = try count(maxTokens, "maxTokens")
        options.temperature = temperature
        options.top_k = try count(topK, "topK")
        options.top_p = topP
        options.min_p = minP
        options.repetition_penalty = repetitionPenalty
        options.presence_penalty = presencePenalty
        options.frequency_penalty = frequencyPenalty
        options.penalty_window = try count(penaltyWindow, "penaltyWindow")
        options.seed = seed
        options.ignore_eos = ignoreEos
        let strings = stop.map { strdup($0) }
        defer { strings.forEach { free($0) } }
        let constraintText = constraint.flatMap { strdup($0.native.text) }
        defer { if let constraintText { free(constraintText) } }
        options.constraint_kind = UInt64((constraint?.native.kind ?? LFM_CONSTRAINT_NONE).rawValue)
        options.constraint = constraintText.map { UnsafePointer<CChar>($0) }
        let pointers = strings.map { UnsafePointer<CChar>($0) }
        return pointers.withUnsafeBufferPointer { pointers in
            options.stop_strings = pointers.isEmpty ? nil : pointers.baseAddress
            options.n_stop_strings = pointers.count
            return body(&options)
        }
    }
}

/// Why a generation ended (`lfm_stop_reason`).
public enum StopReason: Int32, Sendable {
    case maxTokens = 0
    /// The model produced an end-of-sequence token.
    case endOfSequence = 1
    /// The consumer stopped listening.
    case callback = 2
    /// `cancel()`, or the consuming task was cancelled.
    case cancelled = 3
    /// The session's context, or the model's shared KV pool, has no room for another token.
    case contextFull = 4
    /// One of the options' stop strings was produced (it is not streamed).
    case stopString = 5
}

/// How a generating call ended.
public struct Generation: Sendable, Equatable {
    public let promptTokens: Int
    public let generatedTokens: Int
    /// nil for a reason this version does not know.
    public let stopReason: StopReason?
}

/// One streamed token and the text it completes. The text is empty when the token ends
/// inside a UTF-8 character, or may begin a stop string: it comes with a later token.
public struct Token: Sendable, Equatable {
    /// nil for held-back text let go at the end (a stop string that never completed).
    public let id: UInt32?
    public let text: String
}

/// An LFM2 model on the GPU. Thread-safe; sessions keep its weights alive.
public final class LfmModel: @unchecked Sendable {
    let handle: OpaquePointer

    /// Loads a model: a Hugging Face model folder (config.json, model.safetensors or its
    /// shards, tokenizer.json, tokenizer_config.json), or a .gguf file. Blocks while the
    /// weights upload: call it off the main actor.
    /// `vramBudgetBytes`: 0, or the bytes the weights and every session stay within.
    /// `maxBindingBytes`, `maxBufferBytes`: 0 (the adapter's limits), or lower ones.
    /// `kvPoolTokens`: 0 (a KV cache per session), or one pool of that many tokens
    /// shared by all the model's sessions.
    public init(
        path: String, backend: Backend = .auto, vramBudgetBytes: UInt64 = 0,
        maxBindingBytes: UInt64 = 0, maxBufferBytes: UInt64 = 0, kvPoolTokens: UInt32 = 0
    ) throws {
        var options = lfm_model_options_default()
        options.backend = backend.rawValue
        options.vram_budget_bytes = vramBudgetBytes
        options.max_binding_bytes = maxBindingBytes
        options.max_buffer_bytes = maxBufferBytes
        options.kv_pool_tokens = kvPoolTokens
        var model: OpaquePointer?
        try check(lfm_model_load(path, &options, &model))
        handle = model!
    }

    deinit { lfm_model_free(handle) }

    /// Ids as the model's tokenizer.json gives them (HF `Tokenizer.encode`).
    public func tokenize(_ text: String, addSpecialTokens: Bool = true) throws -> [UInt32] {
        var count = 0
        let sizing = lfm_tokenize(handle, text, addSpecialTokens, nil, 0, &count)
        if sizing != LFM_ERROR_BUFFER_TOO_SMALL { try check(sizing) }
        var ids = [UInt32](repeating: 0, count: count)
        let capacity = count
        try check(lfm_tokenize(handle, text, addSpecialTokens, &ids, capacity, &count))
        return ids
    }

    /// A new conversation (0 = the defaults: 4096 tokens, or the shared pool's size, or
    /// all that the model's VRAM budget has left; batch 128).
    public func makeSession(contextLength: Int = 0, batch: Int = 0) throws -> LfmSession {
        var options = lfm_session_options_default()
        options.context_length = try count(contextLength, "contextLength")
        options.batch = try count(batch, "batch")
        var session: OpaquePointer?
        try check(lfm_session_new(handle, &options, &session))
        return LfmSession(handle: session!)
    }
}

/// A conversation. Its calls run one after another, in the order they were made: one
/// made while another runs (a stream still finishing after its consumer left, say)
/// waits for it, and the synchronous ones block meanwhile: keep them off the main actor
/// while a generation may run. `cancel()` from anywhere.
public final class LfmSession: @unchecked Sendable {
    let handle: OpaquePointer
    /// Runs every call on the session, in order.
    private let queue = DispatchQueue(label: "lfm-edge.session")
    /// Written on `queue` only.
    private var last: Generation?

    init(handle: OpaquePointer) { self.handle = handle }

    deinit { lfm_session_free(handle) }

    /// Continues the session with `prompt` (tokenized with bos when the session is
    /// empty), streaming the text. Stop listening (leave the `for try await` loop, or
    /// cancel its task) and the generation stops before its next forward pass.
    public func generate(_ prompt: String, options: GenerateOptions = .init()) -> AsyncThrowingStream<String, Error> {
        texts(generateTokens(prompt, options: options))
    }

    /// `generate`, streaming each token with its id.
    public func generateTokens(_ prompt: String, options: GenerateOptions = .init()) -> AsyncThrowingStream<Token, Error> {
        stream(options) { session, options, callback, user, cancel, result in
            lfm_generate(session, prompt, options, callback, user, cancel, result)
        }
    }

    /// Adds `content` as a `role` turn and streams the assistant's reply (the model's chat
    /// template; each turn feeds only what it adds to the cache).
    public func chat(_ content: String, role: String = "user", options: GenerateOptions = .init()) -> AsyncThrowingStream<String, Error> {
        texts(chatTokens(content, role: role, options: options))
    }

    /// `chat`, streaming each token with its id.
    public func chatTokens(_ content: String, role: String = "user", options: GenerateOptions = .init()) -> AsyncThrowingStream<Token, Error> {
        stream(options) { session, options, callback, user, cancel, result in
            lfm_chat(session, role, content, options, callback, user, cancel, result)
        }
    }

    /// How the last generating call that finished ended; waits for a running one.
    public var lastGeneration: Generation? { queue.sync { last } }

    /// Adds a turn (a system prompt, earlier turns) without running the model.
    public func addMessage(role: String, content: String) throws {
        try queue.sync { try check(lfm_chat_add(handle, role, content)) }
    }

    /// Lists `tools` in the chat turns from now on, a JSON array in OpenAI's shape
    /// (`[{"type": "function", "function": {"name", "description", "parameters"}}]`; nil or
    /// `[]`: none), rendered by the model's chat template; `choice` says how the model must
    /// call them, and `GenerateOptions.constraint` must be nil under `.required` or
    /// `.function`. Read a reply's calls with `toolCalls()` and answer each with `chat`
    /// (or `addMessage`) in the role "tool". Invalid JSON, a tool without a name or a
    /// choice naming no tool throws `LfmError` (`LFM_ERROR_INVALID_ARGUMENT`), the tools
    /// staying as they were. They stay across `reset()` and `load(from:)`; `save(to:)`
    /// does not write them.
    public func setTools(_ tools: String?, choice: ToolChoice = .auto) throws {
        try queue.sync { try check(lfm_chat_set_tools(handle, tools, choice.native)) }
    }

    /// The calls in the last chat reply, in order (waits for a running call); empty when
    /// it made none, or when a call it opened does not parse (cut off by `maxTokens`, or
    /// written freely under `.none`).
    public func toolCalls() throws -> [ToolCall] {
        let json: String = try queue.sync {
            var size = 0
            let sizing = lfm_chat_tool_calls(handle, nil, 0, &size)
            if sizing != LFM_ERROR_BUFFER_TOO_SMALL { try check(sizing) }
            var buffer = [CChar](repeating: 0, count: size)
            try check(lfm_chat_tool_calls(handle, &buffer, size, &size))
            return String(decoding: buffer.prefix(size - 1).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return try ToolCall.calls(in: json)
    }

    /// Forgets the cache and the conversation.
    public func reset() throws { try queue.sync { try check(lfm_session_reset(handle)) } }

    /// Writes the session (its cache, the conversation) to a file, e.g. when the app
    /// moves to the background; `load(from:)` picks it up in a later process.
    public func save(to path: String) throws {
        try queue.sync { try check(lfm_session_save(handle, path)) }
    }

    /// Replaces this session with one `save(to:)` wrote for the same model.
    public func load(from path: String) throws {
        try queue.sync { try check(lfm_session_load(handle, path)) }
    }

    /// Stops the running generation before its next forward pass.
    public func cancel() { _ = lfm_session_cancel(handle) }

    /// Tokens held, and how many the context can hold.
    public func context() throws -> (used: Int, capacity: Int) {
        try queue.sync {
            var used = 0, capacity = 0
            try check(lfm_session_context(handle, &used, &capacity))
            return (used, capacity)
        }
    }

    /// The non-empty texts of `tokens`.
    private func texts(_ tokens: AsyncThrowingStream<Token, Error>) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    for try await token in tokens where !token.text.isEmpty {
                        if case .terminated = continuation.yield(token.text) { break }
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Where the C callback sends tokens, and the flag that stops the call.
    private final class Sink: @unchecked Sendable {
        let continuation: AsyncThrowingStream<Token, Error>.Continuation
        /// Read by the library as `const volatile int32_t *`: set once, to 1.
        let cancelFlag = UnsafeMutablePointer<Int32>.allocate(capacity: 1)

        init(_ continuation: AsyncThrowingStream<Token, Error>.Continuation) {
            self.continuation = continuation
            cancelFlag.initialize(to: 0)
        }

        deinit { cancelFlag.deallocate() }
    }

    private typealias Call = @Sendable (
        OpaquePointer, UnsafePointer<lfm_generate_options>, lfm_token_callback,
        UnsafeMutableRawPointer, UnsafePointer<Int32>, UnsafeMutablePointer<lfm_generation>
    ) -> lfm_status

    /// Runs a blocking generating call on the session's queue, its tokens yielded to the
    /// stream; a consumer that stops listening stops it through its cancel flag.
    private func stream(_ options: GenerateOptions, _ call: @escaping Call) -> AsyncThrowingStream<Token, Error> {
        AsyncThrowingStream { continuation in
            let sink = Sink(continuation)
            continuation.onTermination = { termination in
                if case .cancelled = termination { sink.cancelFlag.pointee = 1 }
            }
            let callback: lfm_token_callback = { text, length, token, user in
                let sink = Unmanaged<Sink>.fromOpaque(user!).takeUnretainedValue()
                let piece = text.map {
                    String(decoding: UnsafeRawBufferPointer(start: $0, count: length), as: UTF8.self)
                } ?? ""
                let id = token == UInt32.max ? nil : token  // LFM_TOKEN_NONE
                if case .terminated = sink.continuation.yield(Token(id: id, text: piece)) { return false }
                return true
            }
            queue.async { [self] in
                var result = lfm_generation()
                do {
                    let status = try withExtendedLifetime(sink) {
                        try options.withNative { native in
                            call(handle, native, callback, Unmanaged.passUnretained(sink).toOpaque(),
                                 sink.cancelFlag, &result)
                        }
                    }
                    try check(status)
                    last = Generation(
                        promptTokens: result.prompt_tokens, generatedTokens: result.generated_tokens,
                        stopReason: StopReason(rawValue: result.stop_reason))
                    continuation.finish()
                } catch {
                    last = nil
                    continuation.finish(throwing: error)
                }
            }
        }
    }
}
