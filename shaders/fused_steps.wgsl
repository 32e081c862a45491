// The fused schedule's entry point: one workgroup runs `current.fused_steps`
// training steps in one dispatch. Compiled appended to train.wgsl, with the
// hole below filled by the host for each run (src/gpu/fused.rs): the calls
// of train.wgsl's `*_at` functions in the order of the step's operations,
// each over its items, a barrier where the next operation reads what this
// one wrote, every loop bound and `DispatchArgs` a constant so the driver
// can unroll them.

@compute @workgroup_size(fused_workgroup_size)
fn fused_steps(@builtin(local_invocation_index) local: u32) {
    for (var step = 0u; step < current.fused_steps; step++) {
        // Early stopping's flag, as one value for the whole workgroup (the
        // steps' barriers must be reached by all of it or none).
        if local == 0u {
            stopped = u32(training_stopped());
        }
        if workgroupUniformLoad(&stopped) != 0u {
            break;
        }
        fused_step(local);
    }
}

var<workgroup> stopped: u32;

// One training step for one invocation of the workgroup.
fn fused_step(local: u32) {
    let batch = current_batch(0u);
{{operations}}
}
