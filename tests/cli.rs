//! The built `gpu-c2f` binary, run as a user would.

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

fn gpu_c2f(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-c2f"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_of(args: &[&str]) -> Value {
    let output = gpu_c2f(args);
    assert!(
        output.status.success(),
        "{args:?} failed: {}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

fn scratch(name: &str) -> PathBuf {
    let folder = std::env::temp_dir().join(format!("gpu-c2f-cli-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    folder.join(name)
}

/// The least-squares line through the seed's 7 pairs at 100 C (f64), see
/// tests/seed_job.rs for the 0.01 F tolerance.
fn least_squares_at_100() -> f64 {
    let (slope, intercept) = gpu_c2f::Dataset::seed().least_squares_line();
    slope * 100.0 + intercept
}

#[test]
fn adapter_auto_trains_on_a_gpu_and_prints_the_report() {
    let output = gpu_c2f(&["--adapter", "auto"]);
    let text = stdout(&output);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        text.starts_with("Training a 1-3-3-1 network (22 parameters) on 7 samples for 1000 epochs")
    );
    assert!(
        text.contains("Device:") && !text.contains("CPU reference"),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("Prediction:  100 °C -> "))
        .expect(&text);
    let predicted: f64 = line
        .trim_end_matches(" °F")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((predicted - least_squares_at_100()).abs() < 0.01, "{line}");
    for words in [
        "dense_0 (1 -> 3)",
        "dense_1 (3 -> 3)",
        "dense_2 (3 -> 1)",
        "Timings:",
        "train",
    ] {
        assert!(text.contains(words), "missing {words:?} in\n{text}");
    }
}

#[test]
fn json_report_has_every_key_and_the_gpu_agrees_with_the_cpu_reference() {
    let gpu = json_of(&["--json", "--predict", "-40", "--predict", "37.5"]);
    let cpu = json_of(&["--json", "--cpu-reference"]);
    // The binary takes the same adapter as the library tests (CI names it).
    if let Ok(expected) = std::env::var("GPU_C2F_EXPECT_ADAPTER") {
        let chosen =
            format!("{} ({})", gpu["device"]["name"], gpu["device"]["backend"]).replace('"', "");
        assert!(chosen.contains(&expected), "{expected:?} vs {chosen}");
    }
    for key in [
        "device",
        "epochs",
        "learning_rate",
        "seed",
        "loss_history",
        "final_loss",
        "predictions",
        "layers",
        "timings_ms",
    ] {
        assert!(gpu.get(key).is_some(), "missing key {key}");
    }
    assert!(
        gpu["device"]["name"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    assert!(gpu["device"]["backend"].is_string() && gpu["device"]["device_type"].is_string());
    assert_eq!(cpu["device"], "cpu-reference");
    assert_eq!(gpu["epochs"], 1000);
    assert_eq!(gpu["seed"], 42);
    assert!((gpu["learning_rate"].as_f64().unwrap() - 0.1).abs() < 1e-7);
    let losses = gpu["loss_history"].as_array().unwrap();
    assert_eq!(losses.len(), 1000);
    assert_eq!(gpu["final_loss"], losses[999]);
    let celsius: Vec<f64> = gpu["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["celsius"].as_f64().unwrap())
        .collect();
    assert_eq!(celsius, vec![100.0, -40.0, 37.5]);
    let at_100 = gpu["predictions"][0]["fahrenheit"].as_f64().unwrap();
    assert!((at_100 - least_squares_at_100()).abs() < 0.01);
    assert_eq!(gpu["layers"].as_array().unwrap().len(), 3);
    assert_eq!(gpu["layers"][1]["kernel"].as_array().unwrap().len(), 3);
    assert!(gpu["timings_ms"]["setup"].is_number() && gpu["timings_ms"]["train"].is_number());

    // Same seed, same job: the two paths agree epoch by epoch within the
    // library's GPU/CPU tolerance (bit for bit on lavapipe).
    let tolerance = gpu_c2f::compare::GPU_CPU_TOLERANCE;
    for (g, c) in losses.iter().zip(cpu["loss_history"].as_array().unwrap()) {
        let (g, c) = (g.as_f64().unwrap(), c.as_f64().unwrap());
        assert!(
            (g - c).abs() / c.abs() <= tolerance.loss_relative as f64,
            "{g} vs {c}"
        );
    }
}

#[test]
fn list_adapters_prints_index_name_backend_type_and_driver() {
    let output = gpu_c2f(&["--list-adapters"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let first = text.lines().next().expect("at least one adapter");
    assert!(
        first.starts_with("[0] ") && first.contains("backend") && first.contains("driver"),
        "{first}"
    );
}

#[test]
fn no_adapter_at_all_names_the_remedies() {
    for args in [
        &["--backend", "vulkan"][..],
        &["--backend", "vulkan", "--list-adapters"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_gpu-c2f"))
            .args(args)
            .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
            .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
            .output()
            .unwrap();
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{message}");
        for words in [
            "no GPU adapter found",
            "vulkan",
            "mesa-vulkan-drivers",
            "--cpu-reference",
        ] {
            assert!(
                message.contains(words),
                "{args:?}: missing {words:?} in {message}"
            );
        }
    }
}

#[test]
fn save_then_init_round_trips_the_weights() {
    let path = scratch("trained.json");
    let path_text = path.to_str().unwrap();
    let trained = json_of(&[
        "--json",
        "--cpu-reference",
        "--epochs",
        "300",
        "--save",
        path_text,
    ]);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(file["layers"], trained["layers"]);

    // 0 epochs from the file: the report shows exactly the file's weights.
    let loaded = json_of(&["--json", "--init", path_text, "--epochs", "0"]);
    assert_eq!(loaded["layers"], trained["layers"]);
    assert_eq!(loaded["seed"], Value::Null);
    assert_eq!(loaded["final_loss"], Value::Null);
    assert_eq!(loaded["predictions"][0], trained["predictions"][0]);

    // The same model as .safetensors loads to the same weights.
    let tensors = scratch("trained.safetensors");
    let tensors_text = tensors.to_str().unwrap();
    json_of(&[
        "--json",
        "--init",
        path_text,
        "--epochs",
        "0",
        "--save",
        tensors_text,
    ]);
    let from_tensors = json_of(&["--json", "--init", tensors_text, "--epochs", "0"]);
    assert_eq!(from_tensors["layers"], trained["layers"]);
    assert_eq!(from_tensors["predictions"], loaded["predictions"]);

    // Training on from the file continues where the first run stopped: its
    // first loss is the saved model's loss, already near the minimum.
    let resumed = json_of(&["--json", "--init", path_text, "--epochs", "5"]);
    let first = resumed["loss_history"][0].as_f64().unwrap();
    assert!(first < 0.07, "resumed run starts at loss {first}");

    // Architecture comes from the file.
    let wide = scratch("wide.json");
    json_of(&[
        "--json",
        "--cpu-reference",
        "--hidden",
        "5",
        "--epochs",
        "1",
        "--save",
        wide.to_str().unwrap(),
    ]);
    let report = json_of(&[
        "--json",
        "--cpu-reference",
        "--init",
        wide.to_str().unwrap(),
        "--epochs",
        "1",
    ]);
    assert_eq!(report["layers"].as_array().unwrap().len(), 2);
    assert_eq!(report["layers"][0]["bias"].as_array().unwrap().len(), 5);
}

#[test]
fn data_file_replaces_the_seed_pairs() {
    let csv = scratch("exact.csv");
    let rows: String = (-5..=5)
        .map(|i| format!("{},{}\n", i * 10, i as f32 * 18.0 + 32.0))
        .collect();
    std::fs::write(&csv, format!("celsius,fahrenheit\r\n{rows}")).unwrap();
    let report = json_of(&[
        "--json",
        "--cpu-reference",
        "--data",
        csv.to_str().unwrap(),
        "--hidden",
        "none",
    ]);
    assert_eq!(report["samples"], 11);
    let at_100 = report["predictions"][0]["fahrenheit"].as_f64().unwrap();
    // Exact data: the fit converges to F = 1.8 C + 32 (0.1 F: 1000 epochs
    // of Adam at lr 0.1 on a single Dense(1) end within a few hundredths).
    assert!((at_100 - 212.0).abs() < 0.1, "{at_100}");
}

#[test]
fn bad_input_gets_a_clear_message_and_a_non_zero_exit() {
    let missing = scratch("does-not-exist.csv");
    let not_json = scratch("not-json.json");
    std::fs::write(&not_json, "hello").unwrap();
    let one_layer = scratch("one-layer.json");
    std::fs::write(
        &one_layer,
        r#"{"layers": [{"kernel": [[1.8]], "bias": [32]}]}"#,
    )
    .unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["--epochs", "-3"], 2, "--epochs"),
        (vec!["--epochs", "many"], 2, "--epochs"),
        (vec!["--learning-rate", "0"], 2, "greater than 0"),
        (vec!["--learning-rate", "NaN"], 2, "not a finite number"),
        (vec!["--hidden", "3,,3"], 2, "--hidden"),
        (vec!["--hidden", "0"], 2, "at least 1"),
        (vec!["--hidden", "three"], 2, "not a positive whole number"),
        (vec!["--hidden", "8:mish"], 2, "known: linear, relu, tanh"),
        (
            vec!["--output-activation", "softmax"],
            2,
            "unknown activation",
        ),
        (
            vec!["--loss", "hinge"],
            2,
            "known: mse (mean_squared_error)",
        ),
        (vec!["--from-logits"], 2, "binary_crossentropy only"),
        (
            vec!["--predict", "1,2"],
            2,
            "has 2 value(s), but the network takes 1 input(s)",
        ),
        (
            vec!["--data", "examples/data/sine.csv", "--x", "x,,y"],
            2,
            "column 2 is empty",
        ),
        (
            vec!["--data", "examples/data/sine.csv", "--x", "x", "--y", "y,z"],
            1,
            "but not z",
        ),
        (
            vec!["--validation-split", "0.99"],
            2,
            "leaves 0 of the 7 samples for training and 7 for validation",
        ),
        (vec!["--validation-split", "1"], 2, "at least 0 and below 1"),
        (vec!["--validation-split", "half"], 2, "--validation-split"),
        (vec!["--metrics", "mae,f1"], 2, "unknown metric \"f1\""),
        (vec!["--metrics", "mae,mae"], 2, "given twice"),
        (
            vec!["--data", "examples/data/sine.csv", "--x", "x", "--y", "X"],
            2,
            "named twice",
        ),
        (vec!["--patience", "3", "--epochs", "0"], 2, "trains none"),
        // Checked before any adapter is looked for.
        (
            vec!["--loss", "bce", "--adapter", "no-such-adapter-xyz"],
            1,
            "needs targets in [0, 1]",
        ),
        (vec!["--min-delta", "0.1"], 2, "--patience"),
        (vec!["--restore-best-weights"], 2, "--patience"),
        (vec!["--patience", "-1"], 2, "--patience"),
        (vec!["--patience", "2", "--min-delta", "-1"], 2, "min_delta"),
        (
            vec!["--loss", "binary_crossentropy", "--cpu-reference"],
            1,
            "needs targets in [0, 1] (probabilities), but sample 1 has -40",
        ),
        (vec!["--backend", "quantum"], 2, "--backend"),
        (vec!["--predict", "abc"], 2, "not a number"),
        (vec!["--no-such-flag"], 2, "--no-such-flag"),
        (
            vec!["--adapter", "no-such-adapter-xyz"],
            1,
            "Adapters found",
        ),
        (
            vec!["--data", missing.to_str().unwrap()],
            1,
            "does-not-exist.csv",
        ),
        (
            vec!["--init", not_json.to_str().unwrap()],
            1,
            "not a model file",
        ),
        (
            vec!["--init", one_layer.to_str().unwrap(), "--hidden", "3"],
            2,
            "cannot change the network of --init",
        ),
        (vec!["--init", "model.onnx"], 2, "does not read it"),
        (vec!["--save", "/no/such/folder/model.json"], 1, "--save"),
    ];
    for (args, code, words) in cases {
        let output = gpu_c2f(&args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {message}");
        assert!(
            message.contains(words),
            "{args:?}: expected {words:?} in {message}"
        );
        assert!(
            !message.contains("panicked"),
            "{args:?} panicked: {message}"
        );
    }
}

#[test]
fn compare_reports_agreement_in_text_and_json_and_draws_both_curves() {
    let svg = scratch("compare.svg");
    let report = json_of(&["--json", "--compare", "--plot", svg.to_str().unwrap()]);
    // The verdict: every one of the seed job's 1000 steps replayed on the
    // CPU from the GPU's own state, within its rounding bounds.
    let shadow = &report["shadow_check"];
    assert_eq!(shadow["within_tolerance"], true, "{shadow}");
    assert_eq!(shadow["steps_checked"], 1000, "{shadow}");
    assert_eq!(shadow["steps_expected"], 1000, "{shadow}");
    assert_eq!(shadow["not_covered"], serde_json::json!([]));
    // The check's power, per epoch: early on it catches a gradient off by
    // a few parts per million of itself; the seed job ends at its minimum,
    // where a gradient is rounding noise.
    let power = shadow["power"].as_array().unwrap();
    assert_eq!(power.len(), 1000, "one entry an epoch");
    assert_eq!(power[0]["epoch"], 1);
    let first = power[0]["median"].as_f64().unwrap();
    assert!(first < 1e-4, "{}", power[0]);
    assert!(
        power[999]["worst"]
            .as_f64()
            .is_none_or(|worst| worst > first)
    );
    for part in ["gradients", "losses", "states"] {
        let ratio = shadow[part]["ratio"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&ratio), "{part}: {shadow}");
    }
    assert_eq!(shadow["chain_breaks"], serde_json::json!([]));
    // The whole-run comparison stays, as information.
    let comparison = &report["comparison"];
    assert_eq!(comparison["within_tolerance"], true, "{comparison}");
    for part in ["loss", "weights", "predictions"] {
        for key in ["absolute", "relative", "at"] {
            assert!(comparison[part][key].is_number(), "comparison.{part}.{key}");
        }
    }
    let tolerance = gpu_c2f::compare::GPU_CPU_TOLERANCE;
    assert_eq!(
        comparison["tolerance"]["loss_relative"].as_f64().unwrap() as f32,
        tolerance.loss_relative
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    let document = roxmltree::Document::parse(&text).expect("the plot is valid SVG");
    let words: String = document.descendants().filter_map(|n| n.text()).collect();
    for label in [
        "Epoch",
        "Loss",
        "CPU reference",
        report["device"]["name"].as_str().unwrap(),
    ] {
        assert!(words.contains(label), "{label:?} missing from the plot");
    }

    // The text report carries the same figures.
    let output = gpu_c2f(&["--compare", "--quiet"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("Shadow check: 1000 of 1000 training steps replayed")
            && text.contains("every value within its rounding bound")
            && text.contains("Trajectory:"),
        "{text}"
    );
    assert!(text.contains(&format!("{} relative loss", tolerance.loss_relative)));
}

#[test]
fn compare_passes_on_other_shapes() {
    for args in [
        &[
            "--samples",
            "300",
            "--hidden",
            "17",
            "--epochs",
            "30",
            "--learning-rate",
            "0.01",
        ][..],
        &[
            "--samples",
            "5000",
            "--hidden",
            "8,4",
            "--epochs",
            "5",
            "--schedule",
            "dispatch",
        ],
        &["--hidden", "none", "--epochs", "200"],
    ] {
        let mut all = vec!["--json", "--compare"];
        all.extend_from_slice(args);
        let report = json_of(&all);
        assert_eq!(
            report["shadow_check"]["within_tolerance"], true,
            "{args:?}: {}",
            report["shadow_check"]
        );
    }
}

#[test]
fn png_plot_is_written_and_bad_plot_paths_fail_before_training() {
    let png = scratch("loss.png");
    let output = gpu_c2f(&[
        "--cpu-reference",
        "--quiet",
        "--plot",
        png.to_str().unwrap(),
        "--plot-log",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5000);

    for (path, words, code) in [
        ("/tmp/loss.jpg", ".svg or .png", 2),
        ("/no/such/folder/loss.svg", "cannot write", 1),
    ] {
        let started = std::time::Instant::now();
        let output = gpu_c2f(&["--cpu-reference", "--epochs", "100000000", "--plot", path]);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{message}");
        assert!(
            message.contains("--plot") && message.contains(words),
            "{message}"
        );
        // 1e8 epochs would take minutes: failing in seconds proves the
        // check ran before training.
        assert!(started.elapsed().as_secs() < 20);
    }
}

#[test]
fn samples_flag_trains_on_the_exact_formula() {
    let report = json_of(&[
        "--json",
        "--cpu-reference",
        "--samples",
        "2000",
        "--hidden",
        "none",
        "--epochs",
        "1500",
    ]);
    assert_eq!(report["samples"], 2000);
    let at_100 = report["predictions"][0]["fahrenheit"].as_f64().unwrap();
    // Exact data on a single Dense(1): converges to 212 (0.1 F, as above).
    assert!((at_100 - 212.0).abs() < 0.1, "{at_100}");
}

#[test]
fn batch_sizes_beyond_u32_are_one_full_batch_not_wrapped() {
    // `--batch-size 4294967296` used to train as `--batch-size 1`, and
    // 4294967299 as 3: the size was cut to 32 bits.
    let history = |batch: &str| {
        json_of(&[
            "--json",
            "--cpu-reference",
            "--samples",
            "64",
            "--epochs",
            "3",
            "--batch-size",
            batch,
        ])["loss_history"]
            .to_string()
    };
    let whole = history("all");
    assert_eq!(history("4294967296"), whole);
    assert_eq!(history("4294967299"), whole);
    assert_eq!(history("18446744073709551615"), whole);
    assert_ne!(
        history("1"),
        whole,
        "the check must see a batch-size change"
    );
}

#[test]
fn csv_columns_are_taken_by_header_name_and_quoted_or_semicolon_files_read() {
    let pairs = [(-40.0, -40.0), (0.0, 32.0), (37.0, 98.6), (100.0, 212.0)];
    let write = |name: &str, header: &str, row: &dyn Fn(f64, f64) -> String| {
        let path = scratch(name);
        let mut text = header.to_string();
        for (c, f) in pairs {
            text += &row(c, f);
        }
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let files = [
        write("plain.csv", "", &|c, f| format!("{c},{f}\n")),
        write("swapped.csv", "fahrenheit,celsius\n", &|c, f| {
            format!("{f},{c}\n")
        }),
        write("quoted.csv", "\"Celsius\",\"Fahrenheit\"\r\n", &|c, f| {
            format!("\"{c}\",\"{f}\"\r\n")
        }),
        write("semicolons.csv", "celsius;fahrenheit\n", &|c, f| {
            format!("{c};{f}\n")
        }),
        write("extra.csv", "day,FAHRENHEIT,celsius\n", &|c, f| {
            format!("x,{f},{c}\n")
        }),
    ];
    let run = |file: &str, extra: &[&str]| {
        let mut args = vec!["--json", "--cpu-reference", "--epochs", "5", "--data", file];
        args.extend_from_slice(extra);
        json_of(&args)["loss_history"].to_string()
    };
    let expected = run(&files[0], &[]);
    for file in &files[1..] {
        assert_eq!(run(file, &[]), expected, "{file}");
    }
    let pipes = write("pipes.csv", "", &|c, f| format!("{c}|{f}\n"));
    assert_eq!(run(&pipes, &["--delimiter", "|"]), expected);
}

#[test]
fn tiny_losses_print_in_scientific_notation_and_json_keeps_them_whole() {
    // 8 exact points of the formula: Adam drives the loss to ~1e-9, which
    // used to print as 0.000000006509285.
    let args = ["--cpu-reference", "--samples", "8", "--epochs", "3000"];
    let json = json_of(&[&args[..], &["--json"]].concat());
    let final_loss = json["final_loss"].as_f64().unwrap();
    assert!(
        final_loss < 1e-4,
        "the case needs a tiny loss: {final_loss}"
    );
    let text = stdout(&gpu_c2f(&args));
    let line = text.lines().find(|l| l.starts_with("Final loss:")).unwrap();
    let shown = line.split_whitespace().nth(2).unwrap();
    assert!(shown.contains("e-"), "{line}");
    assert_eq!(shown.parse::<f32>().unwrap(), final_loss as f32, "{line}");
}

#[test]
fn list_adapters_json_is_json() {
    let output = gpu_c2f(&["--list-adapters", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let listed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let adapters = listed["adapters"].as_array().unwrap();
    assert!(!adapters.is_empty());
    for (index, adapter) in adapters.iter().enumerate() {
        assert_eq!(adapter["index"], index);
        for key in ["name", "backend", "device_type", "driver"] {
            assert!(adapter[key].is_string(), "{key} in {adapter}");
        }
    }
}

#[test]
fn seed_with_init_seeds_the_shuffle() {
    let model = scratch("seeded-start.json");
    let model_text = model.to_str().unwrap();
    json_of(&[
        "--json",
        "--cpu-reference",
        "--epochs",
        "1",
        "--save",
        model_text,
    ]);
    let history = |seed: &str| {
        json_of(&[
            "--json",
            "--cpu-reference",
            "--init",
            model_text,
            "--samples",
            "100",
            "--batch-size",
            "10",
            "--epochs",
            "2",
            "--seed",
            seed,
        ])
    };
    let (a, b) = (history("7"), history("8"));
    assert_ne!(a["loss_history"], b["loss_history"], "the seed shuffles");
    assert_eq!(a["loss_history"], history("7")["loss_history"]);
    assert_eq!(a["seed"], Value::Null, "no initialisation seed with --init");
    assert_eq!(a["shuffle_seed"], 7);
}

#[test]
fn wgpu_adapter_name_picks_the_adapter_and_the_flag_wins() {
    let run = |name: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gpu-c2f"))
            .args(args)
            .env("WGPU_ADAPTER_NAME", name)
            .output()
            .unwrap()
    };
    // A name that matches nothing: refused, naming the variable.
    let output = run("no-such-gpu", &["--epochs", "1", "--quiet"]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains("WGPU_ADAPTER_NAME is set to \"no-such-gpu\"")
            && message.contains("no adapter name contains \"no-such-gpu\""),
        "{message}"
    );
    // The flag wins over it.
    let output = run(
        "no-such-gpu",
        &["--epochs", "1", "--quiet", "--adapter", "auto"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    // A part of a real adapter's name (upper-cased: matching ignores case)
    // trains on that adapter. Even "0" would be a name, not an index.
    let listed = json_of(&["--list-adapters", "--json"]);
    let name = listed["adapters"][0]["name"].as_str().unwrap().to_string();
    let part: String = name.chars().take(6).collect::<String>().to_uppercase();
    let output = run(&part, &["--epochs", "1", "--json"]);
    assert!(output.status.success(), "{part}: {}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let chosen = report["device"]["name"].as_str().unwrap();
    assert!(chosen.to_uppercase().contains(&part), "{part} -> {chosen}");
}

#[test]
fn help_is_grouped_and_ends_with_examples() {
    let text = stdout(&gpu_c2f(&["--help"]));
    let position = |words: &str| {
        text.find(words)
            .unwrap_or_else(|| panic!("{words:?} missing from --help:\n{text}"))
    };
    let headings = ["Training:", "Data:", "GPU:", "Output:", "Examples:"];
    let positions: Vec<usize> = headings.iter().map(|h| position(h)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(position("--delimiter") > positions[1] && position("--delimiter") < positions[2]);
}

/// Runs a long CPU training with `--save` and `--plot` into an empty
/// folder, checks that nothing is in the folder while it trains, sends
/// `signal`, and returns the exit code and what the folder holds after.
#[cfg(unix)]
fn interrupted_run(signal: &str) -> (Option<i32>, Vec<String>) {
    let folder = scratch(&format!("interrupted-{signal}"));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-c2f"))
        .args(["--cpu-reference", "--quiet", "--epochs", "100000000"])
        .arg("--save")
        .arg(folder.join("model.json"))
        .arg("--plot")
        .arg(folder.join("loss.svg"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let listing = || -> Vec<String> {
        std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        listing(),
        Vec::<String>::new(),
        "files made before the results"
    );
    let killed = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{signal} {}", child.id()))
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    (status.code(), listing())
}

#[cfg(unix)]
#[test]
fn sigterm_and_sigint_exit_143_and_130_and_leave_no_files() {
    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let (exit, left) = interrupted_run(signal);
        assert_eq!(exit, Some(code), "SIG{signal}");
        assert!(left.is_empty(), "SIG{signal} left {left:?}");
    }
}

#[cfg(unix)]
#[test]
fn saved_files_get_the_permissions_of_any_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let model = scratch("mode-model.json");
    let plot = scratch("mode-loss.svg");
    let plain = scratch("mode-plain");
    std::fs::write(&plain, "").unwrap();
    let output = gpu_c2f(&[
        "--cpu-reference",
        "--epochs",
        "2",
        "--save",
        model.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let mode = |p: &PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // 0666 less the umask, as for `plain`; tempfile alone gives 0600.
    assert_eq!(mode(&model), mode(&plain), "{:o}", mode(&model));
    assert_eq!(mode(&plot), mode(&plain), "{:o}", mode(&plot));
}

#[test]
fn dump_wgsl_writes_every_module_a_run_compiles_under_its_label() {
    let folder = scratch("dumped-wgsl");
    let _ = std::fs::remove_dir_all(&folder);
    for schedule in ["fused", "samples", "dispatch"] {
        let output = Command::new(env!("CARGO_BIN_EXE_gpu-c2f"))
            .args(["--epochs", "2", "--quiet", "--schedule", schedule])
            .env("GPU_C2F_DUMP_WGSL", &folder)
            .output()
            .expect("the binary runs");
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let mut names: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // The fused module's label has the adapter's workgroup size.
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[0], "dispatch-1-3-3-1-n7-b7-tile4x4.wgsl");
    assert!(names[1].starts_with("fused-1-3-3-1-n7-b7-wg"), "{names:?}");
    assert_eq!(names[2], "samples-1-3-3-1-n7-b7.wgsl");
    // What was dumped is what the tests keep as the seed job's modules
    // (tests/golden, the fused one built for a software adapter's 8-thread
    // workgroup).
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut compared = 0;
    for name in &names {
        let golden = golden.join(name);
        if golden.exists() {
            let dumped = std::fs::read_to_string(folder.join(name)).unwrap();
            assert!(
                dumped == std::fs::read_to_string(&golden).unwrap(),
                "{name} differs from {}",
                golden.display()
            );
            compared += 1;
        }
    }
    assert!(compared >= 2, "{names:?}");
    // A folder that cannot be made fails the run and says why.
    let blocker = scratch("dump-blocker");
    std::fs::write(&blocker, "a file, not a folder").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gpu-c2f"))
        .args(["--epochs", "1", "--quiet"])
        .env("GPU_C2F_DUMP_WGSL", blocker.join("wgsl"))
        .output()
        .expect("the binary runs");
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("GPU_C2F_DUMP_WGSL"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn shuffle_false_takes_the_batches_in_order_and_says_so() {
    let args = [
        "--samples",
        "100",
        "--batch-size",
        "10",
        "--epochs",
        "3",
        "--json",
    ];
    let shuffled = json_of(&args);
    let in_order = json_of(&[&args[..], &["--shuffle", "false"]].concat());
    assert_eq!(shuffled["shuffle"], true);
    assert_eq!(in_order["shuffle"], false);
    // The same start, another order of the same samples: other losses.
    assert_ne!(shuffled["loss_history"], in_order["loss_history"]);
    // One batch is never shuffled, whatever the flag says.
    assert_eq!(json_of(&["--epochs", "1", "--json"])["shuffle"], false);
    let output = gpu_c2f(&["--shuffle", "maybe"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--shuffle"), "{}", stderr(&output));
}

#[test]
fn activations_and_losses_train_report_and_round_trip_through_model_files() {
    let saved = scratch("relu-sigmoid.json");
    let labels = scratch("labels.csv");
    // Is it warm? 1 from 20 °C up.
    let mut text = "celsius,fahrenheit\n".to_string();
    for c in (-10..=40).step_by(2) {
        text += &format!("{c},{}\n", if c >= 20 { 1 } else { 0 });
    }
    std::fs::write(&labels, text).unwrap();
    let args = [
        "--json",
        "--data",
        labels.to_str().unwrap(),
        "--hidden",
        "8:relu,4:tanh",
        "--output-activation",
        "sigmoid",
        "--loss",
        "bce",
        "--learning-rate",
        "0.05",
        "--epochs",
        "300",
        "--predict",
        "0",
        "--predict",
        "35",
        "--save",
        saved.to_str().unwrap(),
    ];
    let report = json_of(&args);
    assert_eq!(report["architecture"], "1-8relu-4tanh-1sigmoid");
    assert_eq!(report["loss"], "binary_crossentropy");
    let losses = report["loss_history"].as_array().unwrap();
    let last = losses.last().unwrap().as_f64().unwrap();
    // ln 2 = 0.69 is a coin flip; the 26 labels split at 20 °C are learnt.
    assert!(last < 0.2, "final binary cross-entropy {last}");
    let p = |k: usize| report["predictions"][k]["fahrenheit"].as_f64().unwrap();
    assert!(
        p(1) < 0.2 && p(2) > 0.8,
        "P(warm) at 0 and 35 °C: {} {}",
        p(1),
        p(2)
    );
    let layers = report["layers"].as_array().unwrap();
    let activations: Vec<&str> = layers
        .iter()
        .map(|l| l["activation"].as_str().unwrap())
        .collect();
    assert_eq!(activations, ["relu", "tanh", "sigmoid"]);

    // The saved file keeps each layer's activation: --init rebuilds the
    // same network and predicts the same probabilities.
    let again = json_of(&[
        "--json",
        "--init",
        saved.to_str().unwrap(),
        "--epochs",
        "0",
        "--predict",
        "0",
        "--predict",
        "35",
    ]);
    assert_eq!(again["architecture"], "1-8relu-4tanh-1sigmoid");
    assert_eq!(again["predictions"], report["predictions"]);
}

/// README.md's "Beyond straight lines" commands, and the final loss each
/// must stay below.
const SHIPPED_EXAMPLES: [(&str, f64); 4] = [
    (
        "--data examples/data/sine.csv --x x --y y --hidden 16:relu,16:relu --learning-rate 0.01 --epochs 1000",
        0.01,
    ),
    (
        "--data examples/data/sine.csv --x x --y y --hidden 16:tanh,16:tanh --learning-rate 0.01 --epochs 1000 --loss huber",
        0.01,
    ),
    (
        "--data examples/data/wind_chill.csv --x celsius,wind_kmh --y wind_chill --hidden 16:relu,16:relu --learning-rate 0.003 --epochs 1500 --predict -20,30",
        0.5,
    ),
    (
        "--data examples/data/warm.csv --y warm --hidden 8:relu --output-activation sigmoid --loss binary_crossentropy --learning-rate 0.05 --epochs 300 --predict 10 --predict 30",
        0.2,
    ),
];

#[test]
fn shipped_examples_reach_their_stated_losses() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for (command, bound) in SHIPPED_EXAMPLES {
        assert!(
            readme.contains(&format!("`cargo run --release -- {command}`")),
            "README.md does not show {command}"
        );
        let mut args: Vec<&str> = command.split(' ').collect();
        args.push("--json");
        let report = json_of(&args);
        let last = report["final_loss"].as_f64().unwrap();
        assert!(
            last < bound,
            "{command}: final loss {last}, stated below {bound}"
        );
    }
}

#[test]
fn validation_split_holds_out_the_last_rows_and_reports_val_loss() {
    let plot = scratch("val.svg");
    let args = [
        "--json",
        "--data",
        "examples/data/sine.csv",
        "--x",
        "x",
        "--y",
        "y",
        "--hidden",
        "16:tanh,16:tanh",
        "--learning-rate",
        "0.01",
        "--epochs",
        "200",
        "--validation-split",
        "0.2",
        "--plot",
        plot.to_str().unwrap(),
    ];
    let report = json_of(&args);
    // 201 rows: floor(201 * 0.8) = 160 trained on, the last 41 held out.
    assert_eq!(report["samples"], 160);
    assert_eq!(report["validation_samples"], 41);
    let val = report["val_loss_history"].as_array().unwrap();
    assert_eq!(val.len(), 200);
    assert_eq!(report["final_val_loss"], val[199]);
    // The held-out rows are x in [2.2, pi], beyond every trained x: the
    // network extrapolates there, so val_loss stays well above the loss.
    let (loss, val_loss) = (
        report["final_loss"].as_f64().unwrap(),
        report["final_val_loss"].as_f64().unwrap(),
    );
    assert!(
        loss < 0.01 && val_loss > loss,
        "loss {loss}, val_loss {val_loss}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.contains("val_loss"), "the plot has no val_loss curve");

    let text = stdout(&gpu_c2f(&args[1..]));
    assert!(text.contains("Validation:  val_loss"), "{text}");
    assert!(text.contains("on the last 41 rows, held out"), "{text}");
}

#[test]
fn early_stopping_stops_reports_and_keeps_the_best_epoch() {
    // No epoch can beat the first by 1e9: with patience 3 training stops
    // after epoch 4 and keeps epoch 1's weights.
    let args = [
        "--json",
        "--patience",
        "3",
        "--min-delta",
        "1e9",
        "--restore-best-weights",
    ];
    let report = json_of(&args);
    assert_eq!(report["loss_history"].as_array().unwrap().len(), 4);
    let stop = &report["early_stopping"];
    assert_eq!(stop["monitor"], "loss");
    assert_eq!(stop["stopped_epoch"], 4);
    assert_eq!(stop["best_epoch"], 1);
    assert_eq!(stop["restored"], true);
    assert_eq!(stop["best"], report["loss_history"][0]);
    // The weights reported are epoch 1's: a 1-epoch run from the same seed.
    let one_epoch = json_of(&["--json", "--epochs", "1"]);
    assert_eq!(report["layers"], one_epoch["layers"]);

    let text = stdout(&gpu_c2f(&args[1..]));
    assert!(
        text.contains("Early stop:  stopped after epoch 4 of 1000: loss did not improve"),
        "{text}"
    );
    assert!(text.contains("kept the weights of epoch 1"), "{text}");
}

#[test]
fn several_input_and_target_columns_train_and_name_the_predictions() {
    // Two targets of two inputs: the network's input width and output
    // units follow the columns, the predictions are keyed by them, and a
    // saved model trains on again only with the same columns.
    let data = scratch("two-by-two.csv");
    let mut text = "a,b,sum,diff\n".to_string();
    for k in 0..60 {
        let (a, b) = ((k % 10) as f32 * 0.3 - 1.5, (k / 10) as f32 * 0.4 - 1.0);
        text += &format!("{a},{b},{},{}\n", a + b, a - b);
    }
    std::fs::write(&data, text).unwrap();
    let model = scratch("two-by-two.json");
    let report = json_of(&[
        "--json",
        "--data",
        data.to_str().unwrap(),
        "--x",
        "a,b",
        "--y",
        "sum,diff",
        "--hidden",
        "4",
        "--epochs",
        "300",
        "--learning-rate",
        "0.05",
        "--predict",
        "1,0.5",
        "--save",
        model.to_str().unwrap(),
    ]);
    assert_eq!(report["architecture"], "2-4-2");
    assert_eq!(report["columns"]["x"], serde_json::json!(["a", "b"]));
    let p = &report["predictions"][0];
    assert_eq!((p["a"].as_f64(), p["b"].as_f64()), (Some(1.0), Some(0.5)));
    // A linear network learns both sums exactly.
    let (sum, diff) = (p["sum"].as_f64().unwrap(), p["diff"].as_f64().unwrap());
    assert!((sum - 1.5).abs() < 0.01 && (diff - 0.5).abs() < 0.01, "{p}");
    let output = gpu_c2f(&["--init", model.to_str().unwrap(), "--epochs", "1"]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains("the 2-4-2 network takes 2 input(s) and gives 2 output(s)"),
        "{message}"
    );
}

#[test]
fn metrics_are_reported_per_epoch_beside_the_loss() {
    let args = [
        "--json",
        "--data",
        "examples/data/warm.csv",
        "--y",
        "warm",
        "--hidden",
        "8:relu",
        "--output-activation",
        "sigmoid",
        "--loss",
        "binary_crossentropy",
        "--learning-rate",
        "0.05",
        "--epochs",
        "300",
        "--validation-split",
        "0.25",
        "--metrics",
        "accuracy,mse",
    ];
    let report = json_of(&args);
    let metrics = report["metrics"].as_object().unwrap();
    let keys: Vec<&str> = metrics.keys().map(String::as_str).collect();
    assert_eq!(keys, ["accuracy", "mse", "val_accuracy", "val_mse"]);
    for values in metrics.values() {
        assert_eq!(values.as_array().unwrap().len(), 300);
    }
    // 90 rows trained on (of 120): a whole number of hits, and most of them
    // once learnt (the labels are noisy only near 20 °C).
    let accuracy = metrics["accuracy"][299].as_f64().unwrap();
    assert!(accuracy > 0.85, "accuracy {accuracy}");
    assert!(((accuracy * 90.0) - (accuracy * 90.0).round()).abs() < 1e-3);
    let text = stdout(&gpu_c2f(&args[1..]));
    assert!(
        text.contains("Metrics:     accuracy ") && text.contains("val_mse "),
        "{text}"
    );
}

/// Adam's state travels in .keras and .json files: 20 epochs, saved, then
/// 20 more from the file are the same run as 40 epochs at once, bit for
/// bit (the same arithmetic on the same device from the same state: the
/// seed job's one batch per epoch has no shuffle order to differ), on the
/// GPU and the CPU reference, and the shadow check passes from a resumed
/// state. A file without Adam's state (.weights.h5) starts Adam fresh,
/// which the same comparison tells apart: the check can fail.
#[test]
fn init_resumes_adam_and_continues_the_run_bit_for_bit() {
    for device in [&["--compare"][..], &["--cpu-reference"]] {
        let whole = json_of(&[&["--json", "--epochs", "40"], device].concat());
        for (format, resumes) in [("keras", true), ("json", true), ("weights.h5", false)] {
            let path = scratch(&format!("half.{format}"));
            let path = path.to_str().unwrap();
            let first = [&["--json", "--epochs", "20", "--save", path], device].concat();
            json_of(&first);
            let second = json_of(&[&["--json", "--epochs", "20", "--init", path], device].concat());
            let tail = &whole["loss_history"].as_array().unwrap()[20..];
            let same = second["loss_history"].as_array().unwrap() == tail
                && second["layers"] == whole["layers"];
            assert_eq!(same, resumes, "{format} {device:?}: {second:#}");
            let adam = second["adam_start"].as_str().unwrap();
            assert_eq!(
                adam.starts_with("resumed after 20 steps"),
                resumes,
                "{adam}"
            );
        }
    }
}

/// One job, two faces: the job the CLI's certificate names (`--compare
/// --json`), planned as the page plans it (`Job::plan`, from the job's JSON
/// alone), trains the same run as the CLI did, bit for bit (the same
/// adapter, the same arithmetic).
#[test]
fn the_certificates_job_trains_the_clis_run_through_the_pages_call() {
    use gpu_c2f::gpu::{self, AdapterSelector, BackendChoice, Gpu};
    let flags = [
        "--json",
        "--compare",
        "--hidden",
        "8:relu,4:tanh",
        "--validation-split",
        "0.3",
        "--patience",
        "3",
        "--metrics",
        "mae",
        "--epochs",
        "60",
        "--predict",
        "37",
    ];
    let report = json_of(&flags);
    let certificate = &report["certificate"];
    assert_eq!(certificate["passed"], true, "{certificate:#}");
    let job = gpu_c2f::Job::from_json(&certificate["job"].to_string()).unwrap();
    assert_eq!(job.metrics, ["mae"]);
    let (start, config) = job.plan(None, None).unwrap();
    let gpu = Gpu::new(&AdapterSelector::Auto, BackendChoice::All).unwrap();
    let run = gpu::train(&gpu, &start.model, &config).unwrap().output;
    let cli: Vec<f32> = serde_json::from_value(report["loss_history"].clone()).unwrap();
    assert_eq!(run.loss_history, cli);
    let val: Vec<f32> = serde_json::from_value(report["val_loss_history"].clone()).unwrap();
    assert_eq!(run.val_loss_history, val);
    let at_37 = report["predictions"][1]["fahrenheit"].as_f64().unwrap() as f32;
    assert_eq!(run.model.predict(37.0), at_37);
}

/// `--job FILE`: a certificate (here a `--compare --json` report) reruns
/// the run it certified, bit for bit; a job with an unknown key, or beside a
/// flag it sets, is refused as a flag error naming it.
#[test]
fn job_files_rerun_what_was_certified_and_refuse_what_they_do_not_know() {
    let flags = [
        "--json",
        "--compare",
        "--hidden",
        "8:relu",
        "--epochs",
        "40",
        "--predict",
        "37",
    ];
    let report = json_of(&flags);
    let path = scratch("certified.json");
    std::fs::write(&path, report.to_string()).unwrap();
    let path = path.to_str().unwrap();
    let rerun = json_of(&["--json", "--job", path]);
    assert_eq!(rerun["loss_history"], report["loss_history"]);
    assert_eq!(rerun["predictions"], report["predictions"]);
    let bad = scratch("bad-job.json");
    std::fs::write(&bad, r#"{"epoch": 3}"#).unwrap();
    for (args, words) in [
        (
            vec!["--job", bad.to_str().unwrap()],
            "unknown field `epoch`",
        ),
        (vec!["--job", path, "--epochs", "3"], "cannot be used with"),
    ] {
        let output = gpu_c2f(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&output).contains(words),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}
