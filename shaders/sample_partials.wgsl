// The samples schedule's kernel: one thread per block of `reduce_block`
// samples runs the whole network forward and back for each sample of its
// block, in order, and adds the sample's gradient terms to one running sum
// per parameter. The sums go where `gradient_partials` would put them
// (level 0 of the reduction), so the rest of a step (`reduce_partials`,
// `adam_step`, `finish_step`) is the dispatch schedule's. Compiled appended
// to train.wgsl, with the holes filled by the host for one architecture
// (src/gpu/samples.rs): every activation, error, weight and sum a named
// scalar, computed with the arithmetic of the train.wgsl function named in
// the comment above it, in the same order.

@compute @workgroup_size(workgroup_size)
fn sample_partials(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
) {
    if training_stopped() {
        return;
    }
    let args = dispatch_args[current.dispatch];
    let batch = current_batch(args.chunk_first);
    // One block of the chunk per thread, clipped as gradient_partials_at
    // clips them.
    let block = thread_index(group, groups, local);
    if !block_in_chunk(block, args, batch) {
        return;
    }
    let first = block * reduce_block;
    let end = min(first + reduce_block, batch.size);
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
    // param_count), column block0 + block, as gradient_partials_at.
    let column = args.dst_offset + batch.block0 + block;
{{store_sums}}
}
