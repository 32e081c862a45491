//! What the shadow check can see: for each epoch, the smallest relative
//! gradient error it would have caught, `bound / |g|` of each gradient of
//! each step (a device whose gradient is off by more than that fraction
//! is outside the bound). Early in a run the bounds are a tiny fraction of
//! the gradients; near a minimum the gradients are sums of large terms of
//! either sign and their bounds may exceed them, so a mistake that acts
//! only there could pass. The check says so, epoch by epoch.

use serde::Serialize;

/// Bins per octave of [`PowerTally`]'s histogram: the median is read to
/// within a factor 2^(1/16), 4.4%.
const BINS_PER_OCTAVE: f64 = 16.0;

/// Octaves below and above 1 the histogram covers (2^-64 to 2^64); ratios
/// beyond land in its end bins.
const OCTAVES: i64 = 64;

const BINS: usize = (2 * OCTAVES) as usize * BINS_PER_OCTAVE as usize;

/// One epoch's power: the median and the largest `bound / |g|` over its
/// steps' gradients. `None` (JSON null) is infinite: some gradient was
/// exactly 0, so no relative error of it can be caught.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EpochPower {
    /// 1-based epoch.
    pub epoch: usize,
    /// The median ratio (to within 4.4%: a histogram bin's middle).
    pub median: Option<f64>,
    /// The largest ratio.
    pub worst: Option<f64>,
}

/// The ratios of one epoch, in a histogram of fixed size (bounded memory
/// whatever the epoch's steps and parameters).
#[derive(Debug, Clone)]
pub struct PowerTally {
    bins: Vec<u64>,
    /// The bins used so far: from `lowest` to before `end` (none while
    /// `end` is 0).
    lowest: usize,
    end: usize,
    /// Ratios that are infinite (a zero gradient with a nonzero bound).
    infinite: u64,
    worst: f64,
}

impl Default for PowerTally {
    fn default() -> Self {
        Self {
            bins: vec![0; BINS],
            lowest: BINS,
            end: 0,
            infinite: 0,
            worst: 0.0,
        }
    }
}

impl PowerTally {
    /// One gradient's `bound / |g|` (g the CPU's).
    pub fn add(&mut self, ratio: f64) {
        if ratio.is_nan() {
            // 0 / 0: nothing to catch, nothing missed; a NaN gradient fails
            // the check itself.
            return;
        }
        self.worst = self.worst.max(ratio);
        if ratio.is_infinite() {
            self.infinite += 1;
            return;
        }
        let bin =
            (ratio.log2() * BINS_PER_OCTAVE).floor() as i64 + OCTAVES * BINS_PER_OCTAVE as i64;
        let bin = bin.clamp(0, BINS as i64 - 1) as usize;
        self.bins[bin] += 1;
        self.lowest = self.lowest.min(bin);
        self.end = self.end.max(bin + 1);
    }

    /// The epoch's power, and the tally emptied for the next epoch.
    pub fn take(&mut self, epoch: usize) -> EpochPower {
        let used = self.lowest.min(self.end)..self.end;
        let count: u64 = self.bins[used.clone()].iter().sum::<u64>() + self.infinite;
        let mut seen = 0;
        let mut median = None;
        for (bin, &n) in self
            .bins
            .iter()
            .enumerate()
            .skip(used.start)
            .take(used.len())
        {
            seen += n;
            if n > 0 && 2 * seen >= count {
                let octaves = (bin as f64 + 0.5) / BINS_PER_OCTAVE - OCTAVES as f64;
                median = Some(octaves.exp2());
                break;
            }
        }
        let finite = |value: f64| value.is_finite().then_some(value);
        let power = EpochPower {
            epoch: epoch + 1,
            median: if count == 0 { Some(0.0) } else { median },
            worst: finite(self.worst),
        };
        self.bins[used].fill(0);
        (self.lowest, self.end) = (BINS, 0);
        self.infinite = 0;
        self.worst = 0.0;
        power
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_and_worst_ratio_of_an_epoch() {
        let mut tally = PowerTally::default();
        // Ratios 1e-6, 1e-3, 2e-3 and 10: of the middle two, the
        // histogram reports the lower's bin.
        for ratio in [1e-6, 1e-3, 2e-3, 10.0] {
            tally.add(ratio);
        }
        let power = tally.take(0);
        assert_eq!(power.epoch, 1);
        let median = power.median.unwrap();
        assert!((median / 1e-3 - 1.0).abs() < 0.05, "{median}");
        assert_eq!(power.worst, Some(10.0));
        // Taken: the next epoch starts empty; a zero gradient is infinite.
        tally.add(f64::INFINITY);
        tally.add(f64::INFINITY);
        tally.add(1e-7);
        let power = tally.take(1);
        assert_eq!((power.median, power.worst), (None, None));
    }
}
