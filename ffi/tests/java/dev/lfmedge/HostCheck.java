package dev.lfmedge;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.StringJoiner;

/**
 * Drives the JNI entry points the Android library uses (LfmNative) on the host JVM, for
 * ffi/tests/jvm.rs: prints one "name: value" line per check, which the test compares
 * with the fixture's HF reference.
 *
 * java -Djava.library.path=DIR dev.lfmedge.HostCheck MODEL_DIR PROMPT_IDS PROMPT_TEXT
 *     DEMO_MODEL_DIR TOOLS_JSON [GGUF_FILE GGUF_PROMPT_IDS]...
 */
public final class HostCheck {
    /** Collects what the callback streams; stops after {@code limit} tokens. */
    private static final class Collector implements TokenCallback {
        final List<Integer> ids = new ArrayList<>();
        final StringBuilder text = new StringBuilder();
        final int limit;

        Collector(int limit) {
            this.limit = limit;
        }

        @Override
        public boolean onToken(String piece, int token) {
            text.append(piece);
            if (token == -1) {
                return true; // held-back text let go at the end: no token of its own
            }
            ids.add(token);
            return ids.size() < limit;
        }

        String joined() {
            StringJoiner joiner = new StringJoiner(",");
            ids.forEach(id -> joiner.add(id.toString()));
            return joiner.toString();
        }
    }

    private static String join(int[] values) {
        StringJoiner joiner = new StringJoiner(",");
        for (int v : values) {
            joiner.add(Integer.toString(v));
        }
        return joiner.toString();
    }

    /** The UTF-8 bytes of text in hex: generated text has newlines of its own. */
    private static String hex(String text) {
        StringBuilder out = new StringBuilder();
        for (byte b : text.getBytes(StandardCharsets.UTF_8)) {
            out.append(String.format("%02x", b));
        }
        return out.toString();
    }

    /** Greedy, past end-of-sequence tokens. */
    private static GenerateParams params(int maxTokens) {
        return new GenerateParams(maxTokens, 0f, 0, 1f, 0f, 1f, 0f, 0f, 0, 0L, new String[0], true,
            GenerateParams.CONSTRAINT_NONE, null);
    }

    private static GenerateParams withStop(int maxTokens, String stop) {
        return new GenerateParams(maxTokens, 0f, 0, 1f, 0f, 1f, 0f, 0f, 0, 0L,
            new String[] {stop}, true, GenerateParams.CONSTRAINT_NONE, null);
    }

    /** Greedy, ending where the constraint allows an end-of-sequence token. */
    private static GenerateParams constrained(int maxTokens, int kind, String constraint) {
        return new GenerateParams(maxTokens, 0f, 0, 1f, 0f, 1f, 0f, 0f, 0, 0L, new String[0], false,
            kind, constraint);
    }

    /** The status and message of what {@code call} throws, or "no error". */
    private static String failure(Runnable call) {
        try {
            call.run();
            return "no error";
        } catch (LfmException e) {
            return e.code + " " + e.getMessage();
        }
    }

    private static int[] parseIds(String csv) {
        String[] parts = csv.split(",");
        int[] ids = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            ids[i] = Integer.parseInt(parts[i]);
        }
        return ids;
    }

    /**
     * Tools on the demo model: a chat turn under tool choice "required" whose calls come
     * back one per line ("tool-call N: NAME ARGUMENTS_JSON"), bad tools and choices, and a
     * tool result that continues the chat.
     */
    private static void checkTools(String demoDir, String tools) {
        long demo = LfmNative.modelLoad(demoDir, 0, 0, 0, 0, 0);
        long session = LfmNative.sessionNew(demo, 0, 0);
        LfmNative.chatSetTools(session, tools, "required");
        int stop = LfmNative.chat(session, "user", "Will it rain in Paris this week?",
            constrained(300, GenerateParams.CONSTRAINT_NONE, null), null);
        System.out.println("tool-calls-stop: " + StopReason.of(stop));
        String[] calls = LfmNative.chatToolCalls(session);
        for (int i = 0; i + 1 < calls.length; i += 2) {
            System.out.println("tool-call " + i / 2 + ": " + calls[i] + " " + calls[i + 1]);
        }
        System.out.println("bad-tools: " + failure(() ->
            LfmNative.chatSetTools(session, "[{", "auto")));
        System.out.println("unknown-tool-choice: " + failure(() ->
            LfmNative.chatSetTools(session, tools, "get_time")));
        LfmNative.chatSetTools(session, tools, null);
        int held = LfmNative.sessionContext(session)[0];
        stop = LfmNative.chat(session, "tool", "{\"rain\": true}", params(6), null);
        System.out.println("tool-result: " + StopReason.of(stop) + " " + held + " -> "
            + LfmNative.sessionContext(session)[0]);
        LfmNative.sessionReset(session);
        System.out.println("calls-after-reset: " + LfmNative.chatToolCalls(session).length);
        LfmNative.sessionFree(session);
        LfmNative.modelFree(demo);
    }

    public static void main(String[] args) {
        String modelDir = args[0];
        int[] promptIds = parseIds(args[1]);
        String promptText = args[2];

        long model = LfmNative.modelLoad(modelDir, 0, 0, 0, 0, 0);
        long session = LfmNative.sessionNew(model, 0, 0);
        // Sessions keep the weights alive.
        LfmNative.modelFree(model);
        model = LfmNative.modelLoad(modelDir, 0, 0, 0, 0, 0);

        Collector greedy = new Collector(Integer.MAX_VALUE);
        int stop = LfmNative.generateTokens(session, promptIds, params(24), greedy);
        System.out.println("greedy: " + greedy.joined());
        System.out.println("greedy-stop: " + StopReason.of(stop));
        System.out.println("greedy-text-utf8: " + hex(greedy.text.toString()));

        LfmNative.sessionReset(session);
        Collector fromText = new Collector(Integer.MAX_VALUE);
        LfmNative.generate(session, promptText, params(24), fromText);
        System.out.println("text-prompt: " + fromText.joined());

        System.out.println("tokenize: " + join(LfmNative.tokenize(model, promptText, true)));

        LfmNative.sessionReset(session);
        Collector stopped = new Collector(3);
        stop = LfmNative.generateTokens(session, promptIds, params(24), stopped);
        System.out.println("callback-stop: " + StopReason.of(stop) + " " + stopped.ids.size());

        LfmNative.sessionReset(session);
        LfmNative.chatAdd(session, "system", "Be brief.");
        Collector reply = new Collector(Integer.MAX_VALUE);
        LfmNative.chat(session, "user", "Hi", params(4), reply);
        LfmNative.chat(session, "user", "More", params(4), reply);
        int[] context = LfmNative.sessionContext(session);
        System.out.println("chat: " + reply.ids.size() + " tokens, context " + context[0] + "/" + context[1]);

        try {
            java.io.File saved = java.io.File.createTempFile("chat", ".lfm");
            saved.deleteOnExit();
            LfmNative.sessionSave(session, saved.getPath());
            long restored = LfmNative.sessionNew(model, 0, 0);
            LfmNative.sessionLoad(restored, saved.getPath());
            int[] again = LfmNative.sessionContext(restored);
            System.out.println("restored: " + (again[0] == context[0] && again[1] == context[1]));
            LfmNative.sessionFree(restored);
        } catch (java.io.IOException e) {
            throw new RuntimeException(e);
        }

        try {
            LfmNative.generateTokens(session, new int[] {1, 99999}, params(4), null);
        } catch (LfmException e) {
            System.out.println("out-of-vocab: " + e.code + " " + e.getMessage());
        }
        try {
            LfmNative.generate(session, "x", params(4), (piece, token) -> {
                throw new IllegalStateException("thrown by the callback");
            });
        } catch (IllegalStateException e) {
            System.out.println("callback-exception: " + e.getMessage());
        }
        // Within a budget, with one KV pool of 3 blocks of 16 tokens for all the sessions:
        // the first session takes two, the second fills the third with its prompt.
        long pooled = LfmNative.modelLoad(modelDir, 0, 64L << 20, 48, 0, 0);
        long first = LfmNative.sessionNew(pooled, 0, 0);
        long second = LfmNative.sessionNew(pooled, 0, 0);
        int firstStop = LfmNative.generateTokens(first, promptIds, params(8), null);
        int secondStop = LfmNative.generateTokens(second, promptIds, params(24), null);
        System.out.println("pooled: " + StopReason.of(firstStop) + " " + StopReason.of(secondStop)
            + " " + LfmNative.sessionContext(second)[0]);
        LfmNative.sessionFree(first);
        LfmNative.sessionFree(second);
        LfmNative.modelFree(pooled);
        try {
            LfmNative.modelLoad(modelDir, 0, 1000, 0, 0, 0);
        } catch (LfmException e) {
            System.out.println("budget: " + e.code);
        }
        try {
            LfmNative.modelLoad("/nonexistent/model", 0, 0, 0, 0, 0);
        } catch (LfmException e) {
            System.out.println("missing-model: " + e.code + " " + e.getMessage());
        }


        // A stop string ends the generation; it is not streamed.
        LfmNative.sessionReset(session);
        String firstPiece = greedy.text.substring(0, Math.min(3, greedy.text.length()));
        Collector untilStop = new Collector(Integer.MAX_VALUE);
        stop = LfmNative.generateTokens(session, promptIds, withStop(24, firstPiece), untilStop);
        System.out.println("stop-string: " + StopReason.of(stop) + " "
            + untilStop.text.toString().contains(firstPiece));

        // A regex constraint shapes the output whole; a schema that does not compile is
        // refused before any token.
        LfmNative.sessionReset(session);
        Collector shaped = new Collector(Integer.MAX_VALUE);
        stop = LfmNative.generateTokens(session, promptIds,
            constrained(16, GenerateParams.CONSTRAINT_REGEX, "[a-z]{3}-[0-9]{2}"), shaped);
        System.out.println("regex-constraint: " + StopReason.of(stop) + " " + shaped.text);

        // Bad values are errors naming them, never the defaults.
        final long live = session;
        final long liveModel = model;
        System.out.println("negative-max-tokens: " + failure(() ->
            LfmNative.generateTokens(live, promptIds, params(-1), null)));
        System.out.println("negative-top-k: " + failure(() -> LfmNative.generateTokens(live,
            promptIds, new GenerateParams(4, 0f, -1, 1f, 0f, 1f, 0f, 0f, 0, 0L, null, true,
            GenerateParams.CONSTRAINT_NONE, null), null)));
        System.out.println("bad-top-p: " + failure(() -> LfmNative.generateTokens(live,
            promptIds, new GenerateParams(4, 0f, 0, 2f, 0f, 1f, 0f, 0f, 0, 0L, null, true,
            GenerateParams.CONSTRAINT_NONE, null), null)));
        System.out.println("bad-schema: " + failure(() -> LfmNative.generateTokens(live,
            promptIds, constrained(4, GenerateParams.CONSTRAINT_JSON_SCHEMA,
                "{\"type\": \"object\", \"properties\": {\"n\": {\"type\": \"intger\"}}}"),
            null)));
        System.out.println("bad-constraint-kind: " + failure(() -> LfmNative.generateTokens(live,
            promptIds, constrained(4, 9, "x"), null)));
        System.out.println("negative-context: " + failure(() ->
            LfmNative.sessionNew(liveModel, -1, 0)));
        System.out.println("negative-budget: " + failure(() ->
            LfmNative.modelLoad(modelDir, 0, -1, 0, 0, 0)));
        System.out.println("negative-pool: " + failure(() ->
            LfmNative.modelLoad(modelDir, 0, 0, -1, 0, 0)));

        checkTools(args[3], args[4]);

        // GGUF files, quantized, through the same loader.
        for (int i = 5; i + 1 < args.length; i += 2) {
            long gguf = LfmNative.modelLoad(args[i], 0, 0, 0, 0, 0);
            long ggufSession = LfmNative.sessionNew(gguf, 0, 0);
            Collector ids = new Collector(Integer.MAX_VALUE);
            LfmNative.generateTokens(ggufSession, parseIds(args[i + 1]), params(24), ids);
            System.out.println("gguf " + new java.io.File(args[i]).getName() + ": " + ids.joined());
            LfmNative.sessionFree(ggufSession);
            LfmNative.modelFree(gguf);
        }

        LfmNative.sessionFree(session);
        LfmNative.modelFree(model);
        System.out.println("done");
    }
}
