//! The fuzz targets' checks (`ticketlock/fuzz/src/checks.rs`) on stable:
//! every seed in `ticketlock/fuzz/seeds/<target>/`, and every input of a
//! local `ticketlock/fuzz/corpus/<target>/` left by `cargo fuzz run`, is
//! replayed here. libFuzzer itself needs nightly: see ticketlock/fuzz/README.md.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = 0;
    for dir in ["seeds", "corpus"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            assert_ne!(dir, "seeds", "no seeds for {target}");
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let data = match std::fs::read(&path) {
                Ok(data) => data,
                // A running fuzzer replaces corpus files as it reduces them.
                Err(e) if dir == "corpus" && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => panic!("{}: {e}", path.display()),
            };
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{target}: {} fails", path.display());
            inputs += 1;
        }
    }
    inputs
}

#[test]
fn record_decode_seeds_pass() {
    assert!(replay("record_decode", checks::record_decode) >= 10);
}

#[test]
fn endpoints_yaml_seeds_pass() {
    assert!(replay("endpoints_yaml", checks::endpoints_yaml) >= 10);
}

#[test]
fn url_seeds_pass() {
    assert!(replay("url", checks::url) >= 10);
}
