// The fused schedule's entry point: one workgroup runs `current.fused_steps`
// training steps in one dispatch. `fused_step` is written by the host for
// each run (src/gpu/fused.rs): the calls of the `*_at` functions in the
// order of the step's operations, each over its items, a barrier where the
// next operation reads what this one wrote, every loop bound and
// `DispatchArgs` a constant so the driver can unroll them.

@compute @workgroup_size(FUSED_WORKGROUP_SIZE)
fn fused_steps(@builtin(local_invocation_index) local: u32) {
    for (var step = 0u; step < current.fused_steps; step++) {
        // if early_stopping {
        // Early stopping's flag, as one value for the whole workgroup (the
        // steps' barriers must be reached by all of it or none).
        if local == 0u {
            stopped = u32(training_stopped());
        }
        if workgroupUniformLoad(&stopped) != 0u {
            break;
        }
        // } early_stopping
        fused_step(local);
    }
}

// if early_stopping {
var<workgroup> stopped: u32;
// } early_stopping

// One training step for one invocation of the workgroup.
fn fused_step(local: u32) {
    let batch = current_batch(0u);
{{operations}}
}
