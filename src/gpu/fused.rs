//! The fused schedule's step, written out for one run: the kernels' `*_at`
//! functions called in the order of the plan's dispatches, with every loop
//! bound and `DispatchArgs` a constant. Knowing them at compile time lets
//! the driver unroll the loops and fold the arguments (shaders/fused.wgsl
//! has the entry point that loops over the steps).

use super::abi::Kernel;
use super::plan::GpuPlan;
use std::fmt::Write;

/// The body of `fused_step(local)`: one training step for one invocation
/// of a `workgroup_size`-thread workgroup.
pub fn fused_step_body(plan: &GpuPlan, workgroup_size: u32) -> String {
    let mut out = String::new();
    for (position, dispatch) in plan.dispatches.iter().enumerate() {
        let call = format!(
            "{}_at(index, {}, batch)",
            dispatch.function(),
            dispatch.args.wgsl_literal()
        );
        let items = format!(
            "for (var index = local; index < {threads}u; index += {workgroup_size}u) {{\n        {call};\n    }}",
            threads = dispatch.threads,
        );
        // The epoch-end kernels' items run only at an epoch's end (the
        // barrier after them stays outside the test, reached by all).
        let items = match dispatch.kernel.at_epoch_ends_only() {
            true => format!(
                "if ends_epoch(batch) {{\n        {}\n    }}",
                items.replace('\n', "\n    ")
            ),
            false => items,
        };
        let _ = writeln!(out, "    // {:?}\n    {items}", dispatch.op);
        // No barrier between phases that touch different memory: the
        // layers' gradient sums (same inputs, different rows), and Adam's
        // update and the step's bookkeeping (which reads only the totals;
        // `batch` was read once, before the step, so moving the step
        // counter cannot race with Adam).
        let next = plan.dispatches.get(position + 1).map(|d| d.kernel);
        let independent = matches!(
            (dispatch.kernel, next),
            (Kernel::GradientPartials, Some(Kernel::GradientPartials))
                | (Kernel::AdamStep, Some(Kernel::FinishStep))
        );
        if !independent {
            out.push_str("    storageBarrier();\n");
        }
    }
    out.truncate(out.trim_end().len());
    out
}
