package dev.lfmedge;

/** Why a generation ended (lfm_stop_reason in lfm_edge.h, in the same order). */
public enum StopReason {
    MAX_TOKENS,
    /** The model produced an end-of-sequence token (neither streamed nor kept). */
    END_OF_SEQUENCE,
    /** The callback returned false, or the Flow's collector went away. */
    CALLBACK,
    /** {@code cancel()} was called. */
    CANCELLED,
    /** The session's context has no room for another token. */
    CONTEXT_FULL,
    /** A stop string was produced (it is not streamed). */
    STOP_STRING;

    static StopReason of(int code) {
        return values()[code];
    }
}
