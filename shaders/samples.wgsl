// The samples schedule's per-sample work: one thread per block of
// REDUCE_BLOCK samples runs the whole network forward and back for each
// sample of its block, in order, and adds the sample's gradient terms to one
// running sum per parameter. The sums go where `gradient_partials` would put
// them (level 0 of the reduction), so the rest of a step (`reduce_partials`,
// `adam_step`, `finish_step`) is the dispatch schedule's. The holes are
// filled by the host for one architecture (src/gpu/samples.rs): every
// activation, error, weight and sum a named scalar, computed with the
// arithmetic of the function named in the comment above it, in the same
// order.
fn sample_partials_at(block: u32, args: DispatchArgs, batch: Batch) {
    // One block of the chunk per thread, clipped as gradient_partials_at
    // clips them.
    if !block_in_chunk(block, args, batch) {
        return;
    }
    let first = block * REDUCE_BLOCK;
    let end = min(first + REDUCE_BLOCK, batch.size);
    // The weights, read once for the block.
{{load_weights}}
    // One running sum per parameter, then the loss's.
{{zero_sums}}
    var loss_sum = 0.0;
    for (var s = first; s < end; s++) {
{{per_sample}}
        loss_sum += sample_loss;
    }
    // Level 0 of the reduction: row p (parameter p; the loss in row
    // LOSS_ROW, the metrics from METRIC_ROW), column block0 + block, as
    // gradient_partials_at.
    let column = args.dst_offset + batch.block0 + block;
{{store_sums}}
}
