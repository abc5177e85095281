package dev.lfmedge;

/**
 * The JNI entry points of liblfm_edge_ffi (ffi/src/jni_bindings.rs). Package-private:
 * {@link LfmModel} and {@link LfmSession} own the handles these pass around. Every
 * method throws {@link LfmException} on failure; the generating ones return a
 * {@link StopReason} code and rethrow whatever the callback throws.
 */
final class LfmNative {
    static {
        System.loadLibrary("lfm_edge_ffi");
    }

    private LfmNative() {}

    /** path: a model folder, a .gguf file, or hf:OWNER/REPO[:FILE]. 0 for a byte or token
     *  count means none (the adapter's own limit for the binding and buffer sizes). */
    static native long modelLoad(String path, int backend, long vramBudgetBytes,
            int kvPoolTokens, long maxBindingBytes, long maxBufferBytes);

    static native void modelFree(long model);

    static native int[] tokenize(long model, String text, boolean addSpecialTokens);

    /** 0 for contextLength or batch means the default (for contextLength with a VRAM
     *  budget: all the budget has left). */
    static native long sessionNew(long model, int contextLength, int batch);

    static native void sessionFree(long session);

    static native void sessionReset(long session);

    /** Writes the session (cache and conversation) to a file; sessionLoad reads it back. */
    static native void sessionSave(long session, String path);

    static native void sessionLoad(long session, String path);

    /** The one method that may run while another call uses the session. */
    static native void sessionCancel(long session);

    /** {tokens held, capacity}. */
    static native int[] sessionContext(long session);

    static native int generate(long session, String prompt, GenerateParams params,
            TokenCallback callback);

    static native int generateTokens(long session, int[] tokens, GenerateParams params,
            TokenCallback callback);

    static native void chatAdd(long session, String role, String content);

    static native int chat(long session, String role, String content, GenerateParams params,
            TokenCallback callback);

    /** The tools later chat turns list, a JSON array in OpenAI's shape (null: none), and
     *  the tool choice: auto, required, none or a tool's name (null: auto). */
    static native void chatSetTools(long session, String toolsJson, String toolChoice);

    /** The calls of the last chat reply: {name, arguments, name, arguments, ...}, each
     *  arguments a JSON object's text. */
    static native String[] chatToolCalls(long session);
}
