//! The Rust mirrors of train.wgsl's structs (src/gpu/buffers.rs) against
//! naga's reflection of the shader: every field the WGSL declares at the
//! same byte offset under the same name, and a Rust struct at least as large
//! as the WGSL one. A field added on one side only, or moved, fails here
//! before it can feed a kernel the wrong number.

use gpu_c2f::gpu::buffers::{CurrentRecord, HistoryHeader, RunUniform, StepUniform};
use std::mem::{offset_of, size_of};
use wgpu::naga;

/// (name, offset) of every member of the WGSL struct `name`, and its size.
fn wgsl_struct(name: &str) -> (Vec<(String, u32)>, u32) {
    let module =
        naga::front::wgsl::parse_str(gpu_c2f::gpu::TRAIN_SHADER).expect("train.wgsl parses");
    let ty = module
        .types
        .iter()
        .find(|(_, ty)| ty.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("train.wgsl has no struct {name}"))
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

/// Checks the WGSL struct `name` against the Rust one's (name, offset)
/// fields: the WGSL members must be a prefix of the Rust fields (Rust may
/// add trailing padding), in the same order, at the same offsets.
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
fn run_matches_its_wgsl_struct() {
    let rust = fields!(RunUniform:
        samples, batch_size, chunk_size, steps_per_epoch, shuffle, seed_low, seed_high,
        half_bits, param_count, data_offset, input_offset, target_offset, output_offset,
        output_delta_offset, residual_offset, totals_offset, one_minus_beta_1,
        one_minus_beta_2, epsilon, record_every, record_offset, record_count,
    );
    assert_same_layout("Run", &rust, size_of::<RunUniform>());
    // A uniform buffer's binding is a multiple of 16 bytes.
    assert_eq!(size_of::<RunUniform>() % 16, 0);
}

#[test]
fn step_matches_its_wgsl_struct() {
    let rust = fields!(StepUniform:
        inputs, units, kernel_offset, bias_offset, in_offset, out_offset, rows, in_len,
        out_len, src_offset, dst_offset, chunk_first,
    );
    assert_same_layout("Step", &rust, size_of::<StepUniform>());
    // `steps` is an array of Step: its stride is the WGSL span.
    assert_eq!(size_of::<StepUniform>(), wgsl_struct("Step").1 as usize);
}

#[test]
fn current_matches_its_wgsl_struct() {
    let rust = fields!(CurrentRecord: step, steps);
    assert_same_layout("Current", &rust, size_of::<CurrentRecord>());
}

#[test]
fn the_history_header_matches_its_wgsl_struct() {
    // `History` ends in the runtime-sized `losses`, right after the header.
    let rust = fields!(HistoryHeader: step, first_bad_step, epoch_total);
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
        let rust = [("steps", 0), ("step", 4)];
        assert_same_layout("Current", &rust, 8);
    });
    assert!(result.is_err());
}
