package dev.lfmedge;

/** A failure in the native library; {@link #code} is its lfm_status (lfm_edge.h). */
public final class LfmException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public static final int NULL_ARGUMENT = 1;
    public static final int INVALID_ARGUMENT = 2;
    public static final int IO = 3;
    public static final int MODEL = 4;
    public static final int NO_ADAPTER = 5;
    public static final int GPU = 6;
    public static final int CONTEXT_FULL = 7;
    public static final int BUFFER_TOO_SMALL = 8;
    public static final int BUSY = 9;
    public static final int INTERNAL = 10;
    public static final int BUDGET = 11;

    public final int code;

    /** Called from native code. */
    public LfmException(int code, String message) {
        super(message);
        this.code = code;
    }
}
