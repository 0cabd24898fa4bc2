#version 460
// x *= y elementwise: each row's weights of the LoRA adapters on its products with their A matrices.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint64_t x;
    uint64_t y;
    uint count;
} p;

void main() {
    uint i = linearGroup() * 256u + gl_LocalInvocationID.x;
    if (i >= p.count) { return; }
    Floats(p.x).f[i] *= Floats(p.y).f[i];
}
