// The KV cache's storage, prepended (after common.wgsl) to the kernels that use it.
// A cache holds f32 values, or f16 pairs packed in u32 words; WEIGHT_DTYPE says which
// (the same unpacking as weights: `weight_value`, `weight_pair`). Its rows live in
// blocks of BLOCK_TOKENS shared by the sessions of a model; each kernel binds its
// session's page table as `pages`.

const BLOCK_TOKENS: u32 = 16u; // kv_pool.rs

// The cache row of position `p`.
fn kv_row(p: u32) -> u32 {
    return pages[p / BLOCK_TOKENS] * BLOCK_TOKENS + p % BLOCK_TOKENS;
}

// f32 to IEEE half bits, rounded to nearest even, with integer operations
// (`pack2x16float` needs the capability `unpack2x16float` does).
fn f32_to_f16_bits(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    let sign = (bits >> 16u) & 0x8000u;
    let biased = (bits >> 23u) & 0xffu;
    let mantissa = bits & 0x7fffffu;
    if biased == 0xffu {
        return sign | 0x7c00u | select(0u, 0x200u, mantissa != 0u); // inf, nan
    }
    let exponent = i32(biased) - 112; // rebiased from 127 to 15
    if exponent >= 31 {
        return sign | 0x7c00u; // too large: inf
    }
    // Normal halves keep 10 mantissa bits; subnormals fewer, the implicit 1 shifted in.
    var significand = mantissa;
    var shift = 13u;
    var high = u32(max(exponent, 0)) << 10u;
    if exponent <= 0 {
        if exponent < -10 {
            return sign; // below half the smallest subnormal
        }
        significand = mantissa | 0x800000u;
        shift = u32(14 - exponent);
        high = 0u;
    }
    var half = high | (significand >> shift);
    let rest = significand & ((1u << shift) - 1u);
    let halfway = 1u << (shift - 1u);
    if rest > halfway || (rest == halfway && (half & 1u) == 1u) {
        half += 1u; // a carry into the exponent is the right rounding
    }
    return sign | half;
}

// Cache elements e and e + 1 (e even) as stored: one f16 word, or two f32 words.
fn kv_words(pair: vec2<f32>) -> vec2<u32> {
    if WEIGHT_DTYPE == DTYPE_F16 {
        return vec2<u32>(f32_to_f16_bits(pair.x) | (f32_to_f16_bits(pair.y) << 16u), 0u);
    }
    return bitcast<vec2<u32>>(pair);
}

// Words per element pair, and the first word of element e (even).
fn kv_pair_words() -> u32 {
    return select(2u, 1u, WEIGHT_DTYPE == DTYPE_F16);
}

fn kv_word(e: u32) -> u32 {
    return e / 2u * kv_pair_words();
}
