//! `--plot FILE` pictures: formats, text, legend, odd input and safe writes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use gpu_c2f::plot::{HEIGHT, Series, WIDTH, write_loss_plot};

/// A fresh folder under the system temp dir, unique to this process and call.
fn scratch(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gpu-c2f-plot-test-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A loss that falls from ~4000 to ~0.06 over `n` epochs, like a real run.
fn falling(n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = i as f32 / n as f32;
            scale * 4000.0 * (-18.0 * t).exp() + 0.06
        })
        .collect()
}

/// All text content of an SVG document, trimmed, in document order.
fn svg_texts(svg: &str) -> Vec<String> {
    let doc = roxmltree::Document::parse(svg).expect("SVG must be well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "text")
        .map(|n| {
            n.descendants()
                .filter(|t| t.is_text())
                .filter_map(|t| t.text())
                .collect::<String>()
                .trim()
                .to_string()
        })
        .collect()
}

/// Files left in `dir`, hidden temporaries included.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn png_has_signature_size_and_dimensions() {
    let dir = scratch("png");
    let path = dir.join("loss.png");
    let losses = falling(1000, 1.0);
    write_loss_plot(
        &path,
        "gpu-c2f: test, 1000 epochs",
        &[Series {
            label: "GPU",
            losses: &losses,
        }],
        false,
    )
    .unwrap();

    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert!(bytes.len() > 5 * 1024, "PNG only {} bytes", bytes.len());
    assert_eq!(&bytes[12..16], b"IHDR", "first chunk must be IHDR");
    let width = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((width, height), (WIDTH, HEIGHT));
    assert!((800..=1000).contains(&width) && (480..=600).contains(&height));
    assert_eq!(entries(&dir), ["loss.png"], "no temporary file left behind");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn extension_is_case_insensitive() {
    let dir = scratch("case");
    let losses = falling(50, 1.0);
    let s = [Series {
        label: "GPU",
        losses: &losses,
    }];
    write_loss_plot(&dir.join("a.PNG"), "t", &s, true).unwrap();
    write_loss_plot(&dir.join("b.Svg"), "t", &s, true).unwrap();
    assert!(
        std::fs::read(dir.join("a.PNG"))
            .unwrap()
            .starts_with(b"\x89PNG")
    );
    let svg = std::fs::read_to_string(dir.join("b.Svg")).unwrap();
    assert!(svg_texts(&svg).iter().any(|t| t == "Epoch"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn svg_is_xml_with_axis_captions_title_and_legend() {
    let dir = scratch("svg");
    let path = dir.join("loss.svg");
    let gpu = falling(1000, 1.0);
    let cpu = falling(1000, 1.1);
    let title = "gpu-c2f: llvmpipe, 1000 epochs, final loss 0.0630 <&>";
    write_loss_plot(
        &path,
        title,
        &[
            Series {
                label: "GPU",
                losses: &gpu,
            },
            Series {
                label: "CPU reference",
                losses: &cpu,
            },
        ],
        false,
    )
    .unwrap();

    let svg = std::fs::read_to_string(&path).unwrap();
    let texts = svg_texts(&svg);
    for want in ["Epoch", "Loss", title, "GPU", "CPU reference"] {
        assert!(
            texts.iter().any(|t| t == want),
            "{want:?} missing from {texts:?}"
        );
    }
    // Epoch ticks reach the last epoch.
    assert!(texts.iter().any(|t| t == "1000"), "{texts:?}");
    // Two differently coloured lines.
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let mut strokes: Vec<&str> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "polyline")
        .filter_map(|n| n.attribute("stroke"))
        .collect();
    strokes.sort();
    strokes.dedup();
    assert!(strokes.len() >= 2, "series strokes {strokes:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn log_scale_ticks_are_powers_of_ten() {
    let dir = scratch("logticks");
    let path = dir.join("loss.svg");
    let losses = falling(1000, 1.0);
    write_loss_plot(
        &path,
        "log",
        &[Series {
            label: "GPU",
            losses: &losses,
        }],
        true,
    )
    .unwrap();
    let texts = svg_texts(&std::fs::read_to_string(&path).unwrap());
    for want in ["0.01", "0.1", "1", "10", "100", "1000", "10000"] {
        assert!(
            texts.iter().any(|t| t == want),
            "tick {want:?} missing from {texts:?}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn log_scale_survives_zeros_nan_inf_and_constant_series() {
    let dir = scratch("odd");
    let zeros_and_nan = [
        5.0,
        0.0,
        f32::NAN,
        1e-9,
        f32::INFINITY,
        0.0,
        2.0,
        f32::NEG_INFINITY,
    ];
    let constant = [0.25f32; 40];
    let all_zero = [0.0f32; 10];
    let single = [3.0f32];
    let all_nan = [f32::NAN; 3];
    let extremes = [f32::MAX, -1.0, 1e-45, f32::MIN_POSITIVE, -f32::MAX];
    let tiny_constant = [1e-30f32; 5];
    for (i, log) in [(0, true), (1, false)] {
        for ext in ["png", "svg"] {
            let cases: [&[Series<'_>]; 7] = [
                &[
                    Series {
                        label: "zeros & NaN",
                        losses: &zeros_and_nan,
                    },
                    Series {
                        label: "constant",
                        losses: &constant,
                    },
                ],
                &[Series {
                    label: "constant",
                    losses: &constant,
                }],
                &[Series {
                    label: "all zero",
                    losses: &all_zero,
                }],
                &[Series {
                    label: "one epoch",
                    losses: &single,
                }],
                &[
                    Series {
                        label: "all NaN",
                        losses: &all_nan,
                    },
                    Series {
                        label: "one epoch",
                        losses: &single,
                    },
                ],
                &[Series {
                    label: "extremes",
                    losses: &extremes,
                }],
                &[Series {
                    label: "",
                    losses: &tiny_constant,
                }],
            ];
            for (j, s) in cases.iter().enumerate() {
                let path = dir.join(format!("odd-{i}-{j}.{ext}"));
                write_loss_plot(&path, "odd", s, log)
                    .unwrap_or_else(|e| panic!("case {j} log={log} {ext}: {e:#}"));
                let len = std::fs::metadata(&path).unwrap().len();
                assert!(len > 1000, "{} is only {len} bytes", path.display());
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn empty_or_non_finite_history_is_an_error() {
    let dir = scratch("empty");
    let nan = [f32::NAN, f32::INFINITY];
    let cases: [(&[Series<'_>], &str); 3] = [
        (&[], "empty"),
        (
            &[Series {
                label: "GPU",
                losses: &[],
            }],
            "empty",
        ),
        (
            &[Series {
                label: "GPU",
                losses: &nan,
            }],
            "no finite",
        ),
    ];
    for (series, want) in cases {
        for log in [false, true] {
            let path = dir.join("loss.png");
            let err = write_loss_plot(&path, "t", series, log).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(want), "{msg}");
            assert!(msg.contains(&path.display().to_string()), "{msg}");
        }
    }
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_extension_is_an_error_naming_the_accepted_ones() {
    let dir = scratch("ext");
    let losses = [1.0f32, 0.5];
    for name in ["loss.jpg", "loss", "loss.svg.txt"] {
        let path = dir.join(name);
        let err = write_loss_plot(
            &path,
            "t",
            &[Series {
                label: "GPU",
                losses: &losses,
            }],
            false,
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(".svg") && msg.contains(".png"), "{msg}");
    }
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_folder_is_an_error_and_leaves_nothing() {
    let dir = scratch("missing");
    let losses = falling(100, 1.0);
    for ext in ["png", "svg"] {
        let path = dir.join("no-such-folder").join(format!("loss.{ext}"));
        let err = write_loss_plot(
            &path,
            "t",
            &[Series {
                label: "GPU",
                losses: &losses,
            }],
            false,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains(&path.display().to_string()),
            "{err:#}"
        );
        assert!(!path.exists());
    }
    assert!(!dir.join("no-such-folder").exists());
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn existing_file_is_replaced_only_on_success() {
    let dir = scratch("replace");
    let losses = falling(100, 1.0);
    let good = [Series {
        label: "GPU",
        losses: &losses,
    }];
    for ext in ["png", "svg"] {
        let path = dir.join(format!("loss.{ext}"));
        std::fs::write(&path, b"old picture").unwrap();

        // A failing plot keeps the old file untouched.
        let err = write_loss_plot(
            &path,
            "t",
            &[Series {
                label: "GPU",
                losses: &[],
            }],
            true,
        );
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old picture");

        // A successful one replaces it.
        write_loss_plot(&path, "t", &good, true).unwrap();
        let new = std::fs::read(&path).unwrap();
        assert_ne!(new, b"old picture");
        match ext {
            "png" => assert!(new.starts_with(b"\x89PNG\r\n\x1a\n")),
            _ => assert!(
                svg_texts(&String::from_utf8(new).unwrap())
                    .iter()
                    .any(|t| t == "Loss")
            ),
        }
    }
    assert_eq!(
        entries(&dir),
        ["loss.png", "loss.svg"],
        "no temporary files left"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
