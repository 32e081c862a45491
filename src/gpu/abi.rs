//! What the host and the kernels share (shaders/abi.wgsl): the structs of
//! the uniform and storage buffers (the same names on both sides, their
//! layout tested against naga's reflection of the shader below), the
//! kernels, and the constants both sides must agree on.

use bytemuck::{Pod, Zeroable};

/// Bytes of one f32 (and of one u32 word) in every buffer.
pub const F32_BYTES: u64 = std::mem::size_of::<f32>() as u64;

/// Bytes of a buffer of `len` f32 (or u32) values: never 0, since wgpu
/// refuses to bind an empty buffer. The memory plan's limit checks and the
/// allocations both use it.
pub fn buffer_bytes(len: u64) -> u64 {
    len.max(1) * F32_BYTES
}

/// Threads per workgroup of the dispatch and samples schedules
/// (`WORKGROUP_SIZE` in their modules). 64 fills the SIMD width of common GPUs
/// (32 or 64 lanes) and eight 8-wide rows on llvmpipe.
pub const WORKGROUP_SIZE: u32 = 64;

/// Storage buffers every training kernel's bind group holds (params,
/// tensors, reduce, history, step sizes, the `DispatchArgs` table): the one limit
/// above wgpu's downlevel defaults (4) that the kernels need besides buffer
/// sizes. WebGPU's default limit is 8, so every browser has them; fitting in
/// 4 (GLES 3.1's minimum, WebGPU's compatibility mode) would mean merging the
/// two read-only tables into one buffer and the history into another, which
/// every kernel's addressing would follow: not done.
pub const STORAGE_BUFFERS_PER_STAGE: u32 = 6;

/// `RunArgs` in shaders/abi.wgsl: the values of a run that do not change
/// its shape (a run that differs only in these reuses the compiled module).
/// The shape itself is [`super::plan::Shape`], written into the module as
/// constants.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Pod, Zeroable)]
pub struct RunArgs {
    pub seed_low: u32,
    pub seed_high: u32,
    pub one_minus_beta_1: f32,
    pub one_minus_beta_2: f32,
    pub epsilon: f32,
    /// Where in `history.losses` the ring of step records starts, and its
    /// slots (0: no records): step t is recorded in slot (t - 1) mod slots.
    pub record_offset: u32,
    pub record_slots: u32,
    pub patience: u32,
    pub min_delta: f32,
    pub epochs: u32,
    /// Where each series of the history starts in `history.losses`.
    pub val_loss_offset: u32,
    pub metric_offset: u32,
    pub val_metric_offset: u32,
    pub _pad: [u32; 3],
}

/// `DispatchArgs` in shaders/abi.wgsl: what one dispatch of a step's list works
/// on. Which fields mean something depends on the kernel (see
/// `GpuPlan::lower`); the rest are 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct DispatchArgs {
    pub inputs: u32,
    pub units: u32,
    pub kernel_offset: u32,
    pub bias_offset: u32,
    pub in_offset: u32,
    pub out_offset: u32,
    pub rows: u32,
    pub in_len: u32,
    pub out_len: u32,
    pub src_offset: u32,
    pub dst_offset: u32,
    pub chunk_first: u32,
    pub pre_offset: u32,
}

impl DispatchArgs {
    /// The WGSL constructor of these arguments, fields in declaration order
    /// (`DispatchArgs(3u, 1u, ...)`): the fused schedule writes them into
    /// its code as constants.
    pub fn wgsl_literal(&self) -> String {
        let words: &[u32] = bytemuck::cast_slice(std::slice::from_ref(self));
        let fields: Vec<String> = words.iter().map(|w| format!("{w}u")).collect();
        format!("DispatchArgs({})", fields.join(", "))
    }
}

/// `Current` in shaders/abi.wgsl, one per [`CURRENT_STRIDE`] bytes, bound with a
/// dynamic offset per dispatch.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Pod, Zeroable)]
pub struct Current {
    /// The index of the dispatch's `DispatchArgs`.
    pub dispatch: u32,
    /// Training steps a fused dispatch runs.
    pub fused_steps: u32,
}

/// Byte stride between the `Current` records, the alignment every adapter
/// accepts for dynamic uniform offsets.
pub const CURRENT_STRIDE: u64 = 256;

/// The fixed fields of `History` in shaders/abi.wgsl, before its losses.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct HistoryHeader {
    /// Training steps finished.
    pub step: u32,
    /// The first step with a non-finite loss or weight ([`NO_BAD_STEP`]: none).
    pub first_bad_step: u32,
    /// The epoch's size-weighted batch losses so far.
    pub epoch_total: f32,
    /// Early stopping: the best monitored value, its 1-based epoch (0:
    /// none), epochs since, and the 1-based epoch it stopped after (0: none).
    pub best: f32,
    pub wait: u32,
    pub best_epoch: u32,
    pub stopped_epoch: u32,
    pub _pad: u32,
}

impl HistoryHeader {
    /// Before the first step: nothing done, nothing flagged.
    pub const START: HistoryHeader = HistoryHeader {
        step: 0,
        first_bad_step: NO_BAD_STEP,
        epoch_total: 0.0,
        best: 0.0,
        wait: 0,
        best_epoch: 0,
        stopped_epoch: 0,
        _pad: 0,
    };
}

/// 32-bit words before the losses in `History`.
pub const HISTORY_HEADER_WORDS: u64 = std::mem::size_of::<HistoryHeader>() as u64 / F32_BYTES;

/// `first_bad_step` while every loss and weight has been finite.
pub const NO_BAD_STEP: u32 = u32::MAX;

/// The kernels a step's dispatches run, one per operation kind of
/// [`crate::step::Op`] (the loss sum runs `gradient_partials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    GatherBatch,
    DenseForward,
    OutputError,
    DenseBackward,
    GradientPartials,
    /// The samples schedule's generated kernel (src/gpu/samples.rs).
    SamplePartials,
    ReducePartials,
    AdamStep,
    /// After an epoch's last update, each validation row's loss, then
    /// each block's sum.
    ValidationLosses,
    ValidationPartials,
    FinishStep,
    /// After a step that ended the best epoch, its weights kept.
    KeepBest,
}

impl Kernel {
    pub const ALL: [Kernel; 12] = [
        Kernel::GatherBatch,
        Kernel::DenseForward,
        Kernel::OutputError,
        Kernel::DenseBackward,
        Kernel::GradientPartials,
        Kernel::SamplePartials,
        Kernel::ReducePartials,
        Kernel::AdamStep,
        Kernel::ValidationLosses,
        Kernel::ValidationPartials,
        Kernel::FinishStep,
        Kernel::KeepBest,
    ];

    /// Whether the kernel works only after an epoch's last step (its
    /// functions return at once after any other): the dispatch and samples
    /// schedules dispatch it only then.
    pub fn at_epoch_ends_only(self) -> bool {
        matches!(
            self,
            Kernel::ValidationLosses | Kernel::ValidationPartials | Kernel::KeepBest
        )
    }

    /// The kernel's name: its function is `<name>_at` (the dense kernels'
    /// `<name>_<activation>_at`), and the dispatch schedule's entry point
    /// that calls it is named like the function, without `_at`.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::GatherBatch => "gather_batch",
            Kernel::DenseForward => "dense_forward",
            Kernel::OutputError => "output_error",
            Kernel::DenseBackward => "dense_backward",
            Kernel::GradientPartials => "gradient_partials",
            Kernel::SamplePartials => "sample_partials",
            Kernel::ReducePartials => "reduce_partials",
            Kernel::AdamStep => "adam_step",
            Kernel::ValidationLosses => "validation_losses",
            Kernel::ValidationPartials => "validation_partials",
            Kernel::FinishStep => "finish_step",
            Kernel::KeepBest => "keep_best",
        }
    }
}

/// The entry point of the fused schedule.
pub const FUSED_ENTRY_POINT: &str = "fused_steps";

#[cfg(test)]
mod tests {
    //! The Rust mirrors against naga's reflection of abi.wgsl: every field
    //! the WGSL declares at the same byte offset under the same name, and a
    //! Rust struct at least as large as the WGSL one. A field added on one
    //! side only, or moved, fails here before it can feed a kernel the wrong
    //! number.

    use super::*;
    use std::mem::{offset_of, size_of};
    use wgpu::naga;

    /// (name, offset) of every member of the WGSL struct `name`, and its size.
    fn wgsl_struct(name: &str) -> (Vec<(String, u32)>, u32) {
        let module = naga::front::wgsl::parse_str(super::super::wgsl::ABI_SHADER).expect("parses");
        let ty = module
            .types
            .iter()
            .find(|(_, ty)| ty.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("abi.wgsl has no struct {name}"))
            .1;
        match &ty.inner {
            naga::TypeInner::Struct { members, span } => (
                members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                    .collect(),
                *span,
            ),
            other => panic!("{name} is not a struct: {other:?}"),
        }
    }

    /// The WGSL members must be a prefix of the Rust fields (Rust may add
    /// trailing padding), in the same order, at the same offsets.
    fn assert_same_layout(name: &str, rust: &[(&str, usize)], rust_size: usize) {
        let (wgsl, span) = wgsl_struct(name);
        for (index, (wgsl_name, wgsl_offset)) in wgsl.iter().enumerate() {
            // WGSL padding members are `_pad1`...; Rust pads with one array,
            // which the size check below covers.
            if wgsl_name.starts_with('_') {
                continue;
            }
            let Some((rust_name, rust_offset)) = rust.get(index) else {
                panic!("{name}.{wgsl_name} has no Rust field");
            };
            assert_eq!(
                (wgsl_name.as_str(), *wgsl_offset as usize),
                (*rust_name, *rust_offset),
                "{name} field {index}: WGSL vs Rust (name, byte offset)"
            );
        }
        assert!(
            rust_size >= span as usize,
            "{name}: the Rust struct ({rust_size} bytes) is smaller than the WGSL one ({span})"
        );
    }

    macro_rules! fields {
        ($ty:ty: $($field:ident),* $(,)?) => {
            [$((stringify!($field), offset_of!($ty, $field))),*]
        };
    }

    #[test]
    fn run_args_match_the_wgsl_struct() {
        let rust = fields!(RunArgs: seed_low, seed_high, one_minus_beta_1, one_minus_beta_2,
            epsilon, record_offset, record_slots, patience, min_delta, epochs,
            val_loss_offset, metric_offset, val_metric_offset);
        assert_same_layout("RunArgs", &rust, size_of::<RunArgs>());
    }

    #[test]
    fn dispatch_args_match_the_wgsl_struct_and_its_literal() {
        let rust = fields!(DispatchArgs: inputs, units, kernel_offset, bias_offset, in_offset,
            out_offset, rows, in_len, out_len, src_offset, dst_offset, chunk_first, pre_offset);
        assert_same_layout("DispatchArgs", &rust, size_of::<DispatchArgs>());
        let (_, span) = wgsl_struct("DispatchArgs");
        assert_eq!(size_of::<DispatchArgs>(), span as usize, "the array stride");
        let args = DispatchArgs {
            inputs: 3,
            chunk_first: 256,
            ..Default::default()
        };
        assert_eq!(
            args.wgsl_literal(),
            "DispatchArgs(3u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u, 256u, 0u)"
        );
    }

    #[test]
    fn current_matches_the_wgsl_struct() {
        let rust = fields!(Current: dispatch, fused_steps);
        assert_same_layout("Current", &rust, size_of::<Current>());
        // A uniform buffer's binding is a multiple of 16 bytes.
        assert_eq!(size_of::<RunArgs>() % 16, 0);
    }

    #[test]
    fn the_history_header_matches_the_wgsl_struct() {
        // `History` ends in the runtime-sized `losses`, right after the header.
        let rust = fields!(HistoryHeader: step, first_bad_step, epoch_total, best, wait, best_epoch,
            stopped_epoch);
        let (wgsl, _) = wgsl_struct("History");
        let named: Vec<(&str, usize)> = wgsl
            .iter()
            .filter(|(name, _)| !name.starts_with('_') && name != "losses")
            .map(|(name, offset)| (name.as_str(), *offset as usize))
            .collect();
        assert_eq!(
            named, rust,
            "History's header: WGSL vs Rust (name, byte offset)"
        );
        let losses = wgsl.iter().find(|(name, _)| name == "losses").unwrap();
        assert_eq!(losses.1 as usize, size_of::<HistoryHeader>());
    }

    #[test]
    fn a_moved_field_would_be_caught() {
        // The check itself: the same fields in another order must fail.
        let result = std::panic::catch_unwind(|| {
            let rust = [("fused_steps", 0), ("dispatch", 4)];
            assert_same_layout("Current", &rust, 8);
        });
        assert!(result.is_err());
    }
}
