//! Build script of the binaries that serve traffic (`meridian` and `meridian-gateway-bench`;
//! each names this file as its `build` in Cargo.toml).
//!
//! Optimised builds for x86_64 Linux, which rustc links with LLD, pass `link/order.txt` to the
//! linker as its symbol ordering file: the functions a running gateway executes (start-up and
//! the request paths, listed by `bench/link-order.sh` from callgrind) are laid out next to each
//! other instead of among the ten megabytes of code it never runs. The kernel maps the binary's
//! code into a process in 64 KiB runs around each page it touches, so the layout alone sets
//! how much of the binary a gateway keeps resident (docs/benchmarks.md, eighth round).
//!
//! The order changes where functions are, never what they do: names the file lists that a build
//! does not have are skipped, and a stale file only costs resident memory.
//!
//! The same builds pack their relative relocations (`-z pack-relative-relocs`, DT_RELR, read by
//! glibc 2.36 and later): the dynamic loader reads a few KiB of bitmap at start instead of a
//! half-megabyte table of 24-byte entries, and the binary stays position-independent
//! (docs/benchmarks.md, ninth round).
//!
//! `MERIDIAN_LINK_ORDER=off` turns both off (for a linker other than LLD, or an older glibc);
//! `MERIDIAN_LINK_ORDER_FILE=path` uses another order (bench/pgo-build.sh's, for the
//! profile-guided build).

use std::env;
use std::path::PathBuf;

fn main() {
    // MERIDIAN_LINK_ORDER_FILE: another order (bench/pgo-build.sh writes one for the
    // profile-guided build, whose inlining gives it other functions).
    let order = match env::var("MERIDIAN_LINK_ORDER_FILE") {
        Ok(file) if !file.is_empty() => PathBuf::from(file),
        _ => PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("../../link/order.txt"),
    };
    println!("cargo::rerun-if-changed={}", order.display());
    println!("cargo::rerun-if-env-changed=MERIDIAN_LINK_ORDER");
    println!("cargo::rerun-if-env-changed=MERIDIAN_LINK_ORDER_FILE");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let lld_target = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    // PROFILE is "release" for every profile that inherits from release (production, ci-perf).
    if var("PROFILE") != "release" || !lld_target || var("MERIDIAN_LINK_ORDER") == "off" {
        return;
    }
    let order = order.canonicalize().unwrap_or_else(|e| panic!("link order {}: {e}", order.display()));
    println!("cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
    println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
