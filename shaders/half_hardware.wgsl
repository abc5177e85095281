// IEEE half to f32 by the hardware's conversion, for devices with the SHADER_F16_IN_F32
// downlevel capability: one instruction where half_integer.wgsl takes a dozen, which
// decoding f16 weights and GGUF scales feels. Prepended to every kernel before
// common.wgsl.

fn f16_bits_to_f32(h: u32) -> f32 {
    return unpack2x16float(h).x;
}

// Both halves of a word, the low one first.
fn f16_pair(word: u32) -> vec2<f32> {
    return unpack2x16float(word);
}
