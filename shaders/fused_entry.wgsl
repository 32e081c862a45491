// The fused schedule's entry point: one workgroup runs `current.steps`
// training steps in one dispatch. It is compiled appended to train.wgsl with
// `fused_step(local)`, one step for one invocation, which the host
// writes out for each run (src/gpu/fused.rs): the calls of train.wgsl's
// `*_at` functions in the order of the step's dispatch list, a barrier after
// each, every loop bound and `Step` a constant so the driver can unroll them.

@compute @workgroup_size(fused_workgroup_size)
fn fused_steps(@builtin(local_invocation_index) local: u32) {
    for (var step = 0u; step < current.steps; step++) {
        fused_step(local);
    }
}
