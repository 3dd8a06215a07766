//! A systemd unit as the package test (`e2e_package.rs`) plays it without systemd: its
//! settings, the environment of its EnvironmentFile= files, its command line expanded,
//! and the command started under its capabilities and user in a namespace.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{
    netns,
    package::{cli, text},
    poll,
    topology::Topology,
};

/// The user a `DynamicUser=yes` unit runs as here: not root, in no group, owning nothing.
pub const NOBODY: u32 = 65534;

/// `Key=value` of the unit's [Service] section (the last one, as systemd takes it).
#[track_caller]
pub fn unit_value(unit: &str, key: &str) -> String {
    unit_value_opt(unit, key).unwrap_or_else(|| panic!("the unit has no {key}="))
}

pub fn unit_value_opt(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .next_back()
        .map(|v| v.trim().to_string())
}

/// The environment the unit gives the daemon: its EnvironmentFile= files, read as
/// systemd reads them (KEY=VALUE, comments, quotes).
pub fn unit_environment(unit: &str) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for file in unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("EnvironmentFile="))
    {
        let (optional, path) = match file.strip_prefix('-') {
            Some(p) => (true, p),
            None => (false, file),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(_) if optional => continue,
            Err(e) => panic!("EnvironmentFile {path}: {e}"),
        };
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                    .unwrap_or(v);
                env.push((k.trim().to_string(), v.to_string()));
            }
        }
    }
    env
}

/// A command line as systemd expands it: `$VAR` as a word becomes the variable's value
/// split at whitespace, `${VAR}` its value as one word.
pub fn expand(line: &str, env: &[(String, String)]) -> Vec<String> {
    let get = |k: &str| {
        env.iter()
            .rev()
            .find(|(key, _)| key == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let mut out = Vec::new();
    for word in line.split_whitespace() {
        if let Some(name) = word.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            out.push(get(name).to_string());
        } else if let Some(name) = word.strip_prefix('$') {
            out.extend(get(name).split_whitespace().map(str::to_string));
        } else {
            out.push(word.to_string());
        }
    }
    out
}

/// A unit's command line started as systemd starts it (through setpriv): under its
/// CapabilityBoundingSet=, with its AmbientCapabilities= and NoNewPrivileges=, and for
/// `DynamicUser=yes` as a user that is not root and in no group.
pub struct Unit {
    child: Option<Child>,
    log: PathBuf,
}

impl Unit {
    /// The daemon's unit, in the router.
    #[track_caller]
    pub fn start(t: &Topology, unit: &str, argv: &[String]) -> Self {
        Self::start_in(t.router.path(), t.dir.join("unit.log"), unit, argv)
    }

    #[track_caller]
    pub fn start_in(ns: String, log: PathBuf, unit: &str, argv: &[String]) -> Self {
        let caps = |key: &str| -> Vec<String> {
            unit_value_opt(unit, key)
                .unwrap_or_default()
                .split_whitespace()
                .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
                .collect()
        };
        let bounding = caps("CapabilityBoundingSet");
        assert!(!bounding.is_empty(), "the unit bounds no capability");
        let mut setpriv = vec![format!("--bounding-set=-all,{}", bounding.join(","))];
        let ambient = caps("AmbientCapabilities");
        if ambient.is_empty() {
            setpriv.push("--inh-caps=-all".into());
        } else {
            let ambient = ambient.join(",");
            setpriv.push(format!("--inh-caps=-all,{ambient}"));
            setpriv.push(format!("--ambient-caps=-all,{ambient}"));
        }
        if unit_value_opt(unit, "NoNewPrivileges").as_deref() == Some("yes") {
            setpriv.push("--no-new-privs".into());
        }
        assert_eq!(
            unit_value_opt(unit, "User"),
            None,
            "the test knows DynamicUser= only"
        );
        if unit_value_opt(unit, "DynamicUser").as_deref() == Some("yes") {
            setpriv.extend([
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".into(),
            ]);
        }
        setpriv.push("--".into());
        let out = std::fs::File::create(&log).expect("creating the unit's log");
        let mut cmd = Command::new("setpriv");
        cmd.args(&setpriv)
            .args(argv)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        netns::start_in(&mut cmd, ns);
        let child = cmd.spawn().expect("starting setpriv");
        Self {
            child: Some(child),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    #[track_caller]
    pub fn wait_until_it_answers(&mut self, socket: &Path) {
        poll::until(
            "the daemon to answer on its socket",
            Duration::from_secs(60),
            || {
                self.assert_running();
                let out = cli(socket, &["status"]);
                (out.status.success(), text(&out))
            },
        );
    }

    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!("the daemon exited with {status}:\n{}", self.log());
        }
    }

    /// SIGTERM, as `systemctl stop` sends it, and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
