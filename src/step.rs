//! The operations of one training step, as a typed list that both sides
//! walk: the GPU lowers it to dispatches (src/gpu/plan.rs) or to the fused
//! schedule's WGSL (src/gpu/fused.rs), and the CPU reference runs each
//! operation through the function of the same name (src/cpu.rs). The list is
//! the training loop written down once; tests/adam_f64.rs checks the math
//! independently of it, so a mistake in the list cannot hide on both sides.

/// Every sum over samples (and over partial sums) adds this many values in
/// order before the next level adds the block sums: the GPU gives each block
/// to one thread, so the CPU adds in exactly the same order.
pub const REDUCE_BLOCK: usize = 256;

/// One operation of a training step (one mini-batch, one Adam update).
/// Per-sample operations work on one chunk of the batch: a batch larger
/// than the GPU's per-sample buffers runs in chunks (the CPU always in one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The chunk's inputs and targets, copied from the dataset in the
    /// epoch's shuffled order (`cpu::GatheredBatch`, `gather_batch`).
    Gather {
        /// 0-based chunk of the batch.
        chunk: usize,
    },
    /// Layer `layer`'s outputs from its inputs (`dense_forward`).
    DenseForward {
        /// 0-based Dense layer (0 reads the network's input).
        layer: usize,
        /// 0-based chunk of the batch.
        chunk: usize,
    },
    /// Each sample's loss and the error of the network's output
    /// (`output_error`).
    OutputError {
        /// 0-based chunk of the batch.
        chunk: usize,
    },
    /// Layer `layer`'s output error passed back to its inputs
    /// (`dense_backward`); runs for layers L-1 down to 1.
    DenseBackward {
        /// 0-based layer whose output error is passed back (never 0).
        layer: usize,
        /// 0-based chunk of the batch.
        chunk: usize,
    },
    /// The first level of layer `layer`'s gradient sums, one partial sum per
    /// block of samples (`gradient_partials`).
    GradientPartials {
        /// 0-based layer whose gradient is summed.
        layer: usize,
        /// 0-based chunk of the batch.
        chunk: usize,
    },
    /// The first level of the loss's sum over samples (`gradient_partials`
    /// with a layer of no inputs whose err is each sample's loss).
    LossSum {
        /// 0-based chunk of the batch.
        chunk: usize,
    },
    /// The same for metric `metric`'s values (Keras's `metrics=[...]`).
    MetricSum {
        /// 0-based metric.
        metric: usize,
        /// 0-based chunk of the batch.
        chunk: usize,
    },
    /// The samples schedule's one kernel for all of the above but the
    /// gather: the whole network per sample in registers
    /// (`sample_partials`, src/gpu/samples.rs). GPU only.
    SamplePartials {
        /// 0-based chunk of the batch.
        chunk: usize,
    },
    /// Level `level` (1, 2, ...) of every sum: the previous level's partial
    /// sums, `REDUCE_BLOCK` at a time (`reduce_partials`).
    Reduce {
        /// 1-based level; level 0 is the partial sums the per-sample
        /// operations write.
        level: usize,
    },
    /// Keras's Adam update of every parameter from the summed gradients
    /// (`adam_step`, `optimizer::adam_update`).
    Adam,
    /// After an epoch's last update (nothing on other steps): the loss of
    /// every validation row (`validation_losses`). Only with a validation
    /// split.
    ValidationLosses,
    /// Then their sums, a block of rows at a time (`validation_partials`).
    ValidationPartials,
    /// The batch's loss into the epoch's history (at an epoch's end its
    /// validation loss, and early stopping's verdict); the step counter
    /// moves on (`finish_step`).
    FinishStep,
    /// After a step that ended the best epoch so far, its weights kept
    /// (`keep_best`). Only with `restore_best_weights`.
    KeepBest,
}

/// The rows of every sum over samples, in the order the reduction keeps
/// them (`reduce` on the GPU, `Backprop`'s levels on the CPU): one per
/// parameter (the gradients), then the loss, then each metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SumRows {
    /// Parameters of the network: the first rows.
    pub params: usize,
    /// Metrics tracked: the last rows.
    pub metrics: usize,
}

impl SumRows {
    /// The loss's row.
    pub fn loss(self) -> usize {
        self.params
    }

    /// Metric `metric`'s row.
    pub fn metric(self, metric: usize) -> usize {
        self.params + 1 + metric
    }

    /// Rows in all.
    pub fn count(self) -> usize {
        self.params + 1 + self.metrics
    }
}

/// How a step's per-sample work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleWork {
    /// Layer by layer: forward, output error, backward, gradient partials.
    Layers,
    /// One [`Op::SamplePartials`] per chunk (the samples schedule).
    Samples,
}

/// How a batch is cut for the per-sample operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunking {
    /// Chunks per batch (1: the batch at once).
    pub chunks: usize,
    /// Whether each chunk's samples are gathered first; without it the
    /// per-sample operations read the dataset in place (a single unchunked,
    /// unshuffled batch).
    pub gather: bool,
    /// Reduction levels after the first: 0 when one block holds the batch.
    pub further_levels: usize,
}

/// What a step does besides training: validate after an epoch's last
/// update, keep the best epoch's weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extras {
    /// A validation split's loss at each epoch's end.
    pub validate: bool,
    /// Early stopping's `restore_best_weights`.
    pub keep_best: bool,
    /// Metrics tracked per epoch.
    pub metrics: usize,
}

/// The operations of one training step of a network of `layers` layers.
pub fn step_ops(layers: usize, chunking: Chunking, work: SampleWork, extras: Extras) -> Vec<Op> {
    let mut ops = Vec::new();
    for chunk in 0..chunking.chunks {
        if chunking.gather {
            ops.push(Op::Gather { chunk });
        }
        if work == SampleWork::Samples {
            ops.push(Op::SamplePartials { chunk });
            continue;
        }
        ops.extend((0..layers).map(|layer| Op::DenseForward { layer, chunk }));
        ops.push(Op::OutputError { chunk });
        ops.extend(
            (1..layers)
                .rev()
                .map(|layer| Op::DenseBackward { layer, chunk }),
        );
        ops.extend((0..layers).map(|layer| Op::GradientPartials { layer, chunk }));
        ops.push(Op::LossSum { chunk });
        ops.extend((0..extras.metrics).map(|metric| Op::MetricSum { metric, chunk }));
    }
    ops.extend((1..=chunking.further_levels).map(|level| Op::Reduce { level }));
    ops.push(Op::Adam);
    if extras.validate {
        ops.push(Op::ValidationLosses);
        ops.push(Op::ValidationPartials);
    }
    ops.push(Op::FinishStep);
    if extras.keep_best {
        ops.push(Op::KeepBest);
    }
    ops
}

/// Lengths of the reduction levels of a sum over `samples` values: level 0
/// holds one partial per block of `block`, each further level one per block
/// of the level before, down to a single total.
pub fn reduction_levels(samples: u64, block: u64) -> Vec<u64> {
    let mut lens = vec![samples.div_ceil(block)];
    while let Some(&last) = lens.last().filter(|&&len| len > 1) {
        lens.push(last.div_ceil(block));
    }
    lens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_step_is_forward_error_backward_partials_adam_finish() {
        let chunking = Chunking {
            chunks: 1,
            gather: false,
            further_levels: 0,
        };
        use Op::*;
        let chunk = 0;
        assert_eq!(
            step_ops(3, chunking, SampleWork::Layers, Extras::default()),
            [
                DenseForward { layer: 0, chunk },
                DenseForward { layer: 1, chunk },
                DenseForward { layer: 2, chunk },
                OutputError { chunk },
                DenseBackward { layer: 2, chunk },
                DenseBackward { layer: 1, chunk },
                GradientPartials { layer: 0, chunk },
                GradientPartials { layer: 1, chunk },
                GradientPartials { layer: 2, chunk },
                LossSum { chunk },
                Adam,
                FinishStep
            ]
        );
    }

    #[test]
    fn samples_work_is_a_gather_and_one_kernel_per_chunk_then_the_levels() {
        let chunking = Chunking {
            chunks: 2,
            gather: true,
            further_levels: 1,
        };
        use Op::*;
        assert_eq!(
            step_ops(3, chunking, SampleWork::Samples, Extras::default()),
            [
                Gather { chunk: 0 },
                SamplePartials { chunk: 0 },
                Gather { chunk: 1 },
                SamplePartials { chunk: 1 },
                Reduce { level: 1 },
                Adam,
                FinishStep
            ]
        );
    }

    #[test]
    fn reduction_levels_shrink_by_a_block_to_one() {
        assert_eq!(reduction_levels(1, 256), [1]);
        assert_eq!(reduction_levels(256, 256), [1]);
        assert_eq!(reduction_levels(257, 256), [2, 1]);
        assert_eq!(reduction_levels(256 * 256 + 1, 256), [257, 2, 1]);
    }
}
