#version 460
// x = f(x) in place: kind 0 is quick_gelu, x * sigmoid(1.702 x); kind 1 the exact GELU, x * Phi(x), with
// Phi from erfc by Abramowitz & Stegun 7.1.26 (absolute error under 1.5e-7; GLSL has no erf), evaluated on the
// tail side so large negative inputs do not cancel. Scalar reference: Cpu/Kernels/GeluKernel.cs (in double).
#include "common.glsl"
layout(local_size_x = 256) in;
layout(push_constant) uniform Push {
    uint64_t x;
    uint count;
    uint kind;
} p;

// erfc(z) for z >= 0.
float erfcPositive(float z) {
    float t = 1.0 / (1.0 + 0.3275911 * z);
    float poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return poly * exp(-z * z);
}

void main() {
    uint i = linearGroup() * 256u + gl_LocalInvocationID.x;
    if (i >= p.count) { return; }
    Floats x = Floats(p.x);
    float v = x.f[i];
    if (p.kind == 0u) {
        x.f[i] = v / (1.0 + exp(-1.702 * v));
    } else {
        float z = abs(v) * 0.70710678118654752;
        float tail = 0.5 * erfcPositive(z);
        x.f[i] = v * (v >= 0.0 ? 1.0 - tail : tail);
    }
}
