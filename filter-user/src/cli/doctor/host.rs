//! The host's side: kernel, BTF, bpffs, the memlock limit, capabilities.

use std::path::Path;

use super::Report;
use crate::dataplane;

/// The oldest kernel with what the daemon uses: CAP_BPF, batched map updates, atomic
/// replacement of an attached XDP program.
const MIN_KERNEL: (u32, u32) = (5, 10);
/// Since 5.11 BPF memory is charged to the memory cgroup, not to RLIMIT_MEMLOCK.
const MEMCG_KERNEL: (u32, u32) = (5, 11);
/// What the daemon needs, as (capability number, name).
const CAPABILITIES: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (12, "CAP_NET_ADMIN"),
    (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
    (38, "CAP_PERFMON"),
    (39, "CAP_BPF"),
];
pub(super) const CAP_SYS_ADMIN: u32 = 21;

/// The release string and its (major, minor).
pub(super) fn kernel_version() -> Option<(String, (u32, u32))> {
    // SAFETY: all-zero is a valid utsname; uname fills it.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid, writable utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    let release: String = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8 as char)
        .collect();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    Some((release, (major, minor)))
}

pub(super) fn check_kernel(kernel: Option<&(String, (u32, u32))>, report: &mut Report) {
    let needed = format!("{}.{} or newer is needed", MIN_KERNEL.0, MIN_KERNEL.1);
    match kernel {
        Some((release, version)) if *version >= MIN_KERNEL => {
            report.pass("kernel", format!("Linux {release} ({needed})"))
        }
        Some((release, _)) => report.fail(
            "kernel",
            format!("Linux {release} is too old ({needed}: CAP_BPF, batched map updates, atomic program replacement)"),
            "upgrade the kernel (Debian 12's 6.1 works)",
        ),
        None => report.warn(
            "kernel",
            "cannot read the kernel version".into(),
            format!("make sure the kernel is {}.{} or newer", MIN_KERNEL.0, MIN_KERNEL.1),
        ),
    }
}

pub(super) fn check_btf(report: &mut Report) {
    if Path::new("/sys/kernel/btf/vmlinux").exists() {
        report.pass(
            "btf",
            "/sys/kernel/btf/vmlinux is present (kernel type information)".into(),
        );
    } else {
        report.warn(
            "btf",
            "the kernel has no BTF (/sys/kernel/btf/vmlinux): the XDP program uses no \
             kernel-type relocations and is expected to load, but this is untested"
                .into(),
            "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's kernels are)",
        );
    }
}

pub(super) fn check_bpffs(pin_dir: &Path, report: &mut Report) {
    // The daemon refuses to start on the same check.
    if let Err(not) = dataplane::check_pin_dir(pin_dir) {
        report.fail(
            "bpffs",
            format!(
                "{} is not on a bpf filesystem (it is on {}): the pins that keep enforcement \
                 across restarts cannot be made, and the daemon refuses to start",
                pin_dir.display(),
                not.filesystem
            ),
            not.fix(),
        );
        return;
    }
    let pins = dataplane::SHAPES
        .iter()
        .filter(|s| pin_dir.join(s.name).exists())
        .count();
    if pins == 0 {
        report.pass(
            "bpffs",
            format!(
                "{} is on bpffs; no pins yet (the daemon creates them)",
                pin_dir.display()
            ),
        );
        return;
    }
    let mismatched: Vec<String> = dataplane::SHAPES
        .iter()
        .filter_map(|shape| {
            let info = aya::maps::MapInfo::from_pin(pin_dir.join(shape.name)).ok()?;
            (info.key_size() != shape.key_size || info.value_size() != shape.value_size).then(
                || {
                    format!(
                        "{} (key {} value {} bytes, this version needs {} and {})",
                        shape.name,
                        info.key_size(),
                        info.value_size(),
                        shape.key_size,
                        shape.value_size
                    )
                },
            )
        })
        .collect();
    if !mismatched.is_empty() {
        report.fail(
            "bpffs",
            format!(
                "{} holds maps of another borderfilter version, which this one refuses to \
                 reuse: {}",
                pin_dir.display(),
                mismatched.join("; ")
            ),
            format!(
                "`borderfilter detach --yes --pin-dir {}` (enforcement stops), then start \
                 the daemon: it loads the list again",
                pin_dir.display()
            ),
        );
        return;
    }
    let attached: Vec<String> = dataplane::pinned_attachments(pin_dir)
        .into_iter()
        .map(|a| format!("{} ({})", a.iface, a.mode))
        .collect();
    report.pass(
        "bpffs",
        format!(
            "{} holds the pinned maps: the daemon reuses them, enforcement continues; \
             enforcing on {}",
            pin_dir.display(),
            if attached.is_empty() {
                "no interface".to_string()
            } else {
                attached.join(", ")
            }
        ),
    );
}

pub(super) fn check_memlock(kernel: Option<&(String, (u32, u32))>, report: &mut Report) {
    if kernel.is_some_and(|(_, v)| *v >= MEMCG_KERNEL) {
        report.pass(
            "memlock",
            "not needed: this kernel charges BPF memory to the memory cgroup".into(),
        );
        return;
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    if limit.rlim_cur == libc::RLIM_INFINITY || has_capability(24) {
        report.pass(
            "memlock",
            "RLIMIT_MEMLOCK is unlimited or can be raised".into(),
        );
    } else {
        report.fail(
            "memlock",
            format!(
                "RLIMIT_MEMLOCK is {} KiB: this kernel charges BPF maps to it",
                limit.rlim_cur / 1024
            ),
            "run the daemon with LimitMEMLOCK=infinity (borderfilter.service sets it) or \
             `ulimit -l unlimited`",
        );
    }
}

/// Whether this process has capability `cap` in its effective set.
pub(super) fn has_capability(cap: u32) -> bool {
    effective_capabilities().is_some_and(|set| set & (1u64 << cap) != 0)
}

fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

pub(super) fn check_capabilities(report: &mut Report) {
    let missing: Vec<&str> = CAPABILITIES
        .iter()
        .filter(|(cap, _)| !has_capability(*cap))
        .map(|(_, name)| *name)
        .collect();
    let all: Vec<&str> = CAPABILITIES.iter().map(|(_, n)| *n).collect();
    if missing.is_empty() {
        report.pass(
            "capabilities",
            format!("this process has what the daemon needs: {}", all.join(" ")),
        );
    } else {
        report.fail(
            "capabilities",
            format!(
                "this process lacks {}; the daemon needs {} (borderfilter.service grants \
                 exactly these), and without them doctor cannot check everything",
                missing.join(" "),
                all.join(" ")
            ),
            "run doctor as root, as the daemon runs: `sudo borderfilter doctor --defaults`",
        );
    }
}
