// IEEE half to f32 with integer operations, for devices without the SHADER_F16_IN_F32
// downlevel capability that `unpack2x16float` needs (many mobile GPUs; Mesa's Vulkan
// drivers without shaderFloat16). Prepended to every kernel before common.wgsl.

fn f16_bits_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let exponent = (h >> 10u) & 0x1fu;
    let mantissa = h & 0x3ffu;
    if exponent == 0u {
        // Zero or subnormal: mantissa · 2^-24.
        let magnitude = f32(mantissa) * 5.9604644775390625e-8;
        return select(magnitude, -magnitude, sign != 0u);
    }
    if exponent == 31u {
        return bitcast<f32>(sign | 0x7f800000u | (mantissa << 13u)); // inf, nan
    }
    return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
}

// Both halves of a word, the low one first.
fn f16_pair(word: u32) -> vec2<f32> {
    return vec2<f32>(f16_bits_to_f32(word & 0xffffu), f16_bits_to_f32(word >> 16u));
}
