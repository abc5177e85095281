// A thin Swift API over lfm_edge.h: everything it does happens in the C ABI, which
// ffi/tests exercises on Linux; this file only adapts types, errors and streaming.
import Foundation
import LfmEdgeFFI

/// A failure in the native library: its `lfm_status` and message.
public struct LfmError: Error, CustomStringConvertible {
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

/// The GPU API to run on; on iOS `.auto` is Metal.
public enum Backend: Int32, Sendable {
    case auto = 0, vulkan, metal, dx12, gl
}

public struct GenerateOptions: Sendable {
    /// 0 feeds the prompt and generates nothing.
    public var maxTokens: Int
    /// 0 is greedy.
    public var temperature: Float
    /// The same seed gives the same tokens.
    public var seed: UInt64
    /// Keep generating past end-of-sequence tokens.
    public var ignoreEos: Bool

    public init(maxTokens: Int = 256, temperature: Float = 0, seed: UInt64 = 0, ignoreEos: Bool = false) {
        self.maxTokens = maxTokens
        self.temperature = temperature
        self.seed = seed
        self.ignoreEos = ignoreEos
    }

    var native: lfm_generate_options {
        lfm_generate_options(
            max_tokens: UInt32(clamping: maxTokens), temperature: temperature, seed: seed,
            ignore_eos: ignoreEos)
    }
}

/// An LFM2 model on the GPU. Thread-safe; sessions keep its weights alive.
public final class LfmModel: @unchecked Sendable {
    let handle: OpaquePointer

    /// Loads a model directory (config.json, model.safetensors, tokenizer.json,
    /// tokenizer_config.json). Blocks while the weights upload: call it off the main actor.
    /// `vramBudgetBytes`: 0, or the bytes the weights and every session stay within.
    /// `kvPoolTokens`: 0 (a KV cache per session), or one pool of that many tokens
    /// shared by all the model's sessions.
    public init(
        path: String, backend: Backend = .auto, vramBudgetBytes: UInt64 = 0,
        kvPoolTokens: UInt32 = 0
    ) throws {
        var options = lfm_model_options_default()
        options.backend = backend.rawValue
        options.vram_budget_bytes = vramBudgetBytes
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
        try check(lfm_tokenize(handle, text, addSpecialTokens, &ids, count, &count))
        return ids
    }

    /// A new conversation (0 = the defaults: 4096 tokens, or the shared pool's size, or
    /// all that the model's VRAM budget has left; batch 128).
    public func makeSession(contextLength: Int = 0, batch: Int = 0) throws -> LfmSession {
        var options = lfm_session_options(
            context_length: UInt32(clamping: contextLength), batch: UInt32(clamping: batch))
        var session: OpaquePointer?
        try check(lfm_session_new(handle, &options, &session))
        return LfmSession(handle: session!)
    }
}

/// A conversation: one call at a time (a second concurrent one throws LFM_ERROR_BUSY);
/// `cancel()` from anywhere.
public final class LfmSession: @unchecked Sendable {
    let handle: OpaquePointer

    init(handle: OpaquePointer) { self.handle = handle }

    deinit { lfm_session_free(handle) }

    /// Continues the session with `prompt` (tokenized with bos when the session is empty).
    public func generate(_ prompt: String, options: GenerateOptions = .init()) -> AsyncThrowingStream<String, Error> {
        stream(options) { session, options, callback, user in
            lfm_generate(session, prompt, options, callback, user, nil, nil)
        }
    }

    /// Adds `content` as a `role` turn and streams the assistant's reply (the model's chat
    /// template; each turn feeds only what it adds to the cache).
    public func chat(_ content: String, role: String = "user", options: GenerateOptions = .init()) -> AsyncThrowingStream<String, Error> {
        stream(options) { session, options, callback, user in
            lfm_chat(session, role, content, options, callback, user, nil, nil)
        }
    }

    /// Adds a turn (a system prompt, earlier turns) without running the model.
    public func addMessage(role: String, content: String) throws {
        try check(lfm_chat_add(handle, role, content))
    }

    /// Forgets the cache and the conversation.
    public func reset() throws { try check(lfm_session_reset(handle)) }

    /// Writes the session (its cache, the conversation) to a file, e.g. when the app
    /// moves to the background; `load(from:)` picks it up in a later process.
    public func save(to path: String) throws { try check(lfm_session_save(handle, path)) }

    /// Replaces this session with one `save(to:)` wrote for the same model.
    public func load(from path: String) throws { try check(lfm_session_load(handle, path)) }

    /// Stops the running generation before its next forward pass.
    public func cancel() { _ = lfm_session_cancel(handle) }

    /// Tokens held, and how many the context can hold.
    public func context() throws -> (used: Int, capacity: Int) {
        var used = 0, capacity = 0
        try check(lfm_session_context(handle, &used, &capacity))
        return (used, capacity)
    }

    /// Where the C callback sends text: the stream's continuation.
    private final class Sink {
        let continuation: AsyncThrowingStream<String, Error>.Continuation
        init(_ continuation: AsyncThrowingStream<String, Error>.Continuation) { self.continuation = continuation }
    }

    private typealias Call = (
        OpaquePointer, UnsafePointer<lfm_generate_options>, lfm_token_callback, UnsafeMutableRawPointer
    ) -> lfm_status

    /// Runs a blocking generating call on its own thread, its text yielded to the stream;
    /// a consumer that stops listening cancels it.
    private func stream(_ options: GenerateOptions, _ call: @escaping Call) -> AsyncThrowingStream<String, Error> {
        AsyncThrowingStream { continuation in
            continuation.onTermination = { [self] termination in
                if case .cancelled = termination { cancel() }
            }
            let callback: lfm_token_callback = { text, length, _, user in
                let sink = Unmanaged<Sink>.fromOpaque(user!).takeUnretainedValue()
                guard length > 0, let text else { return true }
                let piece = String(decoding: UnsafeRawBufferPointer(start: text, count: length), as: UTF8.self)
                if case .terminated = sink.continuation.yield(piece) { return false }
                return true
            }
            Thread { [self] in
                let sink = Sink(continuation)
                var native = options.native
                let status = withExtendedLifetime(sink) {
                    call(handle, &native, callback, Unmanaged.passUnretained(sink).toOpaque())
                }
                do {
                    try check(status)
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }.start()
        }
    }
}
