// Workgroup-wide sum and max: subgroup reductions, then one value per subgroup through shared memory.
// Every invocation of the workgroup must call them (they contain barriers) and gets the result.
shared float reduceScratch[64];

float workgroupSum(float v) {
    float s = subgroupAdd(v);
    barrier();
    if (subgroupElect()) { reduceScratch[gl_SubgroupID] = s; }
    barrier();
    float total = 0.0;
    for (uint i = 0; i < gl_NumSubgroups; i++) { total += reduceScratch[i]; }
    return total;
}

float workgroupMax(float v) {
    float s = subgroupMax(v);
    barrier();
    if (subgroupElect()) { reduceScratch[gl_SubgroupID] = s; }
    barrier();
    float m = reduceScratch[0];
    for (uint i = 1; i < gl_NumSubgroups; i++) { m = max(m, reduceScratch[i]); }
    return m;
}
