//! `cargo xtask deb`: the Debian package, `target/debian/borderfilter_<version>_<arch>.deb`.
//!
//! Built with dpkg-deb from a staging tree rather than debhelper: the project is its own
//! upstream and ships one binary, so a `debian/` source package would add a build
//! dependency chain (debhelper, a source format) for no gain. What debhelper would do
//! is done here, each step named: strip, compress man page and docs with `gzip -9n`,
//! compute the shared-library dependencies with dpkg-shlibdeps, md5sums, conffiles.
//! The files that describe the package (unit, defaults, maintainer scripts, copyright,
//! changelog) live in `packaging/`; the man page and completions come from the binary
//! itself (`borderfilter generate`), so they always match its CLI.

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};

use crate::cmd::{self, cargo, step};

const PACKAGE: &str = "borderfilter";
/// The systemd units of `packaging/`, installed in /lib/systemd/system: the filter's
/// daemon, and the block-notice web server (for notice hosts, installed disabled).
const UNITS: [&str; 2] = ["borderfilter.service", "borderfilter-notice.service"];
/// The unit that runs without root, and the worst `systemd-analyze security` exposure
/// allowed for it, in tenths (what `--threshold=` takes): 2.0, "OK".
const NOTICE_UNIT: &str = "borderfilter-notice.service";
const NOTICE_MAX_EXPOSURE: u32 = 20;

/// Where packages go: `target/debian` (or under CARGO_TARGET_DIR).
pub fn out_dir() -> PathBuf {
    target_dir().join("debian")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| cmd::root().join("target"))
}

/// `cargo xtask deb`: builds the package, then runs the checks a Debian maintainer
/// would: lintian, systemd-analyze verify on the unit, and the man page rendered.
pub fn run() -> anyhow::Result<()> {
    let deb = build()?;
    check(&deb)?;
    eprintln!("\n{}", deb.display());
    Ok(())
}

/// Builds the release binary and the package; returns the .deb's path.
pub fn build() -> anyhow::Result<PathBuf> {
    crate::setup::build_toolchain()?;
    crate::setup::packages(crate::setup::PACKAGE_PACKAGES)?;
    step("building the release binary");
    cmd::run(cargo().args(["build", "--release", "-p", "filter-user", "--bin", PACKAGE]))?;
    let binary = target_dir().join("release").join(PACKAGE);

    let version = workspace_version()?;
    check_changelog(&version)?;
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string();
    let name = format!("{PACKAGE}_{version}_{arch}");
    let out = out_dir();
    let stage = out.join(&name);
    step(&format!("staging {}", stage.display()));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    let packaging = cmd::root().join("packaging");

    let sbin = stage.join("usr/sbin").join(PACKAGE);
    install(&binary, &sbin, 0o755)?;
    cmd::run(
        Command::new("strip")
            .args([
                "--strip-unneeded",
                "--remove-section=.comment",
                "--remove-section=.note",
            ])
            .arg(&sbin),
    )?;
    for unit in UNITS {
        install(
            &packaging.join(unit),
            &stage.join("lib/systemd/system").join(unit),
            0o644,
        )?;
    }
    install(
        &packaging.join("default"),
        &stage.join("etc/default").join(PACKAGE),
        0o644,
    )?;
    install(
        &packaging.join("default-notice"),
        &stage.join("etc/default/borderfilter-notice"),
        0o644,
    )?;
    install(
        &packaging.join("orders.json"),
        &stage.join("etc/borderfilter/orders.json"),
        0o644,
    )?;

    // From the binary's own CLI definition.
    let generated = |args: &[&str]| output(Command::new(&sbin).arg("generate").args(args));
    write(
        &stage.join("usr/share/man/man8/borderfilter.8.gz"),
        &gzip(generated(&["man"])?.as_bytes())?,
        0o644,
    )?;
    write(
        &stage
            .join("usr/share/bash-completion/completions")
            .join(PACKAGE),
        generated(&["completions", "bash"])?.as_bytes(),
        0o644,
    )?;
    write(
        &stage.join("usr/share/zsh/vendor-completions/_borderfilter"),
        generated(&["completions", "zsh"])?.as_bytes(),
        0o644,
    )?;

    let doc = stage.join("usr/share/doc").join(PACKAGE);
    install(&packaging.join("copyright"), &doc.join("copyright"), 0o644)?;
    // A native package: the Debian changelog is the changelog.
    write(
        &doc.join("changelog.gz"),
        &gzip(&fs::read(packaging.join("changelog"))?)?,
        0o644,
    )?;
    let mut docs = vec![cmd::root().join("README.md")];
    docs.extend(markdown_files(&cmd::root().join("docs"))?);
    for file in docs.iter().filter(|f| f.exists()) {
        let name = file.file_name().expect("a file").to_string_lossy();
        // docs/README.md is the index of the docs; the top README keeps its name.
        let name = if file.parent() == Some(&cmd::root().join("docs")) && name == "README.md" {
            "index.md".to_string()
        } else {
            name.into_owned()
        };
        write(
            &doc.join(format!("{name}.gz")),
            &gzip(&fs::read(file)?)?,
            0o644,
        )?;
    }
    // Alert rules, the dashboard and the notice pages (the ones built into the binary,
    // to copy and edit) stay uncompressed: operators copy them as they are.
    for (from, to) in [
        ("docs/prometheus", "examples/prometheus"),
        ("filter-user/templates/notice", "examples/notice"),
    ] {
        let dir = cmd::root().join(from);
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().expect("a file").to_owned();
            install(&path, &doc.join(to).join(name), 0o644)?;
        }
    }

    let debian = stage.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        install(&packaging.join(script), &debian.join(script), 0o755)?;
    }
    install(
        &packaging.join("conffiles"),
        &debian.join("conffiles"),
        0o644,
    )?;
    let conffiles = fs::read_to_string(packaging.join("conffiles"))?;
    write(
        &debian.join("md5sums"),
        md5sums(&stage, &conffiles)?.as_bytes(),
        0o644,
    )?;
    let control = fs::read_to_string(packaging.join("control"))?
        .replace("@VERSION@", &version)
        .replace("@ARCH@", &arch)
        .replace("@INSTALLED_SIZE@", &installed_size(&stage)?.to_string())
        .replace("@SHLIBS@", &shlibs(&sbin, &out)?);
    write(&debian.join("control"), control.as_bytes(), 0o644)?;
    set_dir_modes(&stage)?;

    let deb = out.join(format!("{name}.deb"));
    step(&format!("building {}", deb.display()));
    cmd::run(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// The checks of `cargo xtask deb` (the package test runs them too, on the installed
/// package): lintian without errors, the unit accepted by systemd, the man page renders.
fn check(deb: &Path) -> anyhow::Result<()> {
    step("lintian (errors fail the build; warnings are printed)");
    cmd::run(
        Command::new("lintian")
            .args(["--fail-on", "error", "--display-info", "--pedantic"])
            .arg(deb),
    )?;
    let stage = deb.with_extension("");
    // The units name /usr/sbin/borderfilter, which is not installed yet: verify copies
    // that name the staged binary, with the staged man page on MANPATH. The package
    // test verifies the installed units as they are.
    step("systemd-analyze verify");
    let staged = stage.join("usr/sbin").join(PACKAGE);
    let copies = out_dir().join("verify");
    let mut units = Vec::new();
    for unit in UNITS {
        let text = fs::read_to_string(stage.join("lib/systemd/system").join(unit))?;
        let copy = copies.join(unit);
        write(
            &copy,
            text.replace("/usr/sbin/borderfilter", &staged.display().to_string())
                .as_bytes(),
            0o644,
        )?;
        units.push(copy);
    }
    cmd::run(
        Command::new("systemd-analyze")
            .arg("verify")
            .args(&units)
            .env("MANPATH", stage.join("usr/share/man")),
    )?;
    step(&format!(
        "systemd-analyze security {NOTICE_UNIT} (at most {}.{})",
        NOTICE_MAX_EXPOSURE / 10,
        NOTICE_MAX_EXPOSURE % 10
    ));
    eprintln!("    {}", notice_exposure(&copies.join(NOTICE_UNIT))?);
    fs::remove_dir_all(&copies)?;
    step("man page");
    let page = stage.join("usr/share/man/man8/borderfilter.8.gz");
    let text = output(
        Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80")
            .env("MAN_KEEP_FORMATTING", "0"),
    )?;
    eprintln!(
        "    man -l {}: {} lines",
        page.display(),
        text.lines().count()
    );
    Ok(())
}

/// `systemd-analyze security --offline=true` of the notice unit: its verdict line
/// ("Overall exposure level for ...: 1.4 OK"); fails above [`NOTICE_MAX_EXPOSURE`].
fn notice_exposure(unit: &Path) -> anyhow::Result<String> {
    let mut c = Command::new("systemd-analyze");
    c.args([
        "security",
        "--offline=true",
        &format!("--threshold={NOTICE_MAX_EXPOSURE}"),
    ])
    .arg(unit);
    let out = c
        .output()
        .with_context(|| format!("starting {}", cmd::display(&c)))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let verdict = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .map(|l| {
            l.trim_start_matches(|c: char| !c.is_ascii_alphabetic())
                .to_string()
        });
    match verdict {
        Some(v) if out.status.success() => Ok(v),
        _ => bail!(
            "`{}` failed ({}): the notice unit's sandbox is weaker than allowed:\n{text}{}",
            cmd::display(&c),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn workspace_version() -> anyhow::Result<String> {
    let manifest = fs::read_to_string(cmd::root().join("Cargo.toml"))?;
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package {
            if let Some(v) = line.strip_prefix("version") {
                return Ok(v
                    .trim_start_matches([' ', '='])
                    .trim()
                    .trim_matches('"')
                    .to_string());
            }
        }
    }
    bail!("no version in [workspace.package] of Cargo.toml")
}

/// The package's version comes from Cargo.toml; the changelog must have an entry for it.
fn check_changelog(version: &str) -> anyhow::Result<()> {
    let changelog = fs::read_to_string(cmd::root().join("packaging/changelog"))?;
    let first = changelog.lines().next().unwrap_or_default();
    if !first.starts_with(&format!("{PACKAGE} ({version}) ")) {
        bail!(
            "packaging/changelog starts with {first:?}, not an entry for {version}: add one \
             (`dch -v {version}` or by hand) saying what changed"
        );
    }
    Ok(())
}

fn output(c: &mut Command) -> anyhow::Result<String> {
    let out = c
        .output()
        .with_context(|| format!("starting {}", cmd::display(c)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            cmd::display(c),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    let bytes = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write(to, &bytes, mode)
}

fn write(to: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(to, bytes).with_context(|| format!("writing {}", to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `gzip -9n`: the compression Debian wants for man pages and docs (no name or time
/// in the header, so the package is reproducible).
fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting gzip")?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer.join().expect("gzip writer")?;
    if !out.status.success() {
        bail!("gzip failed ({})", out.status);
    }
    Ok(out.stdout)
}

fn markdown_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    Ok(files)
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// DEBIAN/md5sums: every file but the conffiles (dpkg tracks those itself).
fn md5sums(stage: &Path, conffiles: &str) -> anyhow::Result<String> {
    let listed: Vec<PathBuf> = files(stage)?
        .into_iter()
        .filter(|f| !f.starts_with("DEBIAN"))
        .filter(|f| {
            !conffiles
                .lines()
                .any(|c| Path::new(c.trim_start_matches('/')) == f)
        })
        .collect();
    let mut c = Command::new("md5sum");
    c.current_dir(stage).args(&listed);
    output(&mut c)
}

/// Installed-Size in KiB, as dpkg-gencontrol counts it.
fn installed_size(stage: &Path) -> anyhow::Result<u64> {
    let mut kib = 0;
    for f in files(stage)?.iter().filter(|f| !f.starts_with("DEBIAN")) {
        kib += fs::metadata(stage.join(f))?.len().div_ceil(1024);
    }
    Ok(kib.max(1))
}

/// The binary's shared-library dependencies, from dpkg-shlibdeps (e.g. `libc6 (>= 2.34),
/// libgcc-s1 (>= 4.2)`). dpkg-shlibdeps wants a debian/control beside it.
fn shlibs(binary: &Path, out: &Path) -> anyhow::Result<String> {
    let work = out.join("shlibdeps");
    write(
        &work.join("debian/control"),
        format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n").as_bytes(),
        0o644,
    )?;
    let mut c = Command::new("dpkg-shlibdeps");
    c.current_dir(&work)
        .arg("-O")
        .arg(format!("-e{}", binary.display()));
    let line = output(&mut c)?;
    let deps = line
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .context("dpkg-shlibdeps printed no shlibs:Depends")?
        .to_string();
    fs::remove_dir_all(&work)?;
    Ok(deps)
}

/// 0755 for every directory of the tree, whatever the umask.
fn set_dir_modes(stage: &Path) -> anyhow::Result<()> {
    let mut todo = vec![stage.to_path_buf()];
    while let Some(d) = todo.pop() {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
        for entry in fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                todo.push(path);
            }
        }
    }
    Ok(())
}
