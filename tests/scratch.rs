mod common;
use gpu_c2f::*;
#[test]
fn scratch() {
    let gpu = common::gpu();
    println!("{:?}", gpu.info);
    let init = Model::glorot_uniform(Architecture::seed(), 42);
    let cfg = TrainConfig::seed();
    let t = std::time::Instant::now();
    let c = cpu::train(&init, &cfg).unwrap();
    println!("cpu {:?}", t.elapsed());
    let g = gpu_c2f::gpu::train(gpu, &init, &cfg).unwrap();
    println!("gpu {:?}", g.timings);
    let maxd = c.loss_history.iter().zip(&g.output.loss_history).map(|(a,b)| (a-b).abs()/a.abs()).fold(0.0f32, f32::max);
    println!("loss0 {} {} final {} {} maxrel {}", c.loss_history[0], g.output.loss_history[0], c.final_loss(), g.output.final_loss(), maxd);
    println!("pred {} {}", c.model.predict(100.0), g.output.model.predict(100.0));
    println!("{:?}\n{:?}", c.model.params(), g.output.model.params());
}
