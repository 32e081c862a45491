//! The GPU's own time for the training passes, from timestamp queries,
//! gathered on the GPU and read back with the results.

use super::context::Gpu;
use std::time::Duration;

/// Most training passes whose GPU time is measured: 16 bytes of results
/// each (1 MiB in all). Passes beyond it run untimed, and the report says
/// how many were timed. Reached only by runs split into very many
/// submissions (e.g. a progress chunk of one epoch).
pub const MAX_TIMED_PASSES: usize = 1 << 16;

/// Query pairs the timer cycles through. wgpu caps a query set at
/// `QUERY_SET_MAX_QUERIES` (4096), so the queries cannot grow with the
/// run: each pass writes a pair, the same command buffer resolves it and
/// copies the two ticks out, and later passes reuse the pair. A few pairs
/// rather than one keep a reused pair well apart from the one in flight.
const TIMER_QUERY_PAIRS: u32 = 8;

/// Timestamps at the start and end of every training pass (up to
/// [`MAX_TIMED_PASSES`]), gathered on the GPU into one buffer that is read
/// back with the results: no extra round trip.
pub struct PassTimer {
    queries: wgpu::QuerySet,
    /// One 256-byte slot per query pair (resolves need that alignment).
    resolve_slots: wgpu::Buffer,
    /// Two ticks per timed pass, in pass order.
    pub ticks: wgpu::Buffer,
    pub timed_passes: usize,
    nanoseconds_per_tick: f64,
}

impl PassTimer {
    /// `None` when the device has no timestamp queries.
    pub fn new(gpu: &Gpu, passes: usize) -> Option<Self> {
        if !gpu
            .device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            || passes == 0
        {
            return None;
        }
        let timed_passes = passes.min(MAX_TIMED_PASSES);
        Some(Self {
            queries: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("training pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * TIMER_QUERY_PAIRS,
            }),
            resolve_slots: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("resolved timestamp slots"),
                size: TIMER_QUERY_PAIRS as u64 * wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            ticks: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("pass timestamps"),
                size: timed_passes as u64 * 16,
                usage: wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            timed_passes,
            nanoseconds_per_tick: gpu.queue.get_timestamp_period() as f64,
        })
    }

    /// The query pair of `pass`.
    fn pair(pass: usize) -> u32 {
        (pass % TIMER_QUERY_PAIRS as usize) as u32
    }

    /// The timestamp writes of `pass`, or `None` past [`MAX_TIMED_PASSES`].
    pub fn writes(&self, pass: usize) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let first = 2 * Self::pair(pass);
        (pass < self.timed_passes).then_some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(first),
            end_of_pass_write_index: Some(first + 1),
        })
    }

    /// Records, after `pass`, the copy of its two ticks to their place.
    pub fn collect(&self, encoder: &mut wgpu::CommandEncoder, pass: usize) {
        if pass >= self.timed_passes {
            return;
        }
        let pair = Self::pair(pass);
        let slot = pair as u64 * wgpu::QUERY_RESOLVE_BUFFER_ALIGNMENT;
        encoder.resolve_query_set(
            &self.queries,
            2 * pair..2 * pair + 2,
            &self.resolve_slots,
            slot,
        );
        encoder.copy_buffer_to_buffer(&self.resolve_slots, slot, &self.ticks, pass as u64 * 16, 16);
    }

    /// The sum of every timed pass's end minus start.
    pub fn total(&self, ticks: &[u64]) -> Duration {
        let ticks: u64 = ticks
            .chunks_exact(2)
            .map(|pair| pair[1].saturating_sub(pair[0]))
            .sum();
        Duration::from_nanos((ticks as f64 * self.nanoseconds_per_tick) as u64)
    }
}
