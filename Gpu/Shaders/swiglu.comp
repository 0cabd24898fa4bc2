#version 460
// gate = silu(gate) * up, silu(g) = g * sigmoid(g): the middle of the SwiGLU MLP, down(silu(gate(x)) * up(x)).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint64_t gate;  // [count] f32, overwritten
    uint64_t up;    // [count] f32
    uint count;
} p;

void main() {
    uint i = linearGroup() * 256u + gl_LocalInvocationID.x;
    if (i >= p.count) { return; }
    float g = Floats(p.gate).f[i];
    Floats(p.gate).f[i] = g / (1.0 + exp(-g)) * Floats(p.up).f[i];
}
