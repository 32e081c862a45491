// Sums over samples (the CPU reference's `gradient_partials` and
// `reduce_partials`, src/cpu.rs): every sum adds REDUCE_BLOCK values in
// order, one thread a block, then the next level adds the block sums the
// same way, down to one total per row. The CPU adds in exactly this order.

// if layered {
// First level of every sum over samples, one layer at a time. Row p of
// `reduce` belongs to parameter p (kernel entry [i][j] at kernel_offset +
// i * units + j, the biases right after: "input" row i == inputs, whose a is
// 1); row LOSS_ROW is the loss, a layer of no inputs and one unit whose
// err is each sample's loss (its bias row's a is 1), and each metric's
// values follow in the rows from METRIC_ROW (`SumRows`, src/step.rs). An item adds, for one block of
// REDUCE_BLOCK consecutive samples in sample order, a UNIT_TILE x
// UNIT_TILE tile of a[s][i] * err[s][j]. `args.in_len` is the number of a
// rows: inputs + 1 (the bias row).
fn gradient_partials_at(index: u32, args: DispatchArgs, batch: Batch) {
    let column_tiles = (args.units + UNIT_TILE - 1u) / UNIT_TILE;
    let tiles = ((args.in_len + UNIT_TILE - 1u) / UNIT_TILE) * column_tiles;
    // The chunk's blocks, clipped to the batch's.
    let block = index / tiles;
    if !block_in_chunk(block, args, batch) {
        return;
    }
    let first_row = ((index % tiles) / column_tiles) * UNIT_TILE;
    let first_column = ((index % tiles) % column_tiles) * UNIT_TILE;
    let first = block * REDUCE_BLOCK;
    let end = min(first + REDUCE_BLOCK, batch.size);
    var sums = Sums();
    for (var s = first; s < end; s++) {
        let err = tensor_row(args.out_offset + s * args.units + first_column, 1u, first_column, args.units, UNIT_TILE);
        // a[s][i] for the tile's rows; the bias row's a is 1.
        var a = Row(vec4<f32>(1.0), vec4<f32>(1.0));
        for (var q = 0u; q < min(UNIT_TILE, 4u); q++) {
            if first_row + q < args.inputs {
                a[0][q] = tensors[args.in_offset + s * args.inputs + first_row + q];
            }
        }
        // if wide_tiles {
        for (var q = 4u; q < UNIT_TILE; q++) {
            if first_row + q < args.inputs {
                a[1][q - 4u] = tensors[args.in_offset + s * args.inputs + first_row + q];
            }
        }
        // } wide_tiles
        add_outer_product(&sums, a, err, UNIT_TILE);
    }
    let column = args.dst_offset + batch.block0 + block;
    let tile = vec2<u32>(first_row, first_column);
    var rows = sums;
    for (var q = 0u; q < UNIT_TILE; q++) {
        store_partials(rows[0], rows[1], q, args, tile, column);
        rows = next_rows(rows);
    }
}

// Row q of a gradient tile (a-row first_row + q, columns from
// first_column) into its parameters' rows of `reduce`, at `column`.
fn store_partials(low: vec4<f32>, high: vec4<f32>, q: u32, args: DispatchArgs, tile: vec2<u32>, column: u32) {
    let i = tile.x + q;
    if i >= args.in_len {
        return;
    }
    let first = args.kernel_offset + i * args.units + tile.y;
    for (var c = 0u; c < min(UNIT_TILE, 4u); c++) {
        if tile.y + c < args.units {
            reduce[column + (first + c) * args.out_len] = low[c];
        }
    }
    // if wide_tiles {
    for (var c = 4u; c < UNIT_TILE; c++) {
        if tile.y + c < args.units {
            reduce[column + (first + c) * args.out_len] = high[c - 4u];
        }
    }
    // } wide_tiles
}
// } layered

// Whether block `block` of the chunk is one of its blocks and has a column
// in the first reduction level (`args.out_len` columns): a block past the
// end of a smaller (last) batch still writes its zero sums, so no stale
// partial from an earlier batch enters the next level.
fn block_in_chunk(block: u32, args: DispatchArgs, batch: Batch) -> bool {
    let chunk_blocks = (CHUNK_SIZE + REDUCE_BLOCK - 1u) / REDUCE_BLOCK;
    return block < chunk_blocks && batch.block0 + block < args.out_len;
}

// if further_levels {
// A further level: REDUCE_BLOCK consecutive partial sums of a row become one.
fn reduce_partials_at(index: u32, args: DispatchArgs, batch: Batch) {
    if index >= args.rows * args.out_len {
        return;
    }
    let row = index % args.rows;
    let block = index / args.rows;
    let first = block * REDUCE_BLOCK;
    let end = min(first + REDUCE_BLOCK, args.in_len);
    var sum = 0.0;
    for (var k = first; k < end; k++) {
        sum += reduce[args.src_offset + row * args.in_len + k];
    }
    reduce[args.dst_offset + row * args.out_len + block] = sum;
}
// } further_levels
