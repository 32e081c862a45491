//! The CSV data parser on arbitrary bytes (read as lossy UTF-8): any answer
//! is fine, a panic is a bug.
#![no_main]

use gpu_c2f::Dataset;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let text = String::from_utf8_lossy(bytes);
    if let Ok(data) = Dataset::from_csv_str(&text, None) {
        assert!(!data.is_empty());
        assert_eq!(data.celsius.len(), data.fahrenheit.len());
        assert!(
            data.celsius
                .iter()
                .chain(&data.fahrenheit)
                .all(|v| v.is_finite())
        );
    }
});
