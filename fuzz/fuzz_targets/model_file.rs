//! The model-file parser on arbitrary UTF-8 text: any answer is fine, a
//! panic is a bug. Accepted models must chain from 1 input to 1 output and
//! hold only finite weights.
#![no_main]

use gpu_c2f::model_file;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(model) = model_file::parse(text) {
        let widths = model.architecture().widths();
        assert_eq!((widths[0], widths[widths.len() - 1]), (1, 1));
        assert!(model.params().iter().all(|v| v.is_finite()));
        assert_eq!(model.params().len(), model.architecture().param_count());
    }
});
