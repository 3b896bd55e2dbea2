//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) and every input that ever
//! crashed a target (`fuzz/regressions/<target>/`) through the same `berth::fuzzing` function
//! the fuzzer calls, so `cargo test` checks them without a fuzzer or a nightly toolchain.

use std::fs;
use std::path::Path;

fn replay(kind: &str) -> usize {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let mut count = 0;
    let Ok(dirs) = fs::read_dir(&base) else {
        return 0;
    };
    for dir in dirs {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some((_, target)) = berth::fuzzing::TARGETS.iter().find(|(n, _)| *n == name) else {
            panic!("{}: no fuzz target named {name}", dir.display());
        };
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        for file in files {
            let data = fs::read(&file).unwrap();
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "{} fails {name}", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn corpus_and_regressions_replay() {
    let corpus = replay("corpus");
    let regressions = replay("regressions");
    berth::fuzzing::cleanup();
    assert!(corpus > 0, "no corpus under fuzz/corpus");
    eprintln!("replayed {corpus} corpus files and {regressions} regression inputs");
}

#[test]
fn every_target_has_a_corpus() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, _) in berth::fuzzing::TARGETS {
        let n = fs::read_dir(base.join(name))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(n > 0, "fuzz/corpus/{name} is empty");
    }
}
