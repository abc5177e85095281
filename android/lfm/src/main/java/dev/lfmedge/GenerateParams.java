package dev.lfmedge;

/**
 * Every generation option, as the native methods read them (ffi/src/jni_bindings.rs
 * reads these fields by name). The native side checks them: a negative count or an
 * out-of-range value is an {@link LfmException}, never the default.
 */
final class GenerateParams {
    final int maxTokens;
    final float temperature;
    final int topK;
    final float topP;
    final float minP;
    final float repetitionPenalty;
    final float presencePenalty;
    final float frequencyPenalty;
    final int penaltyWindow;
    final long seed;
    final String[] stop;
    final boolean ignoreEos;
    /**
     * What the output must be, numbered as lfm_edge.h's lfm_constraint_kind:
     * {@link #CONSTRAINT_NONE} (and {@code constraint} null), or a JSON schema, a regex
     * or a Lark grammar in {@code constraint}. One that does not compile is an
     * {@link LfmException} with code INVALID_ARGUMENT before any token.
     */
    final int constraintKind;
    final String constraint;

    static final int CONSTRAINT_NONE = 0;
    static final int CONSTRAINT_JSON_SCHEMA = 1;
    static final int CONSTRAINT_REGEX = 2;
    static final int CONSTRAINT_GRAMMAR = 3;

    GenerateParams(int maxTokens, float temperature, int topK, float topP, float minP,
            float repetitionPenalty, float presencePenalty, float frequencyPenalty,
            int penaltyWindow, long seed, String[] stop, boolean ignoreEos, int constraintKind,
            String constraint) {
        this.maxTokens = maxTokens;
        this.temperature = temperature;
        this.topK = topK;
        this.topP = topP;
        this.minP = minP;
        this.repetitionPenalty = repetitionPenalty;
        this.presencePenalty = presencePenalty;
        this.frequencyPenalty = frequencyPenalty;
        this.penaltyWindow = penaltyWindow;
        this.seed = seed;
        this.stop = stop;
        this.ignoreEos = ignoreEos;
        this.constraintKind = constraintKind;
        this.constraint = constraint;
    }
}
