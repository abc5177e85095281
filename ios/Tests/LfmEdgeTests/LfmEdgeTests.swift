// The Swift API on a real model: greedy streaming against the fixture's reference,
// stopping and cancelling, stop strings, constraints, sampling options, errors, chat, and
// tool calls on the demo model. ffi/tests/swift.rs runs these on Linux.
//
// LFM_EDGE_MODEL: the model (default: the tiny LFM2's Q4_0 GGUF fixture);
// LFM_EDGE_DEMO_MODEL: the model the tool checks chat with (default: models/lfm2-demo);
// LFM_EDGE_REFERENCE: its reference JSON (prompt_ids, and greedy_ids for 24 greedy
// tokens); LFM_EDGE_PROMPT_TEXT: the text of prompt_ids when the reference lacks it
// (default: the safetensors fixture's, the same tokenizer).
import Foundation
import XCTest

import LfmEdge

/// The repository's fixtures folder, from this file's place in ios/Tests/LfmEdgeTests.
private let fixtures = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures")

private let environment = ProcessInfo.processInfo.environment

private let demoModelPath = environment["LFM_EDGE_DEMO_MODEL"]
    ?? fixtures.deletingLastPathComponent().appendingPathComponent("models/lfm2-demo").path

/// A tool with a bounded string, an integer range and an optional boolean (as
/// ffi/tests/common's WEATHER_TOOL).
private let weatherTool = """
    [{"type": "function", "function": {"name": "get_weather",
      "description": "The weather in a city over the next days",
      "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 16},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "metric": {"type": "boolean"}},
       "required": ["city", "days"]}}}]
    """

private let modelPath = environment["LFM_EDGE_MODEL"]
    ?? fixtures.appendingPathComponent("gguf/lfm2-tiny-conv-first-Q4_0.gguf").path

private struct Reference: Decodable {
    let prompt_text: String?
    let prompt_ids: [UInt32]
    let greedy_ids: [UInt32]
}

private let reference: Reference = {
    let path = environment["LFM_EDGE_REFERENCE"]
        ?? fixtures.appendingPathComponent("gguf/lfm2-tiny-conv-first-Q4_0.json").path
    let data = try! Data(contentsOf: URL(fileURLWithPath: path))
    return try! JSONDecoder().decode(Reference.self, from: data)
}()

private let promptText: String = {
    if let text = reference.prompt_text ?? environment["LFM_EDGE_PROMPT_TEXT"] { return text }
    let path = fixtures.appendingPathComponent("lfm2-tiny-conv-first/reference.json")
    let data = try! Data(contentsOf: path)
    return try! JSONDecoder().decode(Reference.self, from: data).prompt_text!
}()

/// One model for all the tests: it is shareable.
private let sharedModel = Result { try LfmModel(path: modelPath) }

private func model() throws -> LfmModel { try sharedModel.get() }

/// Greedy and past end-of-sequence, as the reference was made.
private func greedy(_ maxTokens: Int) -> GenerateOptions {
    GenerateOptions(maxTokens: maxTokens, ignoreEos: true)
}

final class LfmEdgeTests: XCTestCase {
    func testTheSwiftPromptIsTheReferencePrompt() throws {
        XCTAssertEqual(try model().tokenize(promptText), reference.prompt_ids)
    }

    func testGreedyGenerationStreamsTheReference() async throws {
        let session = try model().makeSession()
        var tokens: [Token] = []
        for try await token in session.generateTokens(promptText, options: greedy(24)) {
            tokens.append(token)
        }
        XCTAssertEqual(tokens.compactMap(\.id), reference.greedy_ids)
        let generation = try XCTUnwrap(session.lastGeneration)
        XCTAssertEqual(generation.promptTokens, reference.prompt_ids.count)
        XCTAssertEqual(generation.generatedTokens, 24)
        XCTAssertEqual(generation.stopReason, .maxTokens)
        XCTAssertEqual(try session.context().used, reference.prompt_ids.count + 24)

        // The text stream is the same tokens' text, without the empty pieces.
        let other = try model().makeSession()
        var pieces: [String] = []
        for try await piece in other.generate(promptText, options: greedy(24)) {
            XCTAssertFalse(piece.isEmpty)
            pieces.append(piece)
        }
        XCTAssertEqual(pieces.joined(), tokens.map(\.text).joined())
        XCTAssertFalse(pieces.joined().isEmpty)
    }

    func testLeavingTheLoopStopsTheGenerationAndTheSessionGoesOn() async throws {
        let session = try model().makeSession(contextLength: 4096)
        var pieces = 0
        for try await _ in session.generate(promptText, options: greedy(4000)) {
            pieces += 1
            if pieces == 3 { break }
        }
        // Waits for the call to end, then tells how.
        let stopped = try XCTUnwrap(session.lastGeneration)
        XCTAssert([.cancelled, .callback].contains(stopped.stopReason), "\(stopped)")
        XCTAssertLessThan(stopped.generatedTokens, 4000)
        try await assertGreedyAfterReset(session)
    }

    func testCancellingTheTaskStopsTheGeneration() async throws {
        let session = try model().makeSession(contextLength: 4096)
        let started = AsyncStream<Void>.makeStream()
        let consumer = Task {
            var pieces = 0
            for try await _ in session.generate(promptText, options: greedy(4000)) {
                pieces += 1
                if pieces == 1 { started.continuation.yield() }
            }
            return pieces
        }
        for await _ in started.stream { break }
        consumer.cancel()
        let pieces = try await consumer.value
        XCTAssertLessThan(pieces, 4000)
        let stopped = try XCTUnwrap(session.lastGeneration)
        XCTAssert([.cancelled, .callback].contains(stopped.stopReason), "\(stopped)")
        XCTAssertLessThan(stopped.generatedTokens, 4000)
        try await assertGreedyAfterReset(session)
    }

    func testCancelEndsTheStreamWithCancelled() async throws {
        let session = try model().makeSession(contextLength: 4096)
        var tokens = 0
        for try await _ in session.generateTokens(promptText, options: greedy(4000)) {
            tokens += 1
            if tokens == 2 { session.cancel() }
        }
        XCTAssertLessThan(tokens, 4000)
        XCTAssertEqual(session.lastGeneration?.stopReason, .cancelled)
        try await assertGreedyAfterReset(session)
    }

    func testAStopStringEndsTheGeneration() async throws {
        let session = try model().makeSession()
        var full = ""
        for try await piece in session.generate(promptText, options: greedy(24)) { full += piece }
        // A stop string from the middle of what the model says, and where it first is.
        let middle = full.index(full.startIndex, offsetBy: full.count / 2)
        let stop = String(full[middle...].prefix(3))
        let before = full[..<full.range(of: stop)!.lowerBound]

        try session.reset()
        var options = greedy(24)
        options.stop = [stop, "a stop string never produced"]
        var text = ""
        for try await piece in session.generate(promptText, options: options) { text += piece }
        XCTAssertEqual(session.lastGeneration?.stopReason, .stopString)
        XCTAssertEqual(text, String(before))
        XCTAssertFalse(text.contains(stop))

        // Held-back text that never completes a stop string is let go at the end.
        try session.reset()
        options.stop = [String(full.suffix(1)) + "never produced after it"]
        text = ""
        for try await piece in session.generate(promptText, options: options) { text += piece }
        XCTAssertEqual(session.lastGeneration?.stopReason, .maxTokens)
        XCTAssertEqual(text, full)
    }

    func testARegexConstraintShapesTheWholeOutput() async throws {
        let session = try model().makeSession()
        let options = GenerateOptions(maxTokens: 16, constraint: .regex("[a-z]{3}-[0-9]{2}"))
        var text = ""
        for try await piece in session.generate(promptText, options: options) { text += piece }
        XCTAssertEqual(session.lastGeneration?.stopReason, .endOfSequence, text)
        XCTAssertNotNil(text.range(of: "^[a-z]{3}-[0-9]{2}$", options: .regularExpression), text)
    }

    func testAnInvalidSchemaThrowsBeforeAnyToken() async throws {
        let session = try model().makeSession()
        let schema = #"{"type": "object", "properties": {"n": {"type": "intger"}}}"#
        let options = GenerateOptions(maxTokens: 4, constraint: .jsonSchema(schema))
        var text = ""
        do {
            for try await piece in session.generate(promptText, options: options) { text += piece }
            XCTFail("no error")
        } catch let error as LfmError {
            XCTAssertEqual(error.status, 2) // LFM_ERROR_INVALID_ARGUMENT
            XCTAssert(error.message.contains("JSON schema at /properties/n: Invalid type: intger"), error.message)
        }
        XCTAssertEqual(text, "")
    }

    func testOutOfRangeOptionsThrow() async throws {
        let session = try model().makeSession()
        var options = greedy(4)
        options.topP = 2
        do {
            for try await _ in session.generate(promptText, options: options) {}
            XCTFail("top_p 2 was accepted")
        } catch let error as LfmError {
            XCTAssert(error.message.contains("top_p"), error.message)
        }
        // Negative counts are errors naming them, as in the Kotlin and JNI layers.
        options = greedy(4)
        options.maxTokens = -1
        do {
            for try await _ in session.generate(promptText, options: options) {}
            XCTFail("maxTokens -1 was accepted")
        } catch let error as LfmError {
            XCTAssertEqual(error.message, "maxTokens -1 is negative")
        }
        XCTAssertThrowsError(try model().makeSession(contextLength: -1)) { error in
            XCTAssertEqual((error as? LfmError)?.message, "contextLength -1 is negative")
        }
        // Sampling with every option set still generates.
        options = GenerateOptions(
            maxTokens: 8, temperature: 0.8, topK: 40, topP: 0.9, minP: 0.05,
            repetitionPenalty: 1.1, presencePenalty: 0.1, frequencyPenalty: 0.1,
            penaltyWindow: 64, seed: 7, ignoreEos: true)
        var first: [UInt32] = []
        for try await token in session.generateTokens(promptText, options: options) {
            first += token.id.map { [$0] } ?? []
        }
        XCTAssertEqual(first.count, 8)
        try session.reset()
        var again: [UInt32] = []
        for try await token in session.generateTokens(promptText, options: options) {
            again += token.id.map { [$0] } ?? []
        }
        XCTAssertEqual(again, first, "the same seed gives the same tokens")
    }

    func testAMissingModelThrowsNamingThePath() {
        let path = "/nonexistent/lfm-edge-swift-test-model"
        XCTAssertThrowsError(try LfmModel(path: path)) { error in
            guard let error = error as? LfmError else {
                return XCTFail("not an LfmError: \(error)")
            }
            XCTAssertNotEqual(error.status, 0)
            XCTAssert(error.message.contains(path), error.message)
        }
    }

    func testChatRepliesWithText() async throws {
        let session = try model().makeSession()
        try session.addMessage(role: "system", content: "You are terse.")
        var reply = ""
        for try await piece in session.chat("Hi", options: greedy(8)) {
            reply += piece
        }
        XCTAssertFalse(reply.isEmpty)
        XCTAssertEqual(session.lastGeneration?.generatedTokens, 8)
        var second = ""
        for try await piece in session.chat("More", options: greedy(4)) {
            second += piece
        }
        XCTAssertEqual(session.lastGeneration?.stopReason, .maxTokens)
    }

    func testRequiredToolCallsValidateAndAToolResultContinues() async throws {
        let demo = try LfmModel(path: demoModelPath)
        let session = try demo.makeSession()
        XCTAssertEqual(try session.toolCalls(), [])
        try session.setTools(weatherTool, choice: .required)
        for try await _ in session.chat("Will it rain in Paris this week?", options: GenerateOptions(maxTokens: 300)) {}
        let first = try XCTUnwrap(session.lastGeneration)
        XCTAssertEqual(first.stopReason, .endOfSequence)
        let calls = try session.toolCalls()
        XCTAssertFalse(calls.isEmpty)
        for call in calls { try assertValidWeatherCall(call) }

        // The result goes back as a "tool" turn; the cache keeps the first turn at least.
        try session.setTools(weatherTool)
        let held = try session.context().used
        for try await _ in session.chat(#"{"rain": true}"#, role: "tool", options: greedy(6)) {}
        let second = try XCTUnwrap(session.lastGeneration)
        XCTAssertEqual(second.generatedTokens, 6)
        let kept = try session.context().used - second.promptTokens - second.generatedTokens
        XCTAssert(kept >= first.promptTokens && kept <= held, "kept \(kept) of \(held)")

        // By name: calls of that tool.
        try session.reset()
        XCTAssertEqual(try session.toolCalls(), [])
        try session.setTools(weatherTool, choice: .function("get_weather"))
        for try await _ in session.chat("Rain in Oslo?", options: GenerateOptions(maxTokens: 300)) {}
        let named = try session.toolCalls()
        XCTAssertFalse(named.isEmpty)
        for call in named { try assertValidWeatherCall(call) }
    }

    func testBadToolsAndChoicesThrow() throws {
        let session = try LfmModel(path: demoModelPath).makeSession()
        XCTAssertThrowsError(try session.setTools("[{")) { error in
            let failure = error as? LfmError
            XCTAssertEqual(failure?.status, 2) // LFM_ERROR_INVALID_ARGUMENT
            XCTAssert(failure?.message.hasPrefix("tools: invalid JSON") == true, "\(error)")
        }
        XCTAssertThrowsError(try session.setTools(weatherTool, choice: .function("get_time"))) { error in
            XCTAssertEqual(
                (error as? LfmError)?.message,
                "tool choice \"get_time\" is not auto, required, none or a tool's name (the tools are get_weather)")
        }
        XCTAssertThrowsError(try session.setTools(nil, choice: .required))
        try session.setTools(nil, choice: .none)
    }

    /// `call` calls get_weather with arguments valid against its parameters, written as
    /// JSON (booleans as true/false, not numbers).
    private func assertValidWeatherCall(_ call: ToolCall) throws {
        XCTAssertEqual(call.name, "get_weather")
        let object = try JSONSerialization.jsonObject(with: Data(call.arguments.utf8))
        let arguments = try XCTUnwrap(object as? [String: Any], call.arguments)
        XCTAssert(Set(arguments.keys).isSubset(of: ["city", "days", "metric"]), call.arguments)
        let city = try XCTUnwrap(arguments["city"] as? String, call.arguments)
        XCTAssertLessThanOrEqual(city.count, 16, call.arguments)
        let days = try XCTUnwrap(arguments["days"] as? Int, call.arguments)
        XCTAssert((1...7).contains(days), call.arguments)
        if arguments["metric"] != nil {
            let written = call.arguments.range(of: #""metric"\s*:\s*(true|false)"#, options: .regularExpression)
            XCTAssertNotNil(written, call.arguments)
        }
    }

    /// The session, reset, generates the reference again.
    private func assertGreedyAfterReset(_ session: LfmSession) async throws {
        try session.reset()
        XCTAssertEqual(try session.context().used, 0)
        var ids: [UInt32] = []
        for try await token in session.generateTokens(promptText, options: greedy(24)) {
            ids += token.id.map { [$0] } ?? []
        }
        XCTAssertEqual(ids, reference.greedy_ids)
    }
}
