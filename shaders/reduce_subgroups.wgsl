// Sums and maxima across a workgroup through subgroup operations, for devices with them (wgpu's
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

// Each of the first `count` values combined by `op` (SUM, MAX) over the invocation's
// group of `group` consecutive invocations, in every invocation of the group
// (common.wgsl). A group of the whole workgroup (`threads`) takes one subgroup
// operation per value and one barrier; smaller ones the tree.
fn group_reduce(inv: Invocation, group: u32, threads: u32, values: ptr<function, GroupSums>,
                count: u32, op: u32) {
    if group < threads {
        tree_reduce(inv.index, group, values, count, op);
        return;
    }
    workgroupBarrier(); // earlier readers of group_scratch are done
    for (var v = 0u; v < count; v++) {
        var reduced = 0.0;
        if op == MAX {
            reduced = subgroupMax((*values)[v]);
        } else {
            reduced = subgroupAdd((*values)[v]);
        }
        if inv.lane == 0u {
            group_scratch[v * inv.subgroups + inv.subgroup] = reduced;
        }
    }
    workgroupBarrier();
    for (var v = 0u; v < count; v++) {
        var total = group_scratch[v * inv.subgroups];
        for (var s = 1u; s < inv.subgroups; s++) {
            total = reduce_pair(op, total, group_scratch[v * inv.subgroups + s]);
        }
        (*values)[v] = total;
    }
}
