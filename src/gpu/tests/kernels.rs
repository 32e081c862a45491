//! One kernel at a time: the first training step's dispatch list is run up
//! to and including one WGSL kernel, on small buffers, and that kernel's
//! output is held to the CPU computing the same thing from the kernel's own
//! inputs as the GPU left them (so an error is pinned to one kernel, never
//! carried in from an earlier one).
//!
//! Every comparison allows what WGSL lets a real GPU's arithmetic differ by
//! (src/shadow/ has the reasoning): for a sum of n terms added in order,
//! the device is within gamma(2n) * sum(|term|) of the exact sum (each
//! rounding to either neighbour, any `a * b + c` fused) and the CPU within
//! gamma(n), gamma(n) = n u / (1 - n u), u = 2^-24; Adam's update is held to
//! `shadow::adam_bounds`. On the software drivers CI uses they agree bit for
//! bit. A failure prints the first value outside its bound: index, both
//! values.

use super::common;

use gpu_c2f::batching::Batching;
use gpu_c2f::cpu;
use gpu_c2f::cpu::{dense_forward, padded_samples};
use gpu_c2f::gpu::abi::{DispatchArgs, Kernel, WORKGROUP_SIZE};
use gpu_c2f::gpu::buffers::RunBuffers;
use gpu_c2f::gpu::module::module_source;
use gpu_c2f::gpu::pipelines::Pipelines;
use gpu_c2f::gpu::plan::{GpuPlan, Tile};
use gpu_c2f::gpu::record::{current_records, dispatch_offset};
use gpu_c2f::gpu::schedule::{FusedSplit, Schedule};
use gpu_c2f::model::DenseLayout;
use gpu_c2f::optimizer::adam_update;
use gpu_c2f::rounding::Bounded;
use gpu_c2f::shadow::{adam_bounds, apart};
use gpu_c2f::step::REDUCE_BLOCK;
use gpu_c2f::{Activation, Architecture, Dataset, Model, TrainConfig};

/// A run's plan, pipelines and buffers, set up as the trainer does.
struct KernelRun {
    plan: GpuPlan,
    pipelines: Pipelines,
    buffers: RunBuffers,
}

impl KernelRun {
    /// `schedule`'s per-sample work, its dense layers in `tile`.
    fn new(model: &Model, config: &TrainConfig, schedule: Schedule, tile: Tile) -> Self {
        let gpu = common::gpu();
        let (sample_work, _) = schedule.work(model);
        let plan = GpuPlan::new(model, config, sample_work, tile, None).expect("a plan");
        let pipelines = pollster::block_on(Pipelines::new(
            &gpu.device,
            &module_source(schedule, &plan, 8),
        ))
        .expect("pipelines");
        let records = current_records(&plan, &FusedSplit::new(&plan, 8, None, None));
        let buffers = RunBuffers::new(gpu, &pipelines, &plan, model, config, &records);
        Self {
            plan,
            pipelines,
            buffers,
        }
    }

    /// Positions in the dispatch list of every dispatch of `kernel`.
    fn positions(&self, kernel: Kernel) -> Vec<usize> {
        let list = &self.plan.dispatches;
        (0..list.len())
            .filter(|&i| list[i].kernel == kernel)
            .collect()
    }

    /// The arguments of the dispatch at `position`.
    fn args(&self, position: usize) -> DispatchArgs {
        self.plan.dispatches[position].args
    }

    /// Runs training step `step`'s dispatches up to and including position
    /// `last` of the list (the step counter is set first, so the kernels
    /// work on that step's batch).
    fn run_through(&self, step: u32, last: usize) {
        self.run_dispatches(step, 0..=last);
    }

    /// Runs the dispatches at `positions` of training step `step`, on the
    /// buffers as they are.
    fn run_dispatches(&self, step: u32, positions: std::ops::RangeInclusive<usize>) {
        let gpu = common::gpu();
        gpu.queue
            .write_buffer(&self.buffers.history, 0, bytemuck::bytes_of(&step));
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("kernel test"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("kernel test pass"),
                timestamp_writes: None,
            });
            pass.set_bind_group(0, &self.buffers.train_bind_group, &[]);
            for index in positions {
                let dispatch = &self.plan.dispatches[index];
                let pipeline = self.pipelines.index_of(&dispatch.function());
                pass.set_pipeline(self.pipelines.pipeline(pipeline));
                let offset = dispatch_offset(index);
                pass.set_bind_group(1, &self.buffers.current_bind_group, &[offset]);
                pass.dispatch_workgroups(dispatch.threads.div_ceil(WORKGROUP_SIZE).max(1), 1, 1);
            }
        }
        let submission = gpu.submit(encoder.finish());
        pollster::block_on(gpu.wait(submission)).expect("the dispatches run");
    }

    /// The whole of `buffer`, as f32s.
    fn read(&self, buffer: &wgpu::Buffer) -> Vec<f32> {
        let gpu = common::gpu();
        let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("kernel test readback"),
            size: buffer.size(),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, buffer.size());
        let submission = gpu.submit(encoder.finish());
        let bytes =
            pollster::block_on(gpu.read_mapped(&staging, submission, &mut 0)).expect("readback");
        bytemuck::pod_collect_to_vec(&bytes)
    }
}

/// Fails at the first `gpu[i]` farther than `bound[i]` from `cpu[i]`.
fn assert_within(what: &str, gpu: &[f32], cpu: &[f32], bound: &[f32]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    for (index, ((&g, &c), &b)) in gpu.iter().zip(cpu).zip(bound).enumerate() {
        assert!(
            (g - c).abs() <= b,
            "{what}: first mismatch at index {index}: GPU {g:e}, CPU {c:e} (allowed {b:e})"
        );
    }
}

/// The bound for a sum of `terms.len()` terms added in order.
fn sum_bound(terms: impl Iterator<Item = f32> + Clone) -> f32 {
    apart(terms.clone().count()) as f32 * terms.map(f32::abs).sum::<f32>()
}

fn job(samples: usize, batch_size: Option<usize>, seed: u64) -> TrainConfig {
    TrainConfig {
        data: common::noisy_formula(samples),
        epochs: 4,
        learning_rate: 0.01,
        batch_size,
        shuffle_seed: seed,
        shuffle: true,
        loss: Default::default(),
        validation_split: 0.0,
        early_stopping: None,
        metrics: Vec::new(),
        adam_state: None,
    }
}

/// glorot_uniform weights and, unlike Keras's zeros, biases of either sign,
/// so a kernel that drops or doubles a bias shows.
fn model(hidden: &[usize]) -> Model {
    let initial = Model::glorot_uniform(Architecture::new(hidden).unwrap(), 7);
    let mut params = initial.params().to_vec();
    for layer in initial.architecture().layers() {
        for j in 0..layer.units {
            params[layer.bias_offset + j] = 0.5 - (j % 3) as f32 * 0.4;
        }
    }
    Model::from_params(initial.architecture().clone(), params).unwrap()
}

/// `rows` x `columns` sample-major values (`[s * columns + c]`) from
/// `offset`, as the CPU reference's feature-major rows padded to lanes.
fn feature_major(tensors: &[f32], offset: u32, rows: usize, columns: usize) -> Vec<f32> {
    let stride = padded_samples(rows);
    let mut out = vec![0.0; stride * columns];
    for s in 0..rows {
        for c in 0..columns {
            out[c * stride + s] = tensors[offset as usize + s * columns + c];
        }
    }
    out
}

#[test]
fn dense_forward_at_every_tile_and_width() {
    let tiles = [
        Tile::SINGLE,
        Tile {
            samples: 4,
            units: 4,
        },
        Tile {
            samples: 8,
            units: 8,
        },
    ];
    let samples = 37; // not a multiple of any tile side
    for tile in tiles {
        for width in [1, 3, 5, 9, 64] {
            let model = model(&[width, width]);
            let run = KernelRun::new(&model, &job(samples, None, 1), Schedule::Dispatch, tile);
            let forwards = run.positions(Kernel::DenseForward);
            run.run_through(0, *forwards.last().unwrap());
            let tensors = run.read(&run.buffers.tensors);
            let layers = model.architecture().layers();
            for (layer, &position) in layers.iter().zip(&forwards) {
                let args = run.args(position);
                check_dense_forward(&model, layer, &tensors, args.in_offset, args.out_offset);
            }
            eprintln!("dense_forward, {tile:?}, width {width}: agrees");
        }
    }
}

/// One layer's GPU output against `model::dense_forward` on the GPU's input.
fn check_dense_forward(
    model: &Model,
    layer: &DenseLayout,
    tensors: &[f32],
    input: u32,
    output: u32,
) {
    let samples = 37;
    let stride = padded_samples(samples);
    let inputs = feature_major(tensors, input, samples, layer.inputs);
    let mut cpu = vec![0.0; stride * layer.units];
    let mut sums = vec![0.0; stride * layer.units];
    dense_forward(model.params(), layer, stride, &inputs, &mut cpu, &mut sums);
    let params = model.params();
    let (mut gpu_values, mut cpu_values, mut bounds) = (vec![], vec![], vec![]);
    for s in 0..samples {
        for j in 0..layer.units {
            gpu_values.push(tensors[output as usize + s * layer.units + j]);
            cpu_values.push(cpu[j * stride + s]);
            let terms = (0..layer.inputs)
                .map(|i| inputs[i * stride + s] * params[layer.kernel_offset + i * layer.units + j])
                .chain(std::iter::once(params[layer.bias_offset + j]));
            bounds.push(sum_bound(terms));
        }
    }
    let what = format!("dense_forward {} -> {}", layer.inputs, layer.units);
    assert_within(&what, &gpu_values, &cpu_values, &bounds);
}

/// Every activation's WGSL twin against the CPU reference's, forward and
/// backward, at values around every kink and far into both tails: a 1-1-1
/// network whose hidden layer has the activation and weights 1 and 0, so
/// its sums z are the inputs themselves and the error passed back to it is
/// the output error times the derivative at z. The bound is the
/// activation's own rounding model (`rounding::Bounded`: WGSL's accuracy for
/// exp, log and tanh, the CPU's 1 ULP); relu and leaky_relu, which only
/// compare and multiply, must agree bit for bit anywhere.
#[test]
fn activations_agree_with_the_cpu_forward_and_backward() {
    let mut inputs = vec![
        0.0f32, -0.0, 1e-30, -1e-30, 1e-6, -1e-6, 30.0, -30.0, 90.0, -90.0,
    ];
    inputs.extend((-48..=48).map(|k| k as f32 * 0.125));
    let samples = inputs.len();
    let data = Dataset::new(
        inputs.clone(),
        inputs.iter().map(|x| 0.5 * x + 1.0).collect(),
    );
    let config = TrainConfig {
        data,
        ..job(samples, None, 1)
    };
    for activation in Activation::ALL {
        let architecture = Architecture::new(&[1])
            .unwrap()
            .with_activations(vec![activation, Activation::Linear])
            .unwrap();
        let model = Model::from_params(architecture, vec![1.0, 0.0, 1.0, 0.0]).unwrap();
        let run = KernelRun::new(&model, &config, Schedule::Dispatch, Tile::SINGLE);
        let backward = run.positions(Kernel::DenseBackward)[0];
        let forward = run.args(run.positions(Kernel::DenseForward)[0]);
        run.run_through(0, backward);
        let tensors = run.read(&run.buffers.tensors);
        let args = run.args(backward);
        let (mut gpu, mut cpu, mut bounds) = (vec![], vec![], vec![]);
        for (s, &z) in inputs.iter().enumerate() {
            gpu.push(tensors[forward.out_offset as usize + s]);
            cpu.push(activation.apply(z));
            bounds.push(activation.apply(Bounded::exact(z as f64)).apart as f32);
            // The output error the GPU passed back, times the derivative.
            let error = tensors[args.in_offset as usize + s];
            gpu.push(tensors[args.out_offset as usize + s]);
            cpu.push(error * activation.derivative(z));
            let derivative = activation.derivative(Bounded::exact(z as f64));
            bounds.push((derivative * Bounded::exact(error as f64)).apart as f32);
        }
        let exact = matches!(
            activation,
            Activation::Linear | Activation::Relu | Activation::LeakyRelu
        );
        if exact {
            bounds.iter_mut().for_each(|b| *b = 0.0);
        }
        assert_within(&format!("{activation}"), &gpu, &cpu, &bounds);
        let worst = gpu
            .iter()
            .zip(&cpu)
            .map(|(g, c)| (g - c).abs())
            .fold(0.0f32, f32::max);
        eprintln!("{activation}: forward and backward agree (largest difference {worst:e})");
    }
}

/// `output_error` alone, from outputs, sums and targets the test writes
/// (not from the GPU's forward pass, so a wrong output error cannot hide
/// behind a wrong forward one): each sample's loss, the error fed back and
/// each metric's value, against `cpu::output_error` on the same values,
/// for every loss with a linear and a nonlinear output layer and the
/// sigmoid shortcut, within the rounding model of each formula
/// (`Loss::output_error` and `Metric::value` on `Bounded` values).
#[test]
fn output_error_is_the_cpus_from_inputs_the_test_writes() {
    use gpu_c2f::training::NamedMetric;
    use gpu_c2f::{Loss, Metric};
    let samples = 40;
    // Sums from -6 to 6, past every kink and clip; targets in [0, 1], as
    // the cross-entropies need, a few exactly 0 or 1.
    let z: Vec<f32> = (0..samples).map(|s| s as f32 * 0.3 - 6.0 + 0.01).collect();
    let y: Vec<f32> = (0..samples).map(|s| ((s * 7) % 11) as f32 / 10.0).collect();
    let metrics = ["mse", "mae", "bce", "accuracy"].map(|m| NamedMetric::from_name(m).unwrap());
    for loss in Loss::ALL {
        for output in [Activation::Linear, Activation::Sigmoid, Activation::Tanh] {
            let architecture = Architecture::new(&[])
                .unwrap()
                .with_activations(vec![output])
                .unwrap();
            let model = Model::from_params(architecture, vec![1.0, 0.0]).unwrap();
            let config = TrainConfig {
                data: Dataset::new(z.clone(), y.clone()),
                loss,
                metrics: metrics.to_vec(),
                ..job(samples, None, 1)
            };
            let run = KernelRun::new(&model, &config, Schedule::Dispatch, Tile::SINGLE);
            let position = run.positions(Kernel::OutputError)[0];
            let shape = &run.plan.shape;
            // The outputs, and where the layer is nonlinear its sums in the
            // error rows, as the forward pass leaves them.
            let outputs: Vec<f32> = z.iter().map(|&z| output.apply(z)).collect();
            let gpu = common::gpu();
            let write = |offset: u32, values: &[f32]| {
                let bytes = offset as u64 * 4;
                gpu.queue
                    .write_buffer(&run.buffers.tensors, bytes, bytemuck::cast_slice(values));
            };
            write(shape.output_offset, &outputs);
            write(shape.output_delta_offset, &z);
            run.run_dispatches(0, position..=position);
            let tensors = run.read(&run.buffers.tensors);

            let stride = padded_samples(samples);
            let mut cpu_outputs = vec![0.0; stride];
            cpu_outputs[..samples].copy_from_slice(&outputs);
            let mut errors = vec![0.0; stride];
            errors[..samples].copy_from_slice(&z);
            let mut losses = vec![0.0; samples];
            let mut values = vec![0.0; metrics.len() * samples];
            let kinds: Vec<Metric> = metrics.iter().map(|m| m.metric).collect();
            cpu::output_error(
                loss,
                &kinds,
                output,
                cpu::OutputTensors {
                    stride,
                    outputs: &cpu_outputs,
                    targets: &y,
                    sample_losses: &mut losses,
                    errors: &mut errors,
                    sample_metrics: &mut values,
                    metric_stride: samples,
                },
            );
            let (mut gpu_values, mut cpu_values, mut bounds) = (vec![], vec![], vec![]);
            let total = Bounded::exact(samples as f64);
            for s in 0..samples {
                let exact = |v: f32| Bounded::exact(v as f64);
                let (o, zs, t) = (exact(outputs[s]), exact(z[s]), exact(y[s]));
                let bounded = loss.output_error(o, zs, t, output, total);
                gpu_values.push(tensors[(shape.sample_loss_offset as usize) + s]);
                cpu_values.push(losses[s]);
                bounds.push(bounded.loss.apart as f32);
                gpu_values.push(tensors[(shape.output_delta_offset as usize) + s]);
                cpu_values.push(errors[s]);
                bounds.push(bounded.delta.apart as f32);
                for (m, metric) in kinds.iter().enumerate() {
                    let row = shape.sample_metrics_offset as usize + m * shape.chunk_size as usize;
                    gpu_values.push(tensors[row + s]);
                    cpu_values.push(values[m * samples + s]);
                    bounds.push(metric.value(o, zs, t, output).apart as f32);
                }
            }
            let what = format!("output_error, {loss} after {output}");
            assert_within(&what, &gpu_values, &cpu_values, &bounds);
        }
    }
}

#[test]
fn dense_backward_passes_errors_back_a_layer() {
    for (hidden, tile) in [(vec![3, 3], Tile::SINGLE), (vec![9, 5], Tile::blocked(9))] {
        let model = model(&hidden);
        let samples = 29;
        let run = KernelRun::new(&model, &job(samples, None, 1), Schedule::Dispatch, tile);
        let backwards = run.positions(Kernel::DenseBackward);
        run.run_through(0, *backwards.last().unwrap());
        let tensors = run.read(&run.buffers.tensors);
        let layers = model.architecture().layers();
        let params = model.params();
        // Backward dispatches run from the last layer down to the second.
        for (&position, layer) in backwards.iter().zip(layers.iter().skip(1).rev()) {
            let args = run.args(position);
            let stride = padded_samples(samples);
            let error_out = feature_major(&tensors, args.in_offset, samples, layer.units);
            let mut cpu_in = vec![0.0; stride * layer.inputs];
            let below = Activation::Linear;
            cpu::dense_backward(params, layer, below, stride, &error_out, &mut cpu_in);
            let (mut gpu, mut cpu, mut bounds) = (vec![], vec![], vec![]);
            for s in 0..samples {
                for i in 0..layer.inputs {
                    let terms = (0..layer.units).map(|j| {
                        error_out[j * stride + s]
                            * params[layer.kernel_offset + i * layer.units + j]
                    });
                    cpu.push(cpu_in[i * stride + s]);
                    bounds.push(sum_bound(terms));
                    gpu.push(tensors[args.out_offset as usize + s * layer.inputs + i]);
                }
            }
            let what = format!("dense_backward {} <- {}", layer.inputs, layer.units);
            assert_within(&what, &gpu, &cpu, &bounds);
        }
    }
}

/// The first level of every sum over samples as the layered kernels left it
/// in `reduce`, and `cpu::gradient_partials` of the GPU's own activations
/// and errors, with their bounds: (gpu, cpu, bound), in the order of the
/// parameter rows (the squared error last), then blocks.
fn partial_sums(run: &KernelRun, samples: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let tensors = run.read(&run.buffers.tensors);
    let reduce = run.read(&run.buffers.reduce);
    let blocks = samples.div_ceil(REDUCE_BLOCK);
    let stride = padded_samples(samples);
    let (mut gpu, mut cpu, mut bounds) = (vec![], vec![], vec![]);
    for position in run.positions(Kernel::GradientPartials) {
        let args = run.args(position);
        let (inputs, units) = (args.inputs as usize, args.units as usize);
        // The squared error is the last dispatch: a one-entry "layer" with
        // a = err = the residual and no bias row.
        let bias_row = args.in_len as usize > inputs;
        let a = feature_major(&tensors, args.in_offset, samples, inputs);
        let err = feature_major(&tensors, args.out_offset, samples, units);
        let layer = DenseLayout {
            inputs,
            units,
            kernel_offset: 0,
            bias_offset: inputs * units,
            activation: Activation::Linear,
        };
        let range = |block: usize| {
            let first = block * REDUCE_BLOCK;
            first..(first + REDUCE_BLOCK).min(samples)
        };
        let block_sums: Vec<Vec<f32>> = (0..blocks)
            .map(|block| {
                let mut sums = vec![0.0f32; inputs * units + units];
                if bias_row {
                    cpu::gradient_partials(&a, &err, &layer, stride, range(block), &mut sums);
                } else {
                    sums[0] = range(block).fold(0.0f32, |sum, s| sum + a[s] * err[s]);
                }
                sums
            })
            .collect();
        for row in 0..args.in_len as usize {
            for j in 0..units {
                let parameter = args.kernel_offset as usize + row * units + j;
                for (block, sums) in block_sums.iter().enumerate() {
                    // a[s][row] * err[s][j]; the bias row's a is 1.
                    let terms = range(block).map(|s| {
                        let a = if row < inputs {
                            a[row * stride + s]
                        } else {
                            1.0
                        };
                        a * err[j * stride + s]
                    });
                    bounds.push(sum_bound(terms));
                    cpu.push(sums[row * units + j]);
                    let column = args.dst_offset as usize + block;
                    gpu.push(reduce[column + parameter * args.out_len as usize]);
                }
            }
        }
    }
    (gpu, cpu, bounds)
}

#[test]
fn gradient_partials_at_block_boundaries() {
    for samples in [255, 256, 257] {
        let model = model(&[3, 2]);
        let run = KernelRun::new(
            &model,
            &job(samples, None, 1),
            Schedule::Dispatch,
            Tile::SINGLE,
        );
        let partials = run.positions(Kernel::GradientPartials);
        run.run_through(0, *partials.last().unwrap());
        let (gpu, cpu, bounds) = partial_sums(&run, samples);
        assert_within(
            &format!("gradient_partials, {samples} samples"),
            &gpu,
            &cpu,
            &bounds,
        );
    }
}

#[test]
fn reduce_partials_is_the_cpu_reduction_level_by_level() {
    // 70 000 samples: 274 blocks, then 2, then 1: two further levels.
    let model = model(&[]);
    let samples = 70_000;
    let run = KernelRun::new(
        &model,
        &job(samples, None, 1),
        Schedule::Dispatch,
        Tile::SINGLE,
    );
    let reduces = run.positions(Kernel::ReducePartials);
    assert_eq!(reduces.len(), 2, "two further levels");
    let reduce = |last: usize| {
        run.run_through(0, last);
        run.read(&run.buffers.reduce)
    };
    for (level, &position) in reduces.iter().enumerate() {
        let args = run.args(position);
        let gpu_all = reduce(position);
        let (rows, from_len, to_len) = (
            args.rows as usize,
            args.in_len as usize,
            args.out_len as usize,
        );
        let from = &gpu_all[args.src_offset as usize..][..rows * from_len];
        let gpu = &gpu_all[args.dst_offset as usize..][..rows * to_len];
        let mut cpu = vec![0.0; rows * to_len];
        cpu::reduce_partials(from, from_len, &mut cpu, to_len, rows);
        let bounds: Vec<f32> = (0..rows * to_len)
            .map(|at| {
                let (row, block) = (at / to_len, at % to_len);
                let first = block * REDUCE_BLOCK;
                let partials = &from[row * from_len..][first..(first + REDUCE_BLOCK).min(from_len)];
                sum_bound(partials.iter().copied())
            })
            .collect();
        assert_within(
            &format!("reduce_partials, level {}", level + 1),
            gpu,
            &cpu,
            &bounds,
        );
    }
    // The last level leaves one total per row where Adam reads it.
    let last = run.args(*reduces.last().unwrap());
    assert_eq!(last.dst_offset, run.plan.shape.totals_offset);
}

#[test]
fn adam_step_is_the_cpu_update() {
    // Ordinary data, and data a million times smaller, whose gradients are
    // so small that epsilon (1e-7) outweighs sqrt(v) in the update.
    for scale in [1.0, 1e-6] {
        let mut config = job(40, None, 1);
        for value in config.data.x.iter_mut().chain(&mut config.data.y) {
            *value *= scale;
        }
        check_adam_step(&model(&[5, 3]), &config);
    }
}

fn check_adam_step(model: &Model, config: &TrainConfig) {
    let run = KernelRun::new(model, config, Schedule::Dispatch, Tile::SINGLE);
    let adam = run.positions(Kernel::AdamStep)[0];
    run.run_through(0, adam);
    let state = run.read(&run.buffers.params);
    let reduce = run.read(&run.buffers.reduce);
    let count = model.params().len();
    let totals = run.plan.shape.totals_offset as usize;
    let alpha = config.adam().step_size(1);
    let constants = config.adam().constants();
    let (mut gpu, mut cpu, mut bounds) = (vec![], vec![], vec![]);
    for p in 0..count {
        let (weight, g) = (model.params()[p], reduce[totals + p]);
        let bound = adam_bounds(weight, g, 0.0, 0.0, alpha, &constants);
        let (mut m, mut v) = (0.0, 0.0);
        let w = adam_update(weight, g, &mut m, &mut v, alpha, &constants);
        gpu.extend([state[p], state[count + p], state[2 * count + p]]);
        cpu.extend([w, m, v]);
        bounds.extend([bound.weight, bound.m, bound.v].map(|b| b as f32));
    }
    assert_within("adam_step", &gpu, &cpu, &bounds);
}

#[test]
fn gather_batch_draws_the_shuffle_of_src_batching() {
    for (samples, batch, seed) in [
        (7, 2, 1),
        (100, 10, 42),
        (1000, 64, 1 << 40 | 3),
        (4097, 256, 9),
    ] {
        let config = job(samples, Some(batch), seed);
        let run = KernelRun::new(&model(&[2]), &config, Schedule::Dispatch, Tile::SINGLE);
        let batching = Batching::new(samples, Some(batch), seed);
        assert!(batching.shuffle);
        let gather = run.positions(Kernel::GatherBatch)[0];
        // A few steps of a few epochs, the last batch of an epoch among them.
        let per_epoch = batching.steps_per_epoch;
        for step in [0, 1, per_epoch - 1, 3 * per_epoch + 1] {
            run.run_through(step, gather);
            let tensors = run.read(&run.buffers.tensors);
            let current = batching.batch(step as u64);
            for k in 0..current.size {
                let sample = batching.sample_index(current.epoch, current.first + k) as usize;
                let inputs = tensors[(run.plan.shape.input_offset + k) as usize];
                let targets = tensors[(run.plan.shape.target_offset + k) as usize];
                assert_eq!(
                    (inputs, targets),
                    (config.data.x[sample], config.data.y[sample]),
                    "{samples} samples, seed {seed}, step {step}: first mismatch at position {k}"
                );
            }
        }
    }
}

#[test]
fn sample_partials_matches_the_layered_kernels() {
    // The samples schedule's written-out kernel runs forward, error,
    // backward and the first level of every sum per sample in registers: its
    // partial sums against the layered kernels' on the same job, in the
    // layered run's order (parameter rows, then the squared error; blocks).
    for (hidden, samples) in [(vec![3, 3], 600), (vec![], 300), (vec![8, 4, 2], 257)] {
        let model = model(&hidden);
        let config = job(samples, None, 1);
        let layered = KernelRun::new(&model, &config, Schedule::Dispatch, Tile::SINGLE);
        layered.run_through(
            0,
            *layered.positions(Kernel::GradientPartials).last().unwrap(),
        );
        let (layered_sums, _, bounds) = partial_sums(&layered, samples);
        let written = KernelRun::new(&model, &config, Schedule::Samples, Tile::SINGLE);
        let position = written.positions(Kernel::SamplePartials)[0];
        written.run_through(0, position);
        let args = written.args(position);
        let reduce = written.read(&written.buffers.reduce);
        let blocks = samples.div_ceil(REDUCE_BLOCK);
        let written_sums: Vec<f32> = (0..=model.params().len())
            .flat_map(|row| {
                let start = args.dst_offset as usize + row * args.out_len as usize;
                reduce[start..start + blocks].to_vec()
            })
            .collect();
        // Each sum's terms come through the forward and backward passes of
        // every layer, rounded again at each: the sum's bound times the depth.
        let depth = hidden.len() as f32 + 2.0;
        let bounds: Vec<f32> = bounds.iter().map(|b| depth * b).collect();
        let what = format!("sample_partials, hidden {hidden:?}");
        assert_within(&what, &written_sums, &layered_sums, &bounds);
    }
}

/// A job with a validation split, metrics and early stopping that
/// restores the best weights: 700 rows, about 140 for training in batches
/// of 16 (the last one shorter) and 560 held out (validation blocks of
/// 256, 256 and the rest), through tanh layers.
fn epoch_end_job() -> (Model, TrainConfig) {
    use gpu_c2f::training::NamedMetric;
    let architecture = Architecture::with_layers(
        &[(5, Activation::Tanh), (3, Activation::Tanh)],
        Activation::Linear,
    )
    .unwrap();
    let config = TrainConfig {
        validation_split: 0.8,
        loss: gpu_c2f::Loss::Huber,
        metrics: ["mse", "mae", "accuracy"]
            .map(|m| NamedMetric::from_name(m).unwrap())
            .to_vec(),
        early_stopping: Some(gpu_c2f::EarlyStopping {
            patience: 2,
            min_delta: 0.5,
            restore_best_weights: true,
        }),
        ..job(700, Some(16), 3)
    };
    assert_eq!(config.validation_rows().len().div_ceil(REDUCE_BLOCK), 3);
    (Model::glorot_uniform(architecture, 9), config)
}

/// `values` written into `buffer` from word `offset`.
fn write(buffer: &wgpu::Buffer, offset: u32, values: &[f32]) {
    let bytes = offset as u64 * 4;
    common::gpu()
        .queue
        .write_buffer(buffer, bytes, bytemuck::cast_slice(values));
}

#[test]
fn validation_kernels_are_the_cpus_from_weights_and_values_the_test_writes() {
    let (model, config) = epoch_end_job();
    let run = KernelRun::new(&model, &config, Schedule::Dispatch, Tile::SINGLE);
    let shape = &run.plan.shape;
    let rows = config.validation_rows();
    let n = rows.len();
    let series = 1 + config.metrics.len();
    // Weights the test writes: the model's, with biases of either sign.
    let weights: Vec<f32> = (model.params().iter().enumerate())
        .map(|(p, &w)| w + 0.3 * ((p % 5) as f32 - 2.0))
        .collect();
    write(&run.buffers.params, 0, &weights);
    let losses = run.positions(Kernel::ValidationLosses)[0];
    // The epoch's last step: only then do the validation kernels work.
    let last_step = run.plan.batching.steps_per_epoch - 1;
    run.run_dispatches(last_step, losses..=losses);
    let tensors = run.read(&run.buffers.tensors);
    let offset = shape.validation_values_offset as usize;
    let gpu_values = &tensors[offset..offset + series * n];
    let layers = model.architecture().layers();
    let metrics: Vec<gpu_c2f::Metric> = config.metrics.iter().map(|m| m.metric).collect();
    let scored = (config.loss, &metrics[..]);
    let mut cpu_values = Vec::new();
    cpu::validation_losses(
        &weights,
        &layers,
        scored,
        &config.data,
        rows.clone(),
        &mut cpu_values,
    );
    let mut bounds = vec![0.0f32; series * n];
    for (s, row) in rows.enumerate() {
        let (x, y) = (config.data.x_row(row), config.data.y_row(row));
        let bound = gpu_c2f::shadow::step_bounds(&layers, scored, &weights, x, y);
        bounds[s] = bound.loss as f32;
        for (m, &metric) in bound.metric_sums.iter().enumerate() {
            bounds[(1 + m) * n + s] = metric as f32;
        }
    }
    assert_within("validation_losses", gpu_values, &cpu_values, &bounds);

    // The partial sums, from values the test writes: each series' rows.
    let values: Vec<f32> = (0..series * n)
        .map(|k| ((k * 37) % 101) as f32 * 0.7 - 30.0)
        .collect();
    write(&run.buffers.tensors, offset as u32, &values);
    let partials = run.positions(Kernel::ValidationPartials)[0];
    run.run_dispatches(last_step, partials..=partials);
    let reduce = run.read(&run.buffers.reduce);
    let blocks = n.div_ceil(REDUCE_BLOCK);
    let from = shape.validation_partials_offset as usize;
    let gpu_partials = &reduce[from..from + series * blocks];
    let cpu_partials: Vec<f32> = cpu::validation_partials(&values, n).concat();
    let bounds: Vec<f32> = (values.chunks(n))
        .flat_map(|series| series.chunks(REDUCE_BLOCK))
        .map(|block| sum_bound(block.iter().copied()))
        .collect();
    assert_eq!(cpu_partials.len(), series * 3, "three blocks a series");
    assert_within("validation_partials", gpu_partials, &cpu_partials, &bounds);
}

#[test]
fn finish_step_ends_an_epoch_as_the_cpu_from_sums_the_test_writes() {
    use gpu_c2f::gpu::abi::HistoryHeader;
    use gpu_c2f::training::Watch;
    let (model, config) = epoch_end_job();
    let stopping = config.early_stopping.unwrap();
    let run = KernelRun::new(&model, &config, Schedule::Dispatch, Tile::SINGLE);
    let shape = run.plan.shape.clone();
    let (n, metrics) = (config.validation_rows().len(), config.metrics.len());
    let blocks = n.div_ceil(REDUCE_BLOCK);
    let rows = shape.sum_rows();
    let finish = run.positions(Kernel::FinishStep)[0];
    // Epoch 2's last step (its batch the epoch's short one): once improving
    // on the best by far more than min_delta, once not (the wait reaches
    // the patience: training stops).
    let step = 2 * run.plan.batching.steps_per_epoch - 1;
    let epoch = 1;
    for (best, wait, stops) in [(40.0f32, 0u32, false), (1.0, 1, true)] {
        let header = HistoryHeader {
            step,
            epoch_total: 123.25,
            best,
            wait,
            best_epoch: 1,
            ..HistoryHeader::START
        };
        write(&run.buffers.history, 0, bytemuck::cast_slice(&[header]));
        let totals = shape.totals_offset;
        let batch_loss_sum = 20.5f32;
        write(
            &run.buffers.reduce,
            totals + rows.loss() as u32,
            &[batch_loss_sum],
        );
        let metric_sums: Vec<f32> = (0..metrics).map(|m| 3.0 + m as f32 * 1.7).collect();
        write(
            &run.buffers.reduce,
            totals + rows.metric(0) as u32,
            &metric_sums,
        );
        let metric_totals: Vec<f32> = (0..metrics).map(|m| 50.0 - m as f32 * 9.3).collect();
        write(
            &run.buffers.reduce,
            shape.metric_totals_offset,
            &metric_totals,
        );
        let partials: Vec<f32> = (0..(1 + metrics) * blocks)
            .map(|k| 100.0 + k as f32 * 13.1)
            .collect();
        write(
            &run.buffers.reduce,
            shape.validation_partials_offset,
            &partials,
        );
        run.run_dispatches(step, finish..=finish);

        let history = run.read(&run.buffers.history);
        let words = std::mem::size_of::<HistoryHeader>() / 4;
        let after: HistoryHeader =
            bytemuck::pod_read_unaligned(bytemuck::cast_slice(&history[..words]));
        let losses = &history[words..];
        let at =
            |offset: u32, m: usize| losses[offset as usize + m * run.plan.epochs as usize + epoch];
        // The CPU's twin, from the same values.
        let samples = shape.samples as f32;
        let size = run.plan.batching.batch(step as u64).size as f32;
        assert!(size < 16.0, "the epoch's short last batch");
        let batch_loss = batch_loss_sum / size;
        let cpu_loss = (header.epoch_total + batch_loss * size) / samples;
        let cpu_metrics: Vec<f32> = (0..metrics)
            .map(|m| (metric_totals[m] + metric_sums[m]) / samples)
            .collect();
        let series: Vec<f32> = partials
            .chunks(blocks)
            .map(|blocks| cpu::validation_loss(blocks, n))
            .collect();
        let (mut gpu, mut cpu) = (vec![losses[epoch]], vec![cpu_loss]);
        for m in 0..metrics {
            gpu.push(at(run.plan.run.metric_offset, m));
            cpu.push(cpu_metrics[m]);
            gpu.push(at(run.plan.run.val_metric_offset, m));
            cpu.push(series[1 + m]);
        }
        gpu.push(at(run.plan.run.val_loss_offset, 0));
        cpu.push(series[0]);
        // Every value here is positive, so each rounding is relative to
        // the result: the epoch loss takes the most, two divisions
        // (DIVISION_APART, 6u each on both sides) and a product and a sum
        // (3u each): 18u, within 2 apart(4) = 24u (bit for bit on CI's
        // drivers).
        let bounds: Vec<f32> = cpu
            .iter()
            .map(|v| 2.0 * apart(4) as f32 * v.abs())
            .collect();
        assert_within("finish_step", &gpu, &cpu, &bounds);
        // Early stopping's verdict on the device's val_loss, as Keras's.
        let mut watch = Watch {
            best: header.best,
            best_epoch: header.best_epoch as usize,
            wait: header.wait as usize,
        };
        let stopped = stopping.watch(&mut watch, epoch, gpu[gpu.len() - 1]);
        assert_eq!(stopped, stops);
        assert_eq!(after.step, step + 1, "the step counter moves on");
        assert_eq!(after.best.to_bits(), watch.best.to_bits());
        assert_eq!(after.best_epoch as usize, watch.best_epoch);
        assert_eq!(after.wait as usize, watch.wait);
        assert_eq!(
            after.stopped_epoch,
            if stops { epoch as u32 + 1 } else { 0 }
        );
        assert_eq!(after.epoch_total, 0.0, "the next epoch starts from 0");
    }
}

#[test]
fn keep_best_copies_the_weights_only_after_the_best_epochs_last_step() {
    use gpu_c2f::gpu::abi::HistoryHeader;
    let (model, config) = epoch_end_job();
    let run = KernelRun::new(&model, &config, Schedule::Dispatch, Tile::SINGLE);
    let count = model.params().len() as u32;
    let per_epoch = run.plan.batching.steps_per_epoch;
    let keep = run.positions(Kernel::KeepBest)[0];
    let weights: Vec<f32> = (0..count).map(|p| p as f32 * 0.25 - 3.0).collect();
    let kept_before = vec![-7.5f32; count as usize];
    // After epoch 2's last step (the counter already moved on: 2 epochs
    // done), with epoch 2 the best, then with epoch 1 the best; and one
    // step into epoch 3.
    for (done, best_epoch, copies) in [
        (2 * per_epoch, 2, true),
        (2 * per_epoch, 1, false),
        (2 * per_epoch + 1, 2, false),
    ] {
        write(&run.buffers.params, 0, &weights);
        write(&run.buffers.params, 3 * count, &kept_before);
        let header = HistoryHeader {
            step: done,
            best: 1.0,
            wait: 0,
            best_epoch,
            ..HistoryHeader::START
        };
        write(&run.buffers.history, 0, bytemuck::cast_slice(&[header]));
        run.run_dispatches(done, keep..=keep);
        let params = run.read(&run.buffers.params);
        let kept = &params[3 * count as usize..4 * count as usize];
        let expected = if copies { &weights } else { &kept_before };
        assert_eq!(kept, &expected[..], "done {done}, best epoch {best_epoch}");
    }
}
