package dev.lfmedge;

/** Receives each generated token, on the generating thread. */
@FunctionalInterface
public interface TokenCallback {
    /**
     * @param text the text this token completes; empty when the token ends inside a
     *     UTF-8 character (its bytes come with a later token)
     * @param token the token id; -1 for text held back for a stop string and let go
     *     at the end
     * @return true to go on, false to stop ({@link StopReason#CALLBACK})
     */
    boolean onToken(String text, int token);
}
