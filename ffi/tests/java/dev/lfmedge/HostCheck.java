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
            ids.add(token);
            text.append(piece);
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

    private static int[] parseIds(String csv) {
        String[] parts = csv.split(",");
        int[] ids = new int[parts.length];
        for (int i = 0; i < parts.length; i++) {
            ids[i] = Integer.parseInt(parts[i]);
        }
        return ids;
    }

    public static void main(String[] args) {
        String modelDir = args[0];
        int[] promptIds = parseIds(args[1]);
        String promptText = args[2];

        long model = LfmNative.modelLoad(modelDir, 0, 0, 0);
        long session = LfmNative.sessionNew(model, 0, 0);
        // Sessions keep the weights alive.
        LfmNative.modelFree(model);
        model = LfmNative.modelLoad(modelDir, 0, 0, 0);

        Collector greedy = new Collector(Integer.MAX_VALUE);
        int stop = LfmNative.generateTokens(session, promptIds, 24, 0f, 0, true, greedy);
        System.out.println("greedy: " + greedy.joined());
        System.out.println("greedy-stop: " + StopReason.of(stop));
        System.out.println("greedy-text-utf8: " + hex(greedy.text.toString()));

        LfmNative.sessionReset(session);
        Collector fromText = new Collector(Integer.MAX_VALUE);
        LfmNative.generate(session, promptText, 24, 0f, 0, true, fromText);
        System.out.println("text-prompt: " + fromText.joined());

        System.out.println("tokenize: " + join(LfmNative.tokenize(model, promptText, true)));

        LfmNative.sessionReset(session);
        Collector stopped = new Collector(3);
        stop = LfmNative.generateTokens(session, promptIds, 24, 0f, 0, true, stopped);
        System.out.println("callback-stop: " + StopReason.of(stop) + " " + stopped.ids.size());

        LfmNative.sessionReset(session);
        LfmNative.chatAdd(session, "system", "Be brief.");
        Collector reply = new Collector(Integer.MAX_VALUE);
        LfmNative.chat(session, "user", "Hi", 4, 0f, 0, true, reply);
        LfmNative.chat(session, "user", "More", 4, 0f, 0, true, reply);
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
            LfmNative.generateTokens(session, new int[] {1, 99999}, 4, 0f, 0, true, null);
        } catch (LfmException e) {
            System.out.println("out-of-vocab: " + e.code + " " + e.getMessage());
        }
        try {
            LfmNative.generate(session, "x", 4, 0f, 0, true, (piece, token) -> {
                throw new IllegalStateException("thrown by the callback");
            });
        } catch (IllegalStateException e) {
            System.out.println("callback-exception: " + e.getMessage());
        }
        // Within a budget, with one KV pool of 3 blocks of 16 tokens for all the sessions:
        // the first session takes two, the second fills the third with its prompt.
        long pooled = LfmNative.modelLoad(modelDir, 0, 64L << 20, 48);
        long first = LfmNative.sessionNew(pooled, 0, 0);
        long second = LfmNative.sessionNew(pooled, 0, 0);
        int firstStop = LfmNative.generateTokens(first, promptIds, 8, 0f, 0, true, null);
        int secondStop = LfmNative.generateTokens(second, promptIds, 24, 0f, 0, true, null);
        System.out.println("pooled: " + StopReason.of(firstStop) + " " + StopReason.of(secondStop)
            + " " + LfmNative.sessionContext(second)[0]);
        LfmNative.sessionFree(first);
        LfmNative.sessionFree(second);
        LfmNative.modelFree(pooled);
        try {
            LfmNative.modelLoad(modelDir, 0, 1000, 0);
        } catch (LfmException e) {
            System.out.println("budget: " + e.code);
        }
        try {
            LfmNative.modelLoad("/nonexistent/model", 0, 0, 0);
        } catch (LfmException e) {
            System.out.println("missing-model: " + e.code + " " + e.getMessage());
        }

        LfmNative.sessionFree(session);
        LfmNative.modelFree(model);
        System.out.println("done");
    }
}
