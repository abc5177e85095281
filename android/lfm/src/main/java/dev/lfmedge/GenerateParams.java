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

    GenerateParams(int maxTokens, float temperature, int topK, float topP, float minP,
            float repetitionPenalty, float presencePenalty, float frequencyPenalty,
            int penaltyWindow, long seed, String[] stop, boolean ignoreEos) {
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
    }
}
