//! Bad input of every class, run through the built binary: each case ends
//! with the stated exit code, a message with the stated key words, no
//! panic, and no damage to existing files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn gpu_c2f(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gpu-c2f"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// `gpu_c2f`, killed after `seconds` (a failed test, not a hung one).
fn gpu_c2f_within(args: &[&str], seconds: u64) -> Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-c2f"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed().as_secs() >= seconds {
            child.kill().unwrap();
            panic!("{args:?} still ran after {seconds} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn folder() -> PathBuf {
    let folder = std::env::temp_dir().join(format!("gpu-c2f-errors-{}", std::process::id()));
    std::fs::create_dir_all(&folder).unwrap();
    folder
}

fn file(name: &str, contents: &str) -> String {
    let path = folder().join(name);
    std::fs::write(&path, contents).unwrap();
    path.to_str().unwrap().to_string()
}

struct Case {
    class: &'static str,
    args: Vec<String>,
    code: i32,
    words: &'static [&'static str],
}

fn case(class: &'static str, args: &[&str], code: i32, words: &'static [&'static str]) -> Case {
    Case {
        class,
        args: args.iter().map(|a| a.to_string()).collect(),
        code,
        words,
    }
}

fn check(cases: &[Case]) {
    for case in cases {
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let output = gpu_c2f(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = format!(
            "[{}] {:?}: exit {:?}, stderr: {stderr}",
            case.class,
            case.args,
            output.status.code()
        );
        assert_eq!(output.status.code(), Some(case.code), "{context}");
        for word in case.words {
            assert!(stderr.contains(word), "{context}\nmissing {word:?}");
        }
        assert!(!stderr.contains("panicked"), "{context}");
    }
}

#[test]
fn flags() {
    check(&[
        case("flags", &["--epochs", "-3"], 2, &["--epochs", "-3"]),
        case("flags", &["--epochs", "ten"], 2, &["--epochs", "ten"]),
        case(
            "flags",
            &["--learning-rate", "0"],
            2,
            &["--learning-rate", "greater than 0"],
        ),
        case(
            "flags",
            &["--learning-rate", "-0.5"],
            2,
            &["greater than 0"],
        ),
        case(
            "flags",
            &["--learning-rate", "NaN"],
            2,
            &["not a finite number"],
        ),
        case(
            "flags",
            &["--learning-rate", "inf"],
            2,
            &["not a finite number"],
        ),
        case("flags", &["--hidden", ","], 2, &["--hidden", "width 1"]),
        case("flags", &["--hidden", "0"], 2, &["at least 1"]),
        case("flags", &["--hidden", "3,,3"], 2, &["width 2"]),
        case(
            "flags",
            &["--hidden", "three"],
            2,
            &["not a positive whole number"],
        ),
        case(
            "flags",
            &["--hidden", "100000"],
            2,
            &["width 100000", "at most 16384"],
        ),
        case(
            "flags",
            &["--hidden", "16384,16384"],
            2,
            &["parameters", "at most 67108864"],
        ),
        case(
            "flags",
            &["--backend", "directx9"],
            2,
            &["--backend", "possible values"],
        ),
        case(
            "flags",
            &["--adapter", "no-such-gpu"],
            1,
            &["no adapter name contains", "Adapters found", "[0]"],
        ),
        case(
            "flags",
            &["--adapter", "99"],
            1,
            &["no adapter has index 99"],
        ),
        case(
            "flags",
            &["--predict", "warm"],
            2,
            &["--predict", "not a number"],
        ),
        case("flags", &["--predict", "inf"], 2, &["not a finite number"]),
        case("flags", &["--samples", "0"], 2, &["--samples"]),
        case(
            "flags",
            &["--batch-size", "0"],
            2,
            &["--batch-size", "at least 1"],
        ),
        case(
            "flags",
            &["--batch-size", "many"],
            2,
            &["--batch-size", "`all`"],
        ),
        case("flags", &["--plot-log"], 2, &["--plot"]),
        case(
            "flags",
            &["--cpu-reference", "--compare"],
            2,
            &["cannot be used with"],
        ),
        case(
            "flags",
            &[
                "--samples",
                "100000",
                "--batch-size",
                "1",
                "--epochs",
                "50000",
            ],
            1,
            &["5000000000 training steps", "fewer epochs"],
        ),
        case(
            "flags",
            &["--schedule", "samples", "--hidden", "64,64"],
            2,
            &["4353 parameters", "use the dispatch schedule"],
        ),
        case(
            "flags",
            &[
                "--schedule",
                "fused",
                "--samples",
                "100000",
                "--batch-size",
                "all",
                "--hidden",
                "64",
            ],
            2,
            &["too large for the fused schedule", "samples or dispatch"],
        ),
    ]);
}

#[test]
fn epochs_zero_reports_the_untrained_model() {
    let output = gpu_c2f(&["--epochs", "0", "--json"]);
    assert!(output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["loss_history"].as_array().unwrap().len(), 0);
    assert_eq!(report["final_loss"], serde_json::Value::Null);
    // Biases start at zero: nothing was trained.
    assert_eq!(
        report["layers"][0]["bias"],
        serde_json::json!([0.0, 0.0, 0.0])
    );
}

#[test]
fn csv_data() {
    let missing = folder().join("missing.csv");
    let missing = missing.to_str().unwrap();
    let empty = file("empty.csv", "");
    let header = file("header.csv", "celsius,fahrenheit\n");
    let columns = file("columns.csv", "0,32\n10,50,7\n");
    let text = file("text.csv", "0,32\n\nten,50\n");
    let nan = file("nan.csv", "celsius,fahrenheit\n0,32\n5,NaN\n");
    let unnamed = file("unnamed.csv", "temp_c,temp_f\n0,32\n");
    let ragged = file("ragged.csv", "fahrenheit,celsius\n32,0\n50\n");
    let colons = file("colons.csv", "0:32\n");
    let inf = file("inf.csv", "0,32\n-inf,5\n");
    check(&[
        case(
            "csv",
            &["--data", missing],
            1,
            &["cannot read data file", "missing.csv"],
        ),
        case(
            "csv",
            &["--data", &empty],
            1,
            &["empty.csv", "no data rows"],
        ),
        case(
            "csv",
            &["--data", &header],
            1,
            &["header.csv", "no data rows"],
        ),
        case(
            "csv",
            &["--data", &columns],
            1,
            &["columns.csv", "line 2", "2 columns"],
        ),
        case(
            "csv",
            &["--data", &text],
            1,
            &["text.csv", "line 3", "\"ten\"", "not a number"],
        ),
        case(
            "csv",
            &["--data", &nan],
            1,
            &["nan.csv", "line 3", "not finite"],
        ),
        case(
            "csv",
            &["--data", &inf],
            1,
            &["inf.csv", "line 2", "not finite"],
        ),
        case(
            "csv",
            &["--data", &nan, "--samples", "5"],
            2,
            &["cannot be used with"],
        ),
        case(
            "csv",
            &["--data", &unnamed],
            1,
            &[
                "unnamed.csv",
                "line 1",
                "\"temp_c\", \"temp_f\"",
                "celsius",
                "fahrenheit",
            ],
        ),
        case(
            "csv",
            &["--data", &ragged],
            1,
            &["ragged.csv", "line 3", "expected 2 columns"],
        ),
        case(
            "csv",
            &["--data", &colons],
            1,
            &["colons.csv", "line 1", "expected 2 columns"],
        ),
        case(
            "csv",
            &["--data", &colons, "--delimiter", ":;"],
            2,
            &["--delimiter", "one character"],
        ),
        case("csv", &["--delimiter", ";"], 2, &["--data"]),
    ]);
}

#[test]
fn huge_samples_are_refused_before_any_allocation() {
    // 2^32 - 1 samples need 34 GB for the dataset alone: more than this
    // machine has free, or than any GPU holds in one buffer. Either way the
    // refusal comes before the data is made (it used to allocate until the
    // machine ran out of memory).
    check(&[case(
        "samples",
        &["--samples", "4294967295"],
        1,
        &["--samples 4294967295 needs 34359738360 bytes", "use "],
    )]);
    // One sample more than the adapter's largest buffer holds: refused by
    // the device's limit, naming it, before the data is made.
    let most = adapter_buffer_limit();
    let samples = (most / 8 + 1).to_string();
    let output = gpu_c2f(&["--samples", &samples, "--quiet"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for words in ["GPU memory in one buffer", &samples, &most.to_string()] {
        assert!(stderr.contains(words), "missing {words:?}: {stderr}");
    }
}

#[test]
fn csv_with_crlf_blank_lines_and_a_million_rows_works() {
    let mut text = String::from("celsius,fahrenheit\r\n\r\n");
    for i in 0..1_000_000u32 {
        let c = (i % 2000) as f32 / 10.0 - 50.0;
        text += &format!("{c},{}\r\n", c * 1.8 + 32.0);
        if i % 100_000 == 0 {
            text += "\r\n";
        }
    }
    let path = file("million.csv", &text);
    // Keras's default batches of 32 (31 250 steps an epoch, fused) and one
    // full batch (a thread per block of samples).
    for (batch_size, schedule) in [("32", "fused"), ("all", "samples")] {
        let output = gpu_c2f(&[
            "--data",
            &path,
            "--epochs",
            "2",
            "--hidden",
            "3",
            "--batch-size",
            batch_size,
            "--json",
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(report["samples"], 1_000_000);
        assert_eq!(report["schedule"], schedule);
        assert_eq!(report["loss_history"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn more_data_than_a_device_buffer_holds_is_refused_naming_the_limit() {
    // A dataset that fits in the device's largest buffer (so the check of
    // --samples before the data is made lets it through), leaving no room
    // beside it for even one block of the dispatch schedule's activations:
    // the run's memory plan refuses it with the sizes, before any GPU
    // allocation. (The fused and samples schedules keep no activations of
    // a 1-16-1 network in memory, so they would train it.)
    let most = adapter_buffer_limit();
    let samples = (most / 8 - 64).to_string();
    let output = gpu_c2f(&[
        "--samples",
        &samples,
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--schedule",
        "dispatch",
        "--quiet",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("more than this device allows in one buffer"),
        "{stderr}"
    );
    assert!(stderr.contains("bytes)"), "{stderr}");
}

/// The largest buffer the adapter the binary picks lets a kernel bind.
fn adapter_buffer_limit() -> u64 {
    let gpu = gpu_c2f::gpu::Gpu::new(
        &gpu_c2f::gpu::AdapterSelector::from_flag_or_env(None),
        gpu_c2f::gpu::BackendChoice::All,
    )
    .expect("an adapter");
    gpu_c2f::gpu::largest_buffer(&gpu.device.limits())
}

#[test]
fn model_files() {
    let missing = folder().join("missing.json");
    let missing = missing.to_str().unwrap();
    let not_json = file("not.json", "layers: yes");
    let no_layers = file("no-layers.json", r#"{"weights": []}"#);
    let shapes = file(
        "shapes.json",
        r#"{"layers": [{"kernel": [[1, 2]], "bias": [0]}]}"#,
    );
    let chain = file(
        "chain.json",
        r#"{"layers": [{"kernel": [[1, 2]], "bias": [0, 0]}, {"kernel": [[1], [2], [3]], "bias": [0]}]}"#,
    );
    let last = file(
        "last.json",
        r#"{"layers": [{"kernel": [[1, 2]], "bias": [0, 0]}]}"#,
    );
    let huge = file(
        "huge.json",
        r#"{"layers": [{"kernel": [[1e39]], "bias": [0]}]}"#,
    );
    let unknown = file("model.pt", r#"{"layers": []}"#);
    let not_safetensors = file("not.safetensors", "hello");
    let unwritten = folder().join("model.h5");
    check(&[
        // Refused before anything is read: a flag error.
        case(
            "model",
            &["--init", &unknown],
            2,
            &[
                "--init",
                "model.pt",
                "unknown model file format",
                ".json, .keras, .weights.h5, .safetensors, .onnx",
            ],
        ),
        case(
            "model",
            &["--init", &not_safetensors],
            1,
            &["not.safetensors", "not a safetensors file"],
        ),
        // Refused before training: a flag error.
        case(
            "model",
            &["--save", unwritten.to_str().unwrap()],
            2,
            &[
                "--save",
                "model.h5",
                "unknown model file format",
                "Keras 2's legacy format",
            ],
        ),
        case(
            "model",
            &["--init", missing],
            1,
            &["cannot read model file", "missing.json"],
        ),
        case(
            "model",
            &["--init", &not_json],
            1,
            &["not.json", "not a model file", "line 1"],
        ),
        case(
            "model",
            &["--init", &no_layers],
            1,
            &["no-layers.json", "missing field `layers`"],
        ),
        case(
            "model",
            &["--init", &shapes],
            1,
            &[
                "shapes.json",
                "layer 0",
                "kernel row 0 has 2 values but bias has 1",
            ],
        ),
        case(
            "model",
            &["--init", &chain],
            1,
            &["chain.json", "layer 1", "3 rows", "2 input(s)"],
        ),
        case(
            "model",
            &["--init", &last],
            1,
            &[
                "last.json",
                "the 1-2 network takes 1 input(s) and gives 2 output(s)",
                "1 target column(s) (fahrenheit)",
            ],
        ),
        case(
            "model",
            &["--init", &huge],
            1,
            &["huge.json", "layer 0", "non-finite"],
        ),
    ]);
    assert!(!unwritten.exists(), "nothing written for an unknown format");
}

/// Keras files gpu-c2f cannot train are refused naming what is not
/// supported (tests/fixtures/keras/, written by Keras itself with
/// tests/python/make_keras_fixtures.py).
#[test]
fn keras_files_it_cannot_train() {
    let fixture = |name: &str| format!("tests/fixtures/keras/{name}");
    let (dropout, functional) = (fixture("dropout.keras"), fixture("functional.keras"));
    let (no_bias, float64) = (fixture("no-bias.keras"), fixture("float64.keras"));
    let weights = fixture("relu-tanh.weights.h5");
    let seed = fixture("seed-trained.keras");
    let not_zip = file("not-a-zip.keras", "hello");
    let not_hdf5 = file("not-hdf5.weights.h5", "hello");
    check(&[
        case(
            "model",
            &["--init", &dropout],
            1,
            &["dropout.keras", "a Dropout layer is not supported"],
        ),
        case(
            "model",
            &["--init", &functional],
            1,
            &["functional.keras", "a Functional model is not supported"],
        ),
        case(
            "model",
            &["--init", &no_bias],
            1,
            &["no-bias.keras", "use_bias=False is not supported"],
        ),
        case(
            "model",
            &["--init", &float64],
            1,
            &["float64.keras", "dtype float64 is not supported"],
        ),
        case(
            "model",
            &["--init", &not_zip],
            1,
            &["not-a-zip.keras", "not a .keras archive"],
        ),
        case(
            "model",
            &["--init", &not_hdf5],
            1,
            &["not-hdf5.weights.h5", "not an HDF5 weights file"],
        ),
        case(
            "flags",
            &["--init", &weights, "--hidden", "8:relu,5:tanh"],
            2,
            &[
                "--hidden gives hidden widths 8,5",
                "has 8,4 (a 1-8-4-1 network)",
            ],
        ),
        case(
            "flags",
            &["--init", &seed, "--output-activation", "sigmoid"],
            2,
            &["cannot change the network of --init", "a .weights.h5 file"],
        ),
        case(
            "flags",
            &["--init", "model.onnx"],
            2,
            &["--init model.onnx", "does not read it"],
        ),
    ]);
}

fn assert_untouched(path: &Path, contents: &str) {
    assert_eq!(
        std::fs::read_to_string(path).unwrap(),
        contents,
        "{} was changed",
        path.display()
    );
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp") || name.starts_with(".gpu-c2f-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn output_files_fail_fast_and_are_never_left_half_written() {
    check(&[
        case(
            "output",
            &["--save", "/no/such/folder/m.json"],
            1,
            &["--save", "/no/such/folder"],
        ),
        case(
            "output",
            &["--plot", "/no/such/folder/p.svg"],
            1,
            &["--plot", "cannot write"],
        ),
        case(
            "output",
            &["--plot", "loss.gif"],
            2,
            &["--plot", ".svg or .png"],
        ),
        case("output", &["--save", "/tmp"], 1, &["--save", "is a folder"]),
    ]);
    // A run that fails after the outputs were reserved leaves the old
    // files as they were.
    let dir = folder().join("keep");
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.json");
    let picture = dir.join("loss.svg");
    std::fs::write(&model, "old model").unwrap();
    std::fs::write(&picture, "old picture").unwrap();
    let output = gpu_c2f(&[
        "--learning-rate",
        "1e6",
        "--save",
        model.to_str().unwrap(),
        "--plot",
        picture.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_untouched(&model, "old model");
    assert_untouched(&picture, "old picture");
}

#[test]
fn divergence_names_the_first_bad_epoch_on_every_path() {
    for path in [
        &["--cpu-reference"][..],
        &["--schedule", "fused"],
        &["--schedule", "samples"],
        &["--schedule", "dispatch"],
    ] {
        let mut args = vec!["--learning-rate", "1e6", "--json"];
        args.extend_from_slice(path);
        let output = gpu_c2f(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{path:?}: {stderr}");
        // With steps of ~1e6 the output overflows f32 in the second
        // epoch's forward pass: every path must name the same epoch.
        assert!(
            stderr.contains("training diverged at epoch 2"),
            "{path:?}: {stderr}"
        );
        assert!(
            output.stdout.is_empty(),
            "{path:?}: no report for a diverged run"
        );
    }
}

#[test]
fn divergence_in_mini_batches_reads_the_same_on_every_path() {
    // Ten batches an epoch: the CPU used to print the batch's loss and the
    // GPU the epoch's partial sum. Every path must now say the same thing.
    let messages: Vec<String> = [
        &["--cpu-reference"][..],
        &["--schedule", "fused"],
        &["--schedule", "samples"],
        &["--schedule", "dispatch"],
    ]
    .iter()
    .map(|path| {
        let mut args = vec![
            "--samples",
            "100",
            "--batch-size",
            "10",
            "--epochs",
            "5",
            "--learning-rate",
            "1e6",
        ];
        args.extend_from_slice(path);
        let output = gpu_c2f(&args);
        assert_eq!(output.status.code(), Some(1), "{path:?}");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("");
        assert!(
            error.contains("training diverged at epoch") && error.contains(" of 10)"),
            "{path:?}: {stderr}"
        );
        error.to_string()
    })
    .collect();
    assert!(
        messages.iter().all(|m| m == &messages[0]),
        "the paths differ: {messages:#?}"
    );
}

#[test]
fn same_flags_give_bit_identical_results_across_processes() {
    for path in [
        &["--cpu-reference"][..],
        &["--schedule", "fused"],
        &["--schedule", "samples"],
        &["--schedule", "dispatch"],
    ] {
        let run = || {
            let mut args = vec![
                "--json",
                "--samples",
                "300",
                "--hidden",
                "5,4",
                "--epochs",
                "50",
                "--seed",
                "9",
            ];
            args.extend_from_slice(path);
            let output = gpu_c2f(&args);
            assert!(output.status.success());
            let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            (
                report["loss_history"].to_string(),
                report["layers"].to_string(),
            )
        };
        assert_eq!(run(), run(), "{path:?}");
    }
}

/// A scratch folder of its own for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = folder().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn two_outputs_into_one_file_are_refused_before_training() {
    // A model file and a plot take different extensions, so the same file
    // is two names: the plot's, and a link to it (not yet there).
    let dir = scratch("same");
    let same = dir.join("same.svg");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink("same.svg", dir.join("model.json")).unwrap();
        let model = dir.join("model.json");
        let args = [
            "--epochs",
            "5",
            "--save",
            path(&model),
            "--plot",
            path(&same),
        ];
        let output = gpu_c2f(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("both write to the same file"), "{stderr}");
        assert!(!same.exists(), "nothing is written");
    }
    // The same file, already there, through a link, and standard output twice.
    #[cfg(unix)]
    {
        std::fs::write(&same, "old").unwrap();
        std::os::unix::fs::symlink("same.svg", dir.join("link.json")).unwrap();
        let output = gpu_c2f(&[
            "--save",
            path(&dir.join("link.json")),
            "--plot",
            path(&same),
        ]);
        assert_eq!(output.status.code(), Some(2));
        assert_untouched(&same, "old");
    }
    let output = gpu_c2f(&["--save", "-", "--plot", "-"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("standard output"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn a_saved_link_is_written_through_and_kept() {
    let dir = scratch("link");
    std::fs::create_dir(dir.join("real")).unwrap();
    let target = dir.join("real").join("model.json");
    std::fs::write(&target, "stale").unwrap();
    let link = dir.join("link.json");
    std::os::unix::fs::symlink("real/model.json", &link).unwrap();
    let output = gpu_c2f(&["--epochs", "5", "--quiet", "--save", path(&link)]);
    assert!(output.status.success(), "{output:?}");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(model["architecture"], "1-3-3-1");
    // No temporary file left in either folder.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    assert_eq!(std::fs::read_dir(dir.join("real")).unwrap().count(), 1);
}

#[cfg(unix)]
#[test]
fn special_files_are_written_into_never_renamed_over() {
    use std::os::unix::fs::FileTypeExt;
    let dir = scratch("fifo");
    let fifo = dir.join("fifo.json");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // The reader hands its text over a channel, so a binary that never
    // writes into the FIFO fails the test instead of hanging it.
    let (sender, received) = std::sync::mpsc::channel();
    {
        let fifo = fifo.clone();
        std::thread::spawn(move || sender.send(std::fs::read_to_string(fifo).unwrap()));
    }
    let output = gpu_c2f(&["--epochs", "5", "--quiet", "--save", path(&fifo)]);
    assert!(output.status.success(), "{output:?}");
    let kind = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    assert!(kind.is_fifo(), "the FIFO was replaced");
    let text = received
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the model came through the FIFO");
    let model: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(model["architecture"], "1-3-3-1");
    // A device that takes no bytes: an error, and the device stays.
    let full = Path::new("/dev/full");
    if full.exists() {
        let output = gpu_c2f(&["--epochs", "5", "--quiet", "--save", "/dev/full"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("cannot write /dev/full"), "{stderr}");
        let kind = std::fs::symlink_metadata(full).unwrap().file_type();
        assert!(kind.is_char_device(), "/dev/full was replaced");
    }
}

#[test]
fn a_dash_writes_the_model_or_the_plot_to_stdout_and_the_report_to_stderr() {
    let output = gpu_c2f(&["--epochs", "5", "--save", "-"]);
    assert!(output.status.success(), "{output:?}");
    let model: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(model["architecture"], "1-3-3-1");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Final loss:") && stderr.contains("Saved:       standard output"),
        "{stderr}"
    );
    let output = gpu_c2f(&["--epochs", "5", "--json", "--plot", "-"]);
    assert!(output.status.success(), "{output:?}");
    let svg = String::from_utf8_lossy(&output.stdout);
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{svg}"
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stderr).unwrap();
    assert_eq!(report["epochs"], 5);
}

#[test]
fn bad_flag_values_found_after_parsing_exit_with_2_as_parsing_errors_do() {
    let csv = file("two.csv", "a,b,c\n1,2,3\n4,5,6\n");
    check(&[
        case(
            "flags",
            &["--validation-split", "1.0"],
            2,
            &["validation split", "below 1"],
        ),
        case(
            "flags",
            &["--validation-split", "-0.5"],
            2,
            &["validation split"],
        ),
        case(
            "flags",
            &["--patience", "2", "--epochs", "0"],
            2,
            &["--patience", "trains none"],
        ),
        case(
            "flags",
            &["--patience", "2", "--min-delta", "-1"],
            2,
            &["min_delta"],
        ),
        case(
            "flags",
            &["--metrics", "mae,mae"],
            2,
            &["\"mae\" is given twice"],
        ),
        case(
            "flags",
            &["--from-logits"],
            2,
            &["--from-logits", "binary_crossentropy only"],
        ),
        case(
            "flags",
            &["--data", &csv, "--x", "a", "--y", "a"],
            2,
            &["named twice"],
        ),
        case(
            "flags",
            &["--predict", "1,2"],
            2,
            &["--predict 1,2", "one value per --x column"],
        ),
    ]);
}

#[test]
fn a_loss_history_that_does_not_fit_says_so_on_every_path() {
    // 2^32 - 1 epochs of 18 series (9 values, again on the validation rows):
    // 309 GB of history, more than any test machine has; the remedy is
    // fewer epochs, not a batch size. The CPU path used to run until killed.
    for path in [&["--cpu-reference"][..], &[]] {
        let mut args = vec![
            "--epochs",
            "4294967295",
            "--validation-split",
            "0.3",
            "--metrics",
            "mse,mae,accuracy,binary_crossentropy,binary_accuracy,mean_squared_error,mean_absolute_error,bce",
        ];
        args.extend_from_slice(path);
        let output = gpu_c2f_within(&args, 60);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{path:?}: {stderr}");
        for words in [
            "--epochs 4294967295 needs about",
            "the loss history",
            "use at most",
        ] {
            assert!(stderr.contains(words), "{path:?}: {stderr}");
        }
        assert!(!stderr.contains("batch-size"), "{path:?}: {stderr}");
        assert!(!stderr.contains("step records"), "{path:?}: {stderr}");
    }
}

#[test]
fn data_too_large_for_f32_is_named_not_blamed_on_the_learning_rate() {
    let csv = file(
        "huge.csv",
        "celsius,fahrenheit\n0,3e38\n1,3.1e38\n2,-2e38\n",
    );
    for path in [
        &["--cpu-reference"][..],
        &["--schedule", "fused"],
        &["--schedule", "dispatch"],
    ] {
        let mut args = vec!["--data", &csv, "--epochs", "3"];
        args.extend_from_slice(path);
        let output = gpu_c2f_within(&args, 60);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{path:?}: {stderr}");
        for words in [
            "overflows f32",
            "target column \"fahrenheit\"",
            "3.1e38",
            "rescale",
        ] {
            assert!(stderr.contains(words), "{path:?}: {stderr}");
        }
        assert!(!stderr.contains("--learning-rate"), "{path:?}: {stderr}");
    }
}

#[test]
fn a_successful_run_without_a_session_prints_no_error_lines() {
    // Without XDG_RUNTIME_DIR (SSH, containers, cron), Mesa's device-select
    // layer probed Wayland and libwayland printed two "error:" lines.
    for args in [
        &["--epochs", "5"][..],
        &["--epochs", "5", "--backend", "vulkan", "--quiet"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_gpu-c2f"))
            .args(args)
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() && stderr.contains("no adapter") {
            continue; // `--backend vulkan` where this run has only GL
        }
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(
            !stderr.lines().any(|line| line.starts_with("error")),
            "{args:?}: {stderr}"
        );
    }
}
