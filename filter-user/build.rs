//! Builds the XDP program (`filter-ebpf`) for the BPF target and leaves the object in
//! `OUT_DIR/filter.o`, which `src/dataplane/object.rs` embeds.
//!
//! Why not `aya-build`: the rustup toolchains on our build machines have no `core` for
//! `bpfel-unknown-none` and cannot fetch `rust-src`. Debian's `rustc-web` ships a prebuilt
//! one, and aya-build would add `-Z build-std=core` on top of it (see
//! `docs/toolchain.md`). `cargo xtask setup` installs that toolchain and bpf-linker.

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

/// Debian's Rust toolchain (packages `rustc-web`, `cargo-web`,
/// `libstd-rust-web-dev-bpf`): the one with a prebuilt `core` for the BPF target.
const BPF_RUSTC: &str = "/usr/bin/rustc";
const BPF_CARGO: &str = "/usr/bin/cargo";
const BPF_TARGET: &str = "bpfel-unknown-none";
/// The binary targets of `filter-ebpf`: the filter, and the benchmark programs.
const OBJECTS: [&str; 2] = ["filter", "bench"];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("filter-user sits in the workspace root");
    for input in ["filter-ebpf", "filter-common", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }

    let missing = missing_tools();
    if !missing.is_empty() {
        panic!(
            "cannot build the XDP program: missing {}.\n\
             Run `cargo xtask setup` (as root) to install the BPF toolchain; \
             docs/toolchain.md says what it installs and why.",
            missing.join(", ")
        );
    }

    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("ebpf");
    let mut cmd = Command::new(BPF_CARGO);
    cmd.current_dir(root)
        .args(["build", "--package", "filter-ebpf", "--bins", "--release"])
        .args(["--locked", "--target", BPF_TARGET, "--target-dir"])
        .arg(&target_dir);
    // The outer cargo's environment describes the host build; none of it may leak in.
    for (key, _) in env::vars_os() {
        let key_str = key.to_string_lossy();
        let outer = (key_str.starts_with("CARGO") && key_str != "CARGO_HOME")
            || key_str.starts_with("RUST")
            || matches!(
                &*key_str,
                "TARGET" | "HOST" | "OUT_DIR" | "OPT_LEVEL" | "PROFILE" | "DEBUG" | "NUM_JOBS"
            );
        if outer {
            cmd.env_remove(&key);
        }
    }
    // aya-ebpf needs `#![feature]`s: RUSTC_BOOTSTRAP lets Debian's stable rustc take them.
    cmd.env("RUSTC", BPF_RUSTC).env("RUSTC_BOOTSTRAP", "1");
    cmd.env(
        "CARGO_ENCODED_RUSTFLAGS",
        [
            "--cfg=bpf_target_arch=\"x86_64\"",
            "-Cdebuginfo=2",
            "-Clink-arg=--btf",
        ]
        .join("\x1f"),
    );
    cmd.env("PATH", search_path());

    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("running {BPF_CARGO}: {e}"));
    if !status.success() {
        panic!("building filter-ebpf for {BPF_TARGET} failed ({status}); see the errors above");
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    for name in OBJECTS {
        let object = target_dir.join(BPF_TARGET).join("release").join(name);
        let out = out_dir.join(format!("{name}.o"));
        std::fs::copy(&object, &out)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", object.display(), out.display()));
    }
}

/// `/usr/bin` first, so the nested build finds Debian's toolchain, then cargo's bin
/// directory for bpf-linker.
fn search_path() -> OsString {
    let mut dirs = vec![PathBuf::from("/usr/bin"), cargo_bin_dir()];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    env::join_paths(dirs).expect("PATH entries contain no separator")
}

fn cargo_bin_dir() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

fn missing_tools() -> Vec<String> {
    let mut missing = Vec::new();
    for tool in [BPF_RUSTC, BPF_CARGO] {
        if !Path::new(tool).exists() {
            missing.push(tool.to_string());
        }
    }
    let core_dir = Path::new("/usr/lib/rustlib").join(BPF_TARGET).join("lib");
    let has_core = std::fs::read_dir(&core_dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libcore-"))
        })
        .unwrap_or(false);
    if !has_core {
        missing.push(format!("core for {BPF_TARGET} in {}", core_dir.display()));
    }
    let linker_found = env::split_paths(&search_path()).any(|d| d.join("bpf-linker").exists());
    if !linker_found {
        missing.push("bpf-linker".to_string());
    }
    missing
}
