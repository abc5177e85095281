// Sums across a workgroup through subgroup operations, for devices with them (wgpu's
// SUBGROUP feature, `Reduce::Subgroups`); reduce_workgroup.wgsl is the other. Prepended
// to every kernel before common.wgsl. Nothing is assumed of how invocations fall into
// subgroups: each subgroup's sum goes to the slot of its subgroup id.

// The invocation, as the entry points that sum across invocations receive it.
struct Invocation {
    @builtin(local_invocation_index) index: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

// Each of the first `count` values summed over the invocation's group of `group`
// consecutive invocations, in every invocation of the group (common.wgsl). A group of
// the whole workgroup (`threads`) takes one subgroup sum per value and one barrier;
// smaller ones the tree.
fn group_sums(inv: Invocation, group: u32, threads: u32, values: ptr<function, GroupSums>,
              count: u32) {
    if group < threads {
        tree_sums(inv.index, group, values, count);
        return;
    }
    workgroupBarrier(); // earlier readers of group_scratch are done
    for (var v = 0u; v < count; v++) {
        let sum = subgroupAdd((*values)[v]);
        if inv.lane == 0u {
            group_scratch[v * inv.subgroups + inv.subgroup] = sum;
        }
    }
    workgroupBarrier();
    for (var v = 0u; v < count; v++) {
        var total = 0.0;
        for (var s = 0u; s < inv.subgroups; s++) {
            total += group_scratch[v * inv.subgroups + s];
        }
        (*values)[v] = total;
    }
}
