// Bandwidth probe: dst = src, 16 bytes per thread per step. Decode reads weights the
// way this reads src, so its speed is the bound decode is measured against. The
// workgroups stride over the buffer, so any launch size covers it.

struct Params {
    vec4s: u32, // 16-byte elements to copy
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@group(0) @binding(2) var<uniform> params: Params;

const WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = nwg.x * WG;
    for (var i = gid.x; i < params.vec4s; i += stride) {
        dst[i] = src[i];
    }
}
