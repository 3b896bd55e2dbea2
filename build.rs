//! Records build facts for `GET /version`: git commit, rustc version, build time and the
//! libcontainer version from Cargo.lock; links berthd as a fixed-address executable unless
//! the `pie` feature is on.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=.git/HEAD");
    // A commit moves the branch HEAD names, not HEAD itself: watch that ref too, or the
    // commit recorded would stay the one of the first build on the branch.
    // (Only files that exist: cargo reruns the script every time for a missing one.)
    if let Ok(head) = std::fs::read_to_string(".git/HEAD") {
        if let Some(r) = head.trim().strip_prefix("ref: ") {
            for f in [format!(".git/{r}"), ".git/packed-refs".to_string()] {
                if std::path::Path::new(&f).exists() {
                    println!("cargo:rerun-if-changed={f}");
                }
            }
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    // berthd and every supervisor are the same binary. As a position-independent executable,
    // the loader relocates its 465 KiB of constant data with pointers in it (vtables, panic
    // locations, string tables) in every process, which makes that data private to each
    // supervisor; at a fixed address it stays the file's pages, shared, and droppable once the
    // container runs. docs/hardening.md weighs this against ASLR of berthd's own image.
    if std::env::var_os("CARGO_FEATURE_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    // Segments placed so that their addresses and file offsets agree modulo 2 MiB: the page
    // cache holds the binary in large folios aligned on file offsets, and a fault maps whole
    // folios around the faulting page. Misaligned by a page (the linker's default), each fault
    // in the code maps parts of two folios: a supervisor kept ~50% more of the binary's code
    // resident after it dropped it once its container ran.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,max-page-size=0x200000");

    let commit = Command::new("git")
        .args(["rev-parse", "--short=7", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BERTH_GIT_COMMIT={commit}");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "rustc unknown".to_string());
    println!("cargo:rustc-env=BERTH_RUSTC_VERSION={rustc_version}");

    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=BERTH_BUILD_TIME={}", rfc3339(epoch));

    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    println!(
        "cargo:rustc-env=BERTH_LIBCONTAINER_VERSION={}",
        locked_version(&lock, "libcontainer").unwrap_or_else(|| "unknown".to_string())
    );
}

fn locked_version(lock: &str, name: &str) -> Option<String> {
    let needle = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == needle {
            let v = lines.next()?.trim();
            return v
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string);
        }
    }
    None
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (civil-from-days, proleptic Gregorian).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}
