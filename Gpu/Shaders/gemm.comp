#version 460
// Y[m, n] = X[m, :] · W[n, :] + bias[n] for many activation rows (prefill): 64 x 64 output tiles, 256
// invocations each computing 4 x 4, the K dimension walked in steps of 16 (32) through shared memory so each
// weight value read from memory serves 64 activation rows (and each activation value 64 weight rows).
#include "common.glsl"
layout(local_size_x = 256) in;
#if defined(WEIGHT_BLOCKS)
// Block-quantized weights: K in steps of one 32-value unit (a block or sub-block), so each invocation widens one
// quarter of a unit, eight weights, with quarterAt's block-wise reads, instead of eight values one at a time.
const uint BM = 64, BN = 64, BK = 32;
#else
const uint BM = 64, BN = 64, BK = 16;
#endif

layout(push_constant) uniform Push {
    uint64_t x;      // [m, k] f32
    uint64_t w;      // [n, k] stored type
    uint64_t bias;   // [n] f32, or 0
    uint64_t y;      // [m, n] f32
    uint m;
    uint n;
    uint k;
    uint tilesN;     // ceil(n / BN)
} p;

shared float xs[BK][BM + 4];
shared float ws[BK][BN + 4];

void main() {
    uint tile = linearGroup();
    uint tileM = tile / p.tilesN, tileN = tile % p.tilesN;
    if (tileM * BM >= p.m) { return; }
    uint t = gl_LocalInvocationID.x;
    uint ty = t / 16, tx = t % 16;     // this invocation's 4 x 4 block: rows ty*4.., cols tx*4..
    float acc[4][4];
    for (uint i = 0; i < 4; i++) { for (uint j = 0; j < 4; j++) { acc[i][j] = 0.0; } }

    for (uint k0 = 0; k0 < p.k; k0 += BK) {
        // Each invocation loads BM * BK / 256 of the activation values and as many of the weight values.
        for (uint e = t; e < BM * BK; e += 256u) {
            uint row = e / BK, kk = e % BK;
            uint gm = tileM * BM + row, gk = k0 + kk;
            xs[kk][row] = (gm < p.m && gk < p.k) ? Floats(p.x).f[gm * p.k + gk] : 0.0;
#if !defined(WEIGHT_BLOCKS)
            uint gn = tileN * BN + row;
            ws[kk][row] = (gn < p.n && gk < p.k) ? weightAt(p.w, gn * p.k + gk) : 0.0;
#endif
        }
#if defined(WEIGHT_BLOCKS)
        {
            // 64 rows x 4 quarters of the unit at k0 (k is whole units, so the unit is always there).
            uint row = t / 4u, quarter = t % 4u, gn = tileN * BN + row;
            vec4 lo = vec4(0.0), hi = vec4(0.0);
            uint c0 = 8u * quarter, c1 = c0 + 4u;
            if (gn < p.n) {
                quarterAt(p.w, gn * p.k, k0 / 32u, quarter, lo, hi, c0, c1);
                c0 -= k0;
                c1 -= k0;
            }
            for (uint i = 0; i < 4u; i++) {
                ws[c0 + i][row] = lo[i];
                ws[c1 + i][row] = hi[i];
            }
        }
#endif
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            vec4 a = vec4(xs[kk][ty * 4], xs[kk][ty * 4 + 1], xs[kk][ty * 4 + 2], xs[kk][ty * 4 + 3]);
            vec4 b = vec4(ws[kk][tx * 4], ws[kk][tx * 4 + 1], ws[kk][tx * 4 + 2], ws[kk][tx * 4 + 3]);
            for (uint i = 0; i < 4; i++) {
                acc[i][0] += a[i] * b.x;
                acc[i][1] += a[i] * b.y;
                acc[i][2] += a[i] * b.z;
                acc[i][3] += a[i] * b.w;
            }
        }
        barrier();
    }

    for (uint i = 0; i < 4; i++) {
        uint gm = tileM * BM + ty * 4 + i;
        if (gm >= p.m) { continue; }
        for (uint j = 0; j < 4; j++) {
            uint gn = tileN * BN + tx * 4 + j;
            if (gn >= p.n) { continue; }
            float v = acc[i][j];
            if (p.bias != 0ul) { v += Floats(p.bias).f[gn]; }
            Floats(p.y).f[gm * p.n + gn] = v;
        }
    }
}
