// Dense layers (the CPU reference's `dense_forward` and `dense_backward`,
// src/cpu.rs): a layer's outputs from its inputs, and its output error
// passed back to its inputs.
//
// Dense layers work in register tiles: an item computes SAMPLE_TILE
// samples x UNIT_TILE units (forward) or inputs (backward), so every value
// it loads is used several times. Each output is still one sum in index
// order, as the CPU reference adds it; vec4 arithmetic rounds each component
// on its own. The host sets the tile (src/gpu/plan.rs, `Tile`), one for
// the whole network: for the dispatch schedule 8 x 8 when any layer is
// wider than 4, else 4 x 4; 1 x 1 for the fused schedule, whose few threads
// want many small items. Both sides are at most 8: a row of a tile is two
// vec4 halves (`Row`), and a tile's sums are `Sums`, row q in `[2q]`
// (columns 0..3) and `[2q + 1]` (4..7). The code that touches a second half
// is in `wide_tiles` sections, which modules whose tiles are at most 4 x 4
// leave out: on lavapipe that halves the fused schedule's pipeline creation.
//
// The activation is the layer's own (forward) or the layer below's
// (backward): the functions in the `each forward_activation` and `each
// backward_activation` sections are written once per activation the job
// uses, and end in that activation's `store_forward_*` or `store_backward_*`
// (written by src/gpu/module.rs from shaders/activation.wgsl).

alias Row = array<vec4<f32>, 2>;
alias Sums = array<vec4<f32>, 16>;

// Items of a layer's tiles: ceil(samples / SAMPLE_TILE) x ceil(width / UNIT_TILE).
fn tile_of(index: u32, width: u32) -> vec2<u32> {
    let tiles = (width + UNIT_TILE - 1u) / UNIT_TILE;
    return vec2<u32>((index / tiles) * SAMPLE_TILE, (index % tiles) * UNIT_TILE);
}

// The loops over a tile run to the tile's constants and at most 4 long,
// so a driver unrolls them and every index into a tile becomes a constant:
// a loop left rolled with a computed index would send the whole tile from
// registers to scratch memory (on lavapipe, 8 x 8 tiles ran 1.6-2.5x
// slower so). The store loops, which a driver may not unroll, take row 0
// and move the rows up (`next_rows`) instead of indexing row q.

// tensors[base + k * stride] for k < n where first + k < limit, else 0.
fn tensor_row(base: u32, stride: u32, first: u32, limit: u32, n: u32) -> Row {
    var values = Row();
    for (var k = 0u; k < min(n, 4u); k++) {
        if first + k < limit {
            values[0][k] = tensors[base + k * stride];
        }
    }
    // if wide_tiles {
    for (var k = 4u; k < n; k++) {
        if first + k < limit {
            values[1][k - 4u] = tensors[base + k * stride];
        }
    }
    // } wide_tiles
    return values;
}

// params[base + k * stride] for k < n where first + k < limit, else 0.
fn param_row(base: u32, stride: u32, first: u32, limit: u32, n: u32) -> Row {
    var values = Row();
    for (var k = 0u; k < min(n, 4u); k++) {
        if first + k < limit {
            values[0][k] = params[base + k * stride];
        }
    }
    // if wide_tiles {
    for (var k = 4u; k < n; k++) {
        if first + k < limit {
            values[1][k - 4u] = params[base + k * stride];
        }
    }
    // } wide_tiles
    return values;
}

// sums[row q] += x[q] * w for the tile's first `rows` rows: for each
// output a multiply, then an add, as the CPU reference's `sum += x * w`.
fn add_outer_product(sums: ptr<function, Sums>, x: Row, w: Row, rows: u32) {
    for (var q = 0u; q < min(rows, 4u); q++) {
        add_row(sums, q, x[0][q], w);
    }
    // if wide_tiles {
    for (var q = 4u; q < rows; q++) {
        add_row(sums, q, x[1][q - 4u], w);
    }
    // } wide_tiles
}

fn add_row(sums: ptr<function, Sums>, q: u32, value: f32, w: Row) {
    (*sums)[2u * q] += value * w[0];
    // if wide_tiles {
    if UNIT_TILE > 4u {
        (*sums)[2u * q + 1u] += value * w[1];
    }
    // } wide_tiles
}

// The tile's rows moved up by one: the store loops take row 0 each time, so
// every index into a tile stays a constant even where a loop is not unrolled.
fn next_rows(sums: Sums) -> Sums {
    return Sums(
        sums[2], sums[3], sums[4], sums[5], sums[6], sums[7], sums[8], sums[9],
        sums[10], sums[11], sums[12], sums[13], sums[14], sums[15], vec4<f32>(), vec4<f32>(),
    );
}

// for each forward_activation {
// out[s][j] = f((sum_i in[s][i] * kernel[i][j]) + bias[j]), f the layer's
// activation ({{forward_activation}}).
fn dense_forward_{{forward_activation}}_at(index: u32, args: DispatchArgs, batch: Batch) {
    let tile = tile_of(index, args.units);
    if tile.x >= batch.size {
        return;
    }
    var sums = Sums();
    for (var i = 0u; i < args.inputs; i++) {
        let x = tensor_row(args.in_offset + tile.x * args.inputs + i, args.inputs, tile.x, batch.size, SAMPLE_TILE);
        let w = param_row(args.kernel_offset + i * args.units + tile.y, 1u, tile.y, args.units, UNIT_TILE);
        add_outer_product(&sums, x, w, SAMPLE_TILE);
    }
    let bias = param_row(args.bias_offset + tile.y, 1u, tile.y, args.units, UNIT_TILE);
    var rows = sums;
    for (var q = 0u; q < SAMPLE_TILE; q++) {
        forward_row_{{forward_activation}}(rows[0], rows[1], q, bias, args, tile, batch.size);
        rows = next_rows(rows);
    }
}

// Row q of a forward tile, plus the bias, stored inside the batch and the
// layer's width.
fn forward_row_{{forward_activation}}(low: vec4<f32>, high: vec4<f32>, q: u32, bias: Row, args: DispatchArgs, tile: vec2<u32>, size: u32) {
    if tile.x + q >= size {
        return;
    }
    let first = (tile.x + q) * args.units + tile.y;
    for (var c = 0u; c < min(UNIT_TILE, 4u); c++) {
        if tile.y + c < args.units {
            store_forward_{{forward_activation}}(first + c, low[c] + bias[0][c], args);
        }
    }
    // if wide_tiles {
    for (var c = 4u; c < UNIT_TILE; c++) {
        if tile.y + c < args.units {
            store_forward_{{forward_activation}}(first + c, high[c - 4u] + bias[1][c - 4u], args);
        }
    }
    // } wide_tiles
}
// } each forward_activation

// for each backward_activation {
// Error passed back through a Dense layer, to the sums of the layer below
// (activation f, here {{backward_activation}}):
// err_in[s][i] = (sum_j err_out[s][j] * kernel[i][j]) * f'(z[s][i]).
fn dense_backward_{{backward_activation}}_at(index: u32, args: DispatchArgs, batch: Batch) {
    let tile = tile_of(index, args.inputs);
    if tile.x >= batch.size {
        return;
    }
    var sums = Sums();
    for (var j = 0u; j < args.units; j++) {
        let e = tensor_row(args.in_offset + tile.x * args.units + j, args.units, tile.x, batch.size, SAMPLE_TILE);
        let w = param_row(args.kernel_offset + tile.y * args.units + j, args.units, tile.y, args.inputs, UNIT_TILE);
        add_outer_product(&sums, e, w, SAMPLE_TILE);
    }
    var rows = sums;
    for (var q = 0u; q < SAMPLE_TILE; q++) {
        backward_row_{{backward_activation}}(rows[0], rows[1], q, args, tile, batch.size);
        rows = next_rows(rows);
    }
}

// Row q of a backward tile, stored inside the batch and the layer's inputs.
fn backward_row_{{backward_activation}}(low: vec4<f32>, high: vec4<f32>, q: u32, args: DispatchArgs, tile: vec2<u32>, size: u32) {
    if tile.x + q >= size {
        return;
    }
    let first = (tile.x + q) * args.inputs + tile.y;
    for (var c = 0u; c < min(UNIT_TILE, 4u); c++) {
        if tile.y + c < args.inputs {
            store_backward_{{backward_activation}}(first + c, low[c], args);
        }
    }
    // if wide_tiles {
    for (var c = 4u; c < UNIT_TILE; c++) {
        if tile.y + c < args.inputs {
            store_backward_{{backward_activation}}(first + c, high[c - 4u], args);
        }
    }
    // } wide_tiles
}
// } each backward_activation
