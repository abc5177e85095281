// Sums and maxima across a workgroup through workgroup memory alone, for devices without subgroup
// operations (`Reduce::Workgroup`); reduce_subgroups.wgsl is the other. Prepended to
// every kernel before common.wgsl.

// The invocation, as the entry points that sum across invocations receive it.
struct Invocation {
    @builtin(local_invocation_index) index: u32,
}

// Each of the first `count` values combined by `op` (SUM, MAX) over the invocation's
// group of `group` consecutive invocations, in every invocation of the group
// (common.wgsl); the workgroup has `threads`.
fn group_reduce(inv: Invocation, group: u32, threads: u32, values: ptr<function, GroupSums>,
                count: u32, op: u32) {
    tree_reduce(inv.index, group, values, count, op);
}
