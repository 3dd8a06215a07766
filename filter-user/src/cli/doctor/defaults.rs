//! The daemon's options as borderfilter.service gives them: `borderfilter run
//! $BORDERFILTER_OPTS`, with the variables of /etc/default/borderfilter read the way
//! systemd reads an EnvironmentFile.

use std::path::{Path, PathBuf};

use clap::Parser;

use super::Report;
use crate::cli::{Cli, Command, RunArgs};

/// The variable of the defaults file that holds the daemon's options; the unit runs
/// `borderfilter run $BORDERFILTER_OPTS`.
pub const OPTS_VAR: &str = "BORDERFILTER_OPTS";

/// The daemon's options as the unit gives them: `run $BORDERFILTER_OPTS`. The socket is
/// the one in those options, else BORDERFILTER_SOCKET from the file, else `socket` (the
/// one doctor was given).
pub(super) fn options_from_file(
    path: &Path,
    socket: PathBuf,
    report: &mut Report,
) -> Option<(RunArgs, PathBuf)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            report.fail(
                "options",
                format!("cannot read {}: {e}", path.display()),
                "the package installs it; restore it with `apt-get install --reinstall \
                 -o Dpkg::Options::=--force-confmiss borderfilter`",
            );
            return None;
        }
    };
    let vars = environment_file(&text);
    let get = |key: &str| vars.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
    let socket = get("BORDERFILTER_SOCKET").map_or(socket, PathBuf::from);
    let mut argv: Vec<String> = vec![
        "borderfilter".into(),
        "--socket".into(),
        socket.display().to_string(),
        "run".into(),
    ];
    let opts = get(OPTS_VAR).cloned().unwrap_or_default();
    argv.extend(opts.split_whitespace().map(str::to_string));
    match Cli::try_parse_from(&argv) {
        Ok(Cli {
            socket,
            command: Command::Run(run),
            ..
        }) => {
            report.pass("options", format!("{OPTS_VAR}=\"{opts}\""));
            Some((run, socket))
        }
        Ok(_) => unreachable!("parsed as `run`"),
        Err(e) => {
            report.fail(
                "options",
                format!("{OPTS_VAR} in {} is not valid: {}", path.display(), {
                    let message = e.to_string();
                    message.lines().next().unwrap_or_default().to_string()
                }),
                format!(
                    "correct {OPTS_VAR} in {}: it takes the options of `borderfilter run` \
                     (see `borderfilter run --help`)",
                    path.display()
                ),
            );
            None
        }
    }
}

/// The variables of a systemd EnvironmentFile: `KEY=VALUE` lines, `#` and `;` comments,
/// values in single or double quotes, lines continued with a trailing backslash.
pub fn environment_file(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut joined = String::new();
    for line in text.lines() {
        if let Some(head) = line.strip_suffix('\\') {
            joined.push_str(head);
            continue;
        }
        joined.push_str(line);
        let logical = std::mem::take(&mut joined);
        let logical = logical.trim();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with(';') {
            continue;
        }
        let Some((key, value)) = logical.split_once('=') else {
            continue;
        };
        out.push((key.trim().to_string(), unquote(value.trim())));
    }
    out
}

fn unquote(value: &str) -> String {
    let mut chars = value.chars();
    match chars.next() {
        Some(q @ ('"' | '\'')) => {
            let mut out = String::new();
            while let Some(c) = chars.next() {
                match c {
                    c if c == q => break,
                    '\\' if q == '"' => out.extend(chars.next()),
                    c => out.push(c),
                }
            }
            out
        }
        _ => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cli::doctor::Status, paths};

    #[test]
    fn environment_files_are_read_as_systemd_reads_them() {
        let text = "# comment\n; also\n\nBORDERFILTER_OPTS=\"--iface eth0 \\\"x\\\"\"\n\
                    OTHER='a b'\nPLAIN=c d \nLONG=one \\\ntwo\n";
        assert_eq!(
            environment_file(text),
            vec![
                ("BORDERFILTER_OPTS".into(), "--iface eth0 \"x\"".into()),
                ("OTHER".into(), "a b".into()),
                ("PLAIN".into(), "c d".into()),
                ("LONG".into(), "one two".into()),
            ]
        );
    }

    #[test]
    fn options_in_the_defaults_file_are_parsed_as_run_options() {
        let dir = std::env::temp_dir().join(format!("bf-doctor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("defaults");
        std::fs::write(
            &file,
            "BORDERFILTER_OPTS=\"--iface eth0 --iface eth1 --protect 192.0.2.0/24\"\n",
        )
        .expect("write");
        let mut report = Report::default();
        let given = PathBuf::from(paths::SOCKET);
        let (run, socket) =
            options_from_file(&file, given.clone(), &mut report).expect("valid options");
        assert_eq!(run.ifaces, ["eth0", "eth1"]);
        assert_eq!(run.protect.len(), 1);
        assert_eq!(socket, given);

        std::fs::write(
            &file,
            "BORDERFILTER_SOCKET=/run/a.sock\nBORDERFILTER_OPTS=\"--socket /run/b.sock\"\n",
        )
        .expect("write");
        let (_, socket) =
            options_from_file(&file, given.clone(), &mut report).expect("valid options");
        assert_eq!(socket, Path::new("/run/b.sock"), "the options win");

        std::fs::write(&file, "BORDERFILTER_OPTS=\"--iface\"\n").expect("write");
        let mut report = Report::default();
        assert!(options_from_file(&file, given, &mut report).is_none());
        assert_eq!(report.0[0].status, Status::Fail, "{:?}", report.0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
