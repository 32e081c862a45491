//! Mini-batches as Keras's `fit` makes them: each epoch the samples are
//! shuffled, cut into batches of `batch_size` (the last one smaller), and
//! every batch is one Adam step.
//!
//! The shuffle is a keyed Feistel permutation of the sample positions,
//! computed on the fly from the seed and the epoch, with integer operations
//! only: the WGSL kernels (`sample_index` in shaders/batch.wgsl) compute the same
//! permutation bit for bit, so no index array is uploaded per epoch and the
//! GPU never waits on the host. Keras's own shuffle (tf.random.shuffle)
//! cannot be reproduced; any uniform shuffle is the same algorithm.
//!
//! With a single batch per epoch the samples are not shuffled: the order of
//! one batch only changes the rounding of its sums.

use serde::Serialize;

/// Keras's default `batch_size`.
pub const DEFAULT_BATCH_SIZE: usize = 32;

/// How one training run cuts its samples into steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Batching {
    /// Samples in the dataset (saturated at `u32::MAX`).
    pub samples: u32,
    /// Samples per batch, at most `samples`.
    pub batch_size: u32,
    /// Batches (Adam steps) per epoch: `samples / batch_size`, rounded up.
    pub steps_per_epoch: u32,
    /// Whether batches are drawn from a shuffled order (more than one batch).
    pub shuffle: bool,
    /// Seed of the shuffle's per-epoch round keys ([`Batching::round_keys`]).
    pub seed: u64,
}

/// One step's slice of the (shuffled) sample order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// 0-based epoch.
    pub epoch: u32,
    /// First position in the epoch's order.
    pub first: u32,
    /// Samples in this batch: `batch_size`, or fewer in the epoch's last batch.
    pub size: u32,
}

impl Batch {
    /// Whether this is its epoch's last batch.
    pub fn ends_epoch(&self, batching: &Batching) -> bool {
        self.first + self.size == batching.samples
    }
}

impl Batching {
    /// `batch_size` None means the whole dataset in one batch (`--batch-size
    /// all`; Keras's `batch_size=None` means 32 instead); any size larger
    /// than the dataset is one full batch too, as in Keras. Sizes are clamped
    /// before they are narrowed, so none wraps; `samples` beyond `u32::MAX`
    /// saturate ([`TrainConfig::validate`](crate::TrainConfig::validate)
    /// refuses such datasets first).
    pub fn new(samples: usize, batch_size: Option<usize>, seed: u64) -> Self {
        let batch_size = batch_size.map_or(samples, |b| b.clamp(1, samples.max(1)));
        let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let (samples, batch_size) = (narrow(samples), narrow(batch_size));
        let steps_per_epoch = samples.div_ceil(batch_size.max(1));
        Self {
            samples,
            batch_size,
            steps_per_epoch,
            shuffle: steps_per_epoch > 1,
            seed,
        }
    }

    /// The same batches in the dataset's order every epoch (Keras's
    /// `fit(shuffle=False)`).
    pub fn in_order(self) -> Self {
        Self {
            shuffle: false,
            ..self
        }
    }

    /// The batch of 0-based step `step`.
    pub fn batch(&self, step: u64) -> Batch {
        let epoch = (step / self.steps_per_epoch as u64) as u32;
        let first = (step % self.steps_per_epoch as u64) as u32 * self.batch_size;
        Batch {
            epoch,
            first,
            size: self.batch_size.min(self.samples - first),
        }
    }

    /// The sample at `position` of `epoch`'s order.
    pub fn sample_index(&self, epoch: u32, position: u32) -> u32 {
        if !self.shuffle {
            return position;
        }
        let keys = self.round_keys(epoch);
        let half_bits = half_bits(self.samples);
        // Cycle-walking: the Feistel network permutes [0, 4^half_bits), at
        // most 4x the samples, so this takes under 4 rounds on average.
        let mut x = position;
        loop {
            x = feistel(x, half_bits, &keys);
            if x < self.samples {
                return x;
            }
        }
    }

    /// The four round keys of `epoch`, from the seed.
    pub fn round_keys(&self, epoch: u32) -> [u32; 4] {
        let seed_low = self.seed as u32;
        let seed_high = (self.seed >> 32) as u32;
        let base = hash32(hash32(seed_low ^ 0x9e37_79b9) ^ seed_high ^ hash32(epoch));
        std::array::from_fn(|round| hash32(base.wrapping_add(round as u32)))
    }
}

/// Bits of each Feistel half: the smallest h with 4^h >= samples (h >= 1).
pub fn half_bits(samples: u32) -> u32 {
    let bits = 32 - samples.saturating_sub(1).leading_zeros();
    bits.div_ceil(2).max(1)
}

/// A 32-bit integer hash with good avalanche (Chris Wellons' lowbias32).
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Four Feistel rounds over `2 * half_bits` bits: a bijection of that range.
fn feistel(x: u32, half_bits: u32, keys: &[u32; 4]) -> u32 {
    let mask = (1u32 << half_bits) - 1;
    let mut left = x >> half_bits;
    let mut right = x & mask;
    for key in keys {
        let next = left ^ (hash32(right ^ key) & mask);
        left = right;
        right = next;
    }
    (left << half_bits) | right
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_epoch_order_is_a_permutation_and_orders_differ() {
        for samples in [2u32, 3, 7, 31, 32, 33, 100, 1000, 4097] {
            let batching = Batching::new(samples as usize, Some(4), 11);
            let mut previous = Vec::new();
            for epoch in 0..3 {
                let order: Vec<u32> = (0..samples)
                    .map(|p| batching.sample_index(epoch, p))
                    .collect();
                let mut sorted = order.clone();
                sorted.sort_unstable();
                assert_eq!(
                    sorted,
                    (0..samples).collect::<Vec<_>>(),
                    "{samples} samples, epoch {epoch}"
                );
                if samples > 3 {
                    assert_ne!(order, previous, "{samples} samples: epoch {epoch} repeats");
                }
                previous = order;
            }
        }
    }

    #[test]
    fn one_batch_is_not_shuffled_and_batches_cover_the_epoch() {
        let whole = Batching::new(7, Some(32), 1);
        assert_eq!(
            (whole.batch_size, whole.steps_per_epoch, whole.shuffle),
            (7, 1, false)
        );
        assert_eq!(whole.sample_index(5, 3), 3);

        let batching = Batching::new(10, Some(4), 1);
        assert_eq!(batching.steps_per_epoch, 3);
        let sizes: Vec<u32> = (0..6).map(|s| batching.batch(s).size).collect();
        assert_eq!(sizes, [4, 4, 2, 4, 4, 2]);
        assert_eq!(
            batching.batch(4),
            Batch {
                epoch: 1,
                first: 4,
                size: 4
            }
        );
        assert_eq!(Batching::new(10, None, 1).steps_per_epoch, 1);
    }

    #[test]
    fn batch_sizes_beyond_u32_mean_one_full_batch_and_never_wrap() {
        for size in [1usize << 32, (1 << 32) + 3, usize::MAX] {
            let batching = Batching::new(100, Some(size), 1);
            assert_eq!(
                (
                    batching.batch_size,
                    batching.steps_per_epoch,
                    batching.shuffle
                ),
                (100, 1, false),
                "--batch-size {size}"
            );
        }
    }

    #[test]
    fn half_bits_cover_the_samples() {
        for samples in [1u32, 2, 4, 5, 16, 17, 1 << 20, (1 << 20) + 1, u32::MAX] {
            let h = half_bits(samples);
            assert!(4u64.pow(h) >= samples as u64, "{samples}");
            assert!(h == 1 || 4u64.pow(h - 1) < samples as u64, "{samples}");
        }
    }
}
