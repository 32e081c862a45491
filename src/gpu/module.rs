//! A job's WGSL module, assembled from what it uses: the job's shape as
//! constants, the parts of the concept files (shaders/*.wgsl) its features
//! need, the few functions written for its loss, metrics, activations and
//! network, and its schedule's entry points, one per kernel of its step.
//!
//! Nothing a job does not use reaches its module: a job without metrics,
//! validation or early stopping has none of their code, no kernel switches
//! on an activation, loss or metric code, and every size the kernels loop
//! to is a constant the driver can unroll and fold. The values that do not
//! change the module (the seed, Adam's constants, the epoch count, early
//! stopping's patience) stay in the `run` uniform, so runs of one shape
//! share one compiled module (`Gpu`'s pipeline cache).

use super::abi::{FUSED_ENTRY_POINT, Kernel, WORKGROUP_SIZE};
use super::fused::fused_step_body;
use super::plan::{GpuPlan, Stopping};
use super::samples::sample_partials_source;
use super::schedule::Schedule;
use super::wgsl::{
    ABI_SHADER, ACTIVATION_SHADER, ADAM_SHADER, BATCH_SHADER, DENSE_SHADER, EPOCH_SHADER,
    FUSED_TEMPLATE, LOSS_SHADER, ModuleSource, REDUCE_SHADER, Selection, fill,
};
use crate::activation::Activation;
use crate::loss::{Loss, Metric};
use crate::step::{REDUCE_BLOCK, SampleWork};
use std::collections::BTreeSet;
use std::fmt::Write;

/// The WGSL module `schedule` compiles for `plan`, and its entry points.
pub fn module_source(
    schedule: Schedule,
    plan: &GpuPlan,
    fused_workgroup_size: u32,
) -> ModuleSource {
    let selection = selection(plan);
    let mut text = format!(
        "// gpu-c2f's {} module for {}: assembled by src/gpu/module.rs from\n\
         // shaders/*.wgsl, with what this job uses and nothing else.\n\n",
        schedule.name(),
        job_summary(plan)
    );
    text.push_str(&constants(schedule, plan, fused_workgroup_size));
    let layered = plan.work == SampleWork::Layers;
    for (source, used) in [
        (ABI_SHADER, true),
        (BATCH_SHADER, true),
        (ACTIVATION_SHADER, true),
        (DENSE_SHADER, layered),
        (LOSS_SHADER, true),
        (REDUCE_SHADER, true),
        (ADAM_SHADER, true),
        (EPOCH_SHADER, true),
    ] {
        let taken = selection.take(source);
        // A file the job takes nothing from leaves not even its comments.
        if used && has_code(&taken) {
            text.push('\n');
            text.push_str(&taken);
        }
    }
    text.push_str("\n// Written for this job by src/gpu/module.rs.\n");
    text.push_str(&job_functions(plan));
    if plan.work == SampleWork::Samples {
        text.push('\n');
        text.push_str(&sample_partials_source(
            &plan.architecture,
            !plan.shape.metrics.is_empty(),
        ));
    }
    let early_stopping = plan.shape.early_stopping != Stopping::Off;
    let entry_points = match schedule {
        Schedule::Fused => {
            let body = fused_step_body(plan, fused_workgroup_size);
            let fused = fill(&selection.take(FUSED_TEMPLATE), &[("operations", &body)]);
            text.push('\n');
            text.push_str(&fused);
            vec![FUSED_ENTRY_POINT.to_string()]
        }
        Schedule::Dispatch | Schedule::Samples => {
            let names = kernel_functions(plan);
            text.push_str("\n// The entry points, one per kernel of the step.\n");
            for name in &names {
                text.push_str(&entry_point(name, early_stopping));
            }
            names
        }
    };
    ModuleSource {
        label: label(schedule, plan, fused_workgroup_size),
        text: without_blank_runs(&text),
        entry_points,
    }
}

/// `text` with no two blank lines in a row (where sections were left out).
fn without_blank_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.lines() {
        if line.trim().is_empty() && blank {
            continue;
        }
        blank = line.trim().is_empty();
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Whether `text` holds more than comments.
fn has_code(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !line.is_empty() && !line.starts_with("//")
    })
}

/// The label: schedule, architecture, batch geometry, and the features
/// that change the module.
fn label(schedule: Schedule, plan: &GpuPlan, fused_workgroup_size: u32) -> String {
    let shape = &plan.shape;
    let mut label = format!(
        "{}-{}-n{}-b{}",
        schedule.name(),
        plan.architecture.describe(),
        shape.samples,
        shape.batch_size
    );
    match schedule {
        Schedule::Fused => write!(label, "-wg{fused_workgroup_size}"),
        Schedule::Dispatch => write!(label, "-tile{}x{}", plan.tile.samples, plan.tile.units),
        Schedule::Samples => Ok(()),
    }
    .expect("writing to a String");
    label.push_str(&features_suffix(plan));
    label
}

/// `-huber-m2-v100-es` and the like: what the job adds to the seed job's
/// features (nothing for the seed job).
fn features_suffix(plan: &GpuPlan) -> String {
    let shape = &plan.shape;
    let mut suffix = String::new();
    if shape.loss != Loss::MeanSquaredError {
        let _ = write!(suffix, "-{}", shape.loss.name());
    }
    if !shape.metrics.is_empty() {
        let _ = write!(suffix, "-m{}", shape.metrics.len());
    }
    if shape.validation_samples > 0 {
        let _ = write!(suffix, "-v{}", shape.validation_samples);
    }
    match shape.early_stopping {
        Stopping::Off => {}
        Stopping::Watch => suffix.push_str("-es"),
        Stopping::KeepBest => suffix.push_str("-es-best"),
    }
    if shape.shuffle && shape.steps_per_epoch > 1 {
        suffix.push_str("-shuffled");
    }
    if plan.records() {
        suffix.push_str("-records");
    }
    suffix
}

/// One line on the job for the module's first comment.
fn job_summary(plan: &GpuPlan) -> String {
    let shape = &plan.shape;
    let layers: Vec<String> = plan
        .architecture
        .layers()
        .iter()
        .map(|l| format!("{}:{}", l.units, l.activation.name()))
        .collect();
    let metrics: Vec<&str> = shape.metrics.iter().map(|m| metric_name(*m)).collect();
    format!(
        "Dense {} from {} inputs, {}{}",
        layers.join(", "),
        shape.input_width,
        shape.loss.name(),
        if metrics.is_empty() {
            String::new()
        } else {
            format!(", metrics {}", metrics.join(", "))
        }
    )
}

/// The features (the `// if NAME` sections) and lists (`// for each NAME`)
/// the job takes from the sources.
pub fn selection(plan: &GpuPlan) -> Selection {
    let shape = &plan.shape;
    let layers = plan.architecture.layers();
    let output = layers.last().expect("one layer").activation;
    let mut features = BTreeSet::new();
    let mut on = |feature: &str| {
        features.insert(feature.to_string());
    };
    let has = |kernel: Kernel| plan.dispatches.iter().any(|d| d.kernel == kernel);
    if plan.work == SampleWork::Layers {
        on("layered");
        if plan.tile.is_wide() {
            on("wide_tiles");
        }
        if output != Activation::Linear {
            on("nonlinear_output");
        }
    }
    if has(Kernel::GatherBatch) {
        on("gather");
        on(if shape.shuffle {
            "shuffle"
        } else {
            "gather_in_order"
        });
    }
    if has(Kernel::ReducePartials) {
        on("further_levels");
    }
    if plan.records() {
        on("records");
    }
    if !shape.metrics.is_empty() {
        on("metrics");
    }
    if shape.validation_samples > 0 {
        on("validation");
    }
    if shape.early_stopping != Stopping::Off {
        on("early_stopping");
    }
    if shape.early_stopping == Stopping::KeepBest {
        on("keep_best");
    }
    // The activations' functions, and what they and the losses call.
    let mut functions: Vec<&str> = Vec::new();
    for layer in &layers {
        if layer.activation != Activation::Linear {
            functions.push(layer.activation.name());
        }
    }
    functions.push(loss_function(shape.loss, output).0);
    functions.extend(shape.metrics.iter().map(|&m| metric_function(m, output).0));
    for function in functions {
        on(function);
        match function {
            "sigmoid" | "softplus" | "silu" | "binary_crossentropy_from_logits" => {
                on("sigmoid_function")
            }
            "mean_absolute_error" | "huber" => on("sign_of"),
            _ => {}
        }
    }
    // The dense kernels' functions, one per activation their layers use.
    let activations_of = |kernel: Kernel| {
        let activations = dense_activations(plan, kernel).into_iter();
        activations.map(|a| a.name().to_string()).collect()
    };
    Selection {
        features,
        lists: vec![
            (
                "forward_activation".to_string(),
                activations_of(Kernel::DenseForward),
            ),
            (
                "backward_activation".to_string(),
                activations_of(Kernel::DenseBackward),
            ),
        ],
    }
}

/// The job's shape as WGSL constants: only those its code reads.
fn constants(schedule: Schedule, plan: &GpuPlan, fused_workgroup_size: u32) -> String {
    let shape = &plan.shape;
    let layered = plan.work == SampleWork::Layers;
    let mut groups: Vec<(&str, Vec<(&str, u32)>)> = Vec::new();
    groups.push((
        "Threads of a workgroup, and values each thread of a sum adds in order",
        vec![
            match schedule {
                Schedule::Fused => ("FUSED_WORKGROUP_SIZE", fused_workgroup_size),
                _ => ("WORKGROUP_SIZE", WORKGROUP_SIZE),
            },
            ("REDUCE_BLOCK", REDUCE_BLOCK as u32),
        ],
    ));
    if layered {
        groups.push((
            "The dense layers' register tile (samples x units)",
            vec![
                ("SAMPLE_TILE", plan.tile.samples),
                ("UNIT_TILE", plan.tile.units),
            ],
        ));
    }
    let mut batches = vec![
        ("SAMPLES", shape.samples),
        ("BATCH_SIZE", shape.batch_size),
        ("CHUNK_SIZE", shape.chunk_size),
        ("STEPS_PER_EPOCH", shape.steps_per_epoch),
    ];
    if shape.shuffle
        && plan
            .dispatches
            .iter()
            .any(|d| d.kernel == Kernel::GatherBatch)
    {
        batches.push(("HALF_BITS", shape.half_bits));
    }
    groups.push(("Training samples and their batches", batches));
    groups.push((
        "The dataset's rows (training, then validation) and each row's inputs and targets",
        vec![
            ("DATA_ROWS", shape.data_rows),
            ("INPUT_WIDTH", shape.input_width),
            ("OUTPUT_WIDTH", shape.output_width),
        ],
    ));
    let mut tensors = vec![
        ("DATA_OFFSET", shape.data_offset),
        ("INPUT_OFFSET", shape.input_offset),
        ("TARGET_OFFSET", shape.target_offset),
    ];
    if layered {
        tensors.extend([
            ("OUTPUT_OFFSET", shape.output_offset),
            ("OUTPUT_DELTA_OFFSET", shape.output_delta_offset),
            ("SAMPLE_LOSS_OFFSET", shape.sample_loss_offset),
        ]);
    }
    let metrics = shape.metrics.len() as u32;
    if metrics > 0 && layered {
        tensors.push(("SAMPLE_METRICS_OFFSET", shape.sample_metrics_offset));
    }
    groups.push(("In `tensors`: where each tensor starts", tensors));
    let rows = shape.sum_rows();
    let mut sums = vec![
        ("PARAM_COUNT", shape.param_count),
        ("LOSS_ROW", rows.loss() as u32),
        ("TOTALS_OFFSET", shape.totals_offset),
    ];
    if metrics > 0 {
        sums.extend([
            ("METRIC_COUNT", metrics),
            ("METRIC_ROW", rows.metric(0) as u32),
            ("METRIC_TOTALS_OFFSET", shape.metric_totals_offset),
        ]);
    }
    groups.push((
        "Parameters, the rows of every sum over samples (`SumRows`: the gradients, \
         the loss, the metrics) and in `reduce` their totals",
        sums,
    ));
    if plan.records() {
        groups.push((
            "Values of one step record (`StepRecord`, src/training.rs)",
            vec![("STEP_RECORD_LEN", plan.record_len() as u32)],
        ));
    }
    if shape.validation_samples > 0 {
        groups.push((
            "Validation rows: their values and scratch in `tensors`, their sums in `reduce`",
            vec![
                ("VALIDATION_SAMPLES", shape.validation_samples),
                ("VALIDATION_SERIES", 1 + metrics),
                ("VALIDATION_VALUES_OFFSET", shape.validation_values_offset),
                ("VALIDATION_SCRATCH_OFFSET", shape.validation_scratch_offset),
                (
                    "VALIDATION_PARTIALS_OFFSET",
                    shape.validation_partials_offset,
                ),
                ("WIDEST", shape.widest),
            ],
        ));
    }
    let mut out = String::new();
    for (comment, values) in groups {
        let _ = writeln!(out, "// {comment}.");
        for (name, value) in values {
            let _ = writeln!(out, "const {name}: u32 = {value}u;");
        }
    }
    out
}

/// The loss's function in loss.wgsl for an output layer of `output`, and
/// whether it takes the output's sum z (Keras's `_keras_logits` shortcut
/// for binary cross-entropy after a sigmoid) instead of the output.
fn loss_function(loss: Loss, output: Activation) -> (&'static str, bool) {
    let crossentropy = matches!(
        loss,
        Loss::BinaryCrossentropy | Loss::BinaryCrossentropyFromLogits
    );
    if crossentropy && output == Activation::Sigmoid {
        return ("binary_crossentropy_from_logits", true);
    }
    (loss.name(), false)
}

/// A metric's function in loss.wgsl, and its value's expression of
/// `output`, `z` and `y` (src/loss.rs, `Metric::value`).
fn metric_function(metric: Metric, output: Activation) -> (&'static str, String) {
    let function = match metric {
        Metric::MeanSquaredError => "mean_squared_error",
        Metric::MeanAbsoluteError => "mean_absolute_error",
        Metric::BinaryCrossentropy => loss_function(Loss::BinaryCrossentropy, output).0,
        Metric::BinaryAccuracy => return ("binary_accuracy", "binary_accuracy(output, y)".into()),
    };
    let logits = metric == Metric::BinaryCrossentropy && output == Activation::Sigmoid;
    let input = if logits { "z" } else { "output" };
    (function, format!("{function}({input}, y).loss"))
}

/// A metric's name in comments and labels.
fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::MeanSquaredError => "mse",
        Metric::MeanAbsoluteError => "mae",
        Metric::BinaryCrossentropy => "binary_crossentropy",
        Metric::BinaryAccuracy => "binary_accuracy",
    }
}

/// `activation` applied to the WGSL expression `z`.
pub fn activate(activation: Activation, z: &str) -> String {
    match activation {
        Activation::Linear => z.to_string(),
        other => format!("activate_{}({z})", other.name()),
    }
}

/// `value` times the derivative of `activation` at `z` (just `value` where
/// the activation is linear).
pub fn times_derivative(value: &str, activation: Activation, z: &str) -> String {
    match activation {
        Activation::Linear => value.to_string(),
        other => format!("({value}) * {}_derivative({z})", other.name()),
    }
}

/// The activations the dispatches of a dense `kernel` apply or
/// differentiate, each once, in the order the step first meets them.
fn dense_activations(plan: &GpuPlan, kernel: Kernel) -> Vec<Activation> {
    let mut activations = Vec::new();
    for dispatch in plan.dispatches.iter().filter(|d| d.kernel == kernel) {
        if !activations.contains(&dispatch.activation) {
            activations.push(dispatch.activation);
        }
    }
    activations
}

/// The functions written for the job: the dense kernels' stores, the
/// output error of its loss, its metrics' values, and its validation
/// forward pass.
fn job_functions(plan: &GpuPlan) -> String {
    let mut out = String::new();
    let layers = plan.architecture.layers();
    let output = layers.last().expect("one layer").activation;
    for activation in dense_activations(plan, Kernel::DenseForward) {
        out.push_str(&store_forward(activation));
    }
    for activation in dense_activations(plan, Kernel::DenseBackward) {
        out.push_str(&store_backward(activation));
    }
    let (function, logits) = loss_function(plan.shape.loss, output);
    let (input, delta) = match logits {
        true => ("z", "terms.derivative / f32(total)".to_string()),
        false => (
            "output",
            times_derivative("terms.derivative / f32(total)", output, "z"),
        ),
    };
    let _ = write!(
        out,
        "\n// One output unit's loss ({}) and dL/dz after its {} activation.\n\
         fn output_error_of(output: f32, z: f32, y: f32, total: u32) -> OutputError {{\n    \
         let terms = {function}({input}, y);\n    \
         return OutputError(terms.loss, {delta});\n}}\n",
        plan.shape.loss.name(),
        output.name()
    );
    if !plan.shape.metrics.is_empty() {
        let values: Vec<String> = plan
            .shape
            .metrics
            .iter()
            .map(|&m| metric_function(m, output).1)
            .collect();
        let names: Vec<&str> = plan.shape.metrics.iter().map(|&m| metric_name(m)).collect();
        let _ = write!(
            out,
            "\n// One output unit's value of each metric: {}.\n\
             fn metric_values(output: f32, z: f32, y: f32) -> array<f32, METRIC_COUNT> {{\n    \
             return array<f32, METRIC_COUNT>({});\n}}\n",
            names.join(", "),
            values.join(", ")
        );
    }
    if plan.shape.validation_samples > 0 {
        out.push_str(&forward_row(plan));
    }
    out
}

/// How the forward kernel of a layer of `activation` stores a sum.
fn store_forward(activation: Activation) -> String {
    let keep_sum = match activation {
        Activation::Linear => String::new(),
        _ => "    tensors[args.pre_offset + element] = sum;\n".to_string(),
    };
    format!(
        "\n// A {name} layer's sum: its output{kept}.\n\
         fn store_forward_{name}(element: u32, sum: f32, args: DispatchArgs) {{\n\
         {keep_sum}    tensors[args.out_offset + element] = {value};\n}}\n",
        name = activation.name(),
        kept = if keep_sum.is_empty() {
            ""
        } else {
            ", and the sum itself for the backward pass"
        },
        value = activate(activation, "sum"),
    )
}

/// How the backward kernel stores an error passed back into a layer of
/// `activation`, whose sum z its element holds until then.
fn store_backward(activation: Activation) -> String {
    format!(
        "\n// An error passed back into a {name} layer's sums.\n\
         fn store_backward_{name}(element: u32, sum: f32, args: DispatchArgs) {{\n    \
         let index = args.out_offset + element;\n    \
         tensors[index] = {value};\n}}\n",
        name = activation.name(),
        value = times_derivative("sum", activation, "tensors[index]"),
    )
}

/// The validation forward pass of one row through the network, every
/// width and offset a constant (epoch.wgsl's `row_values` calls it);
/// returns where the output's activations are.
fn forward_row(plan: &GpuPlan) -> String {
    let mut out = String::from(
        "\n// Dataset row `row` through the network, in the scratch rows from\n\
         // `scratch`; returns where its outputs are.\n\
         fn forward_row(row: u32, scratch: u32) -> u32 {\n    \
         for (var k = 0u; k < INPUT_WIDTH; k++) {\n        \
         tensors[scratch + k] = tensors[DATA_OFFSET + row * INPUT_WIDTH + k];\n    }\n    \
         let sums = scratch + 2u * WIDEST;\n",
    );
    let rows = ["scratch", "scratch + WIDEST"];
    let layers = plan.architecture.layers();
    for (l, layer) in layers.iter().enumerate() {
        let (inputs, outputs) = (rows[l % 2], rows[(l + 1) % 2]);
        let _ = write!(
            out,
            "    // Dense layer {l}: {} -> {}, {}\n    \
             for (var j = 0u; j < {units}u; j++) {{\n        \
             var sum = 0.0;\n        \
             for (var i = 0u; i < {}u; i++) {{\n            \
             sum += tensors[{inputs} + i] * params[{}u + i * {units}u + j];\n        }}\n        \
             let z = sum + params[{}u + j];\n        \
             tensors[sums + j] = z;\n        \
             tensors[{outputs} + j] = {};\n    }}\n",
            layer.inputs,
            layer.units,
            layer.activation.name(),
            layer.inputs,
            layer.kernel_offset,
            layer.bias_offset,
            activate(layer.activation, "z"),
            units = layer.units,
        );
    }
    let _ = write!(out, "    return {};\n}}\n", rows[layers.len() % 2]);
    out
}

/// The kernels' functions (without `_at`) in the order the step first runs
/// them: the dispatch schedule's entry points.
pub fn kernel_functions(plan: &GpuPlan) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for dispatch in &plan.dispatches {
        let name = dispatch.function();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The entry point of kernel `name` for the dispatch and samples
/// schedules: one thread per item of `name_at`, the grid folded into 2-D
/// when it is larger than one dimension allows.
fn entry_point(name: &str, early_stopping: bool) -> String {
    let stopped = match early_stopping {
        true => "    if training_stopped() {\n        return;\n    }\n",
        false => "",
    };
    format!(
        "\n@compute @workgroup_size(WORKGROUP_SIZE)\n\
         fn {name}(\n    \
         @builtin(workgroup_id) group: vec3<u32>,\n    \
         @builtin(num_workgroups) groups: vec3<u32>,\n    \
         @builtin(local_invocation_index) local: u32,\n) {{\n\
         {stopped}    let args = dispatch_args[current.dispatch];\n    \
         let index = (group.y * groups.x + group.x) * WORKGROUP_SIZE + local;\n    \
         {name}_at(index, args, current_batch(args.chunk_first));\n}}\n"
    )
}
