// Mini-batches (src/batching.rs): which samples a training step works on,
// in each epoch's shuffled order.

// The current training step: its number t (1-based, Adam's t), its batch
// (`total` samples from position `batch_first` of the epoch's order), and
// the chunk of that batch a dispatch works on (`size` rows from position
// `first`, whose sums start at reduction block `block0`). Read once per
// invocation and phase: `history.step` only moves in `finish_step`, the last
// phase.
struct Batch {
    t: u32,
    epoch: u32,
    batch_first: u32,
    total: u32,
    first: u32,
    size: u32,
    block0: u32,
}

fn current_batch(chunk_first: u32) -> Batch {
    let done = history.step;
    let batch_first = (done % STEPS_PER_EPOCH) * BATCH_SIZE;
    let total = min(BATCH_SIZE, SAMPLES - batch_first);
    let size = min(CHUNK_SIZE, total - min(chunk_first, total));
    return Batch(
        done + 1u,
        done / STEPS_PER_EPOCH,
        batch_first,
        total,
        batch_first + chunk_first,
        size,
        chunk_first / REDUCE_BLOCK,
    );
}

// Whether `batch` is its epoch's last.
fn ends_epoch(batch: Batch) -> bool {
    return batch.batch_first + batch.total == SAMPLES;
}

// Where dataset row `row`'s targets start: every row's inputs come first.
fn targets_of_row(row: u32) -> u32 {
    return DATA_OFFSET + DATA_ROWS * INPUT_WIDTH + row * OUTPUT_WIDTH;
}

// if gather {
// The batch's inputs and targets, copied from the dataset in the epoch's
// order; item i of the batch.
fn gather_batch_at(i: u32, args: DispatchArgs, batch: Batch) {
    if i >= batch.size {
        return;
    }
    let sample = sample_index(batch.epoch, batch.first + i);
    for (var k = 0u; k < INPUT_WIDTH; k++) {
        tensors[INPUT_OFFSET + i * INPUT_WIDTH + k] = tensors[DATA_OFFSET + sample * INPUT_WIDTH + k];
    }
    for (var k = 0u; k < OUTPUT_WIDTH; k++) {
        tensors[TARGET_OFFSET + i * OUTPUT_WIDTH + k] = tensors[targets_of_row(sample) + k];
    }
}
// } gather

// if shuffle {
// src/batching.rs, bit for bit: a keyed 4-round Feistel permutation of
// [0, 4^HALF_BITS), cycle-walked into [0, SAMPLES).
fn hash32(value: u32) -> u32 {
    var x = value;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn sample_index(epoch: u32, position: u32) -> u32 {
    let base = hash32(hash32(run.seed_low ^ 0x9e3779b9u) ^ run.seed_high ^ hash32(epoch));
    let mask = (1u << HALF_BITS) - 1u;
    var x = position;
    loop {
        var left = x >> HALF_BITS;
        var right = x & mask;
        for (var round = 0u; round < 4u; round++) {
            let next = left ^ (hash32(right ^ hash32(base + round)) & mask);
            left = right;
            right = next;
        }
        x = (left << HALF_BITS) | right;
        if x < SAMPLES {
            break;
        }
    }
    return x;
}
// } shuffle
// if gather_in_order {
// Batches in the dataset's order (no shuffle).
fn sample_index(epoch: u32, position: u32) -> u32 {
    return position;
}
// } gather_in_order
