// The fused schedule's entry point: one workgroup runs `current.epochs`
// epochs in one dispatch. It is compiled appended to train.wgsl together
// with `fused_epoch(local)`, one epoch for one invocation, which the host
// writes out for each run (src/gpu/fused.rs): the calls of train.wgsl's
// `*_at` functions in the order of the epoch's dispatch list, a barrier after
// each, every loop bound and `Step` a constant so the driver can unroll them.

@compute @workgroup_size(fused_workgroup_size)
fn fused_epochs(@builtin(local_invocation_index) local: u32) {
    for (var epoch = 0u; epoch < current.epochs; epoch++) {
        fused_epoch(local);
    }
}
