//! `borderfilter generate`: the man page and shell completions, made from the CLI
//! definition itself so they cannot drift from `--help`. Hidden: `cargo xtask deb` runs it
//! on the binary it packages.
//!
//! The man page is one page, borderfilter(8), with every command in full (synopsis,
//! description, options) under COMMANDS: operators search one page rather than a page per
//! subcommand. clap_mangen renders each part; this module arranges them.

use std::io::Write;

use clap::CommandFactory;

use super::{Cli, GenerateCommand};
use crate::paths;

/// Man section 8: the binary is in /usr/sbin.
const SECTION: &str = "8";

pub fn generate(what: &GenerateCommand) -> anyhow::Result<i32> {
    let mut out = std::io::stdout().lock();
    match what {
        GenerateCommand::Man => out.write_all(man_page()?.as_bytes())?,
        GenerateCommand::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "borderfilter", &mut out);
        }
    }
    out.flush()?;
    Ok(0)
}

/// The roff source of borderfilter(8).
pub fn man_page() -> anyhow::Result<String> {
    let mut cmd = Cli::command();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone())
        .section(SECTION)
        .manual("System Administration");
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    man.render_name_section(&mut page)?;
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    let mut page = String::from_utf8(page)?;
    page.push_str(".SH COMMANDS\n");
    for sub in visible_subcommands(&cmd) {
        command_section(sub, &mut page)?;
    }
    page.push_str(&files_section());
    page.push_str(SEE_ALSO);
    Ok(page)
}

fn visible_subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// One command under COMMANDS: a subsection named by its full command line, its synopsis,
/// description and options; then its own subcommands the same way.
fn command_section(cmd: &clap::Command, page: &mut String) -> anyhow::Result<()> {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    page.push_str(&format!(".SS \"{name}\"\n"));
    // The global options (--socket, --json) and --help are under OPTIONS once, not
    // repeated in every command.
    let globals: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set() || a.get_id() == "help")
        .map(|a| a.get_id().clone())
        .collect();
    let mut own = cmd.clone();
    for id in globals {
        own = own.mut_arg(id, |a| a.hide(true));
    }
    let man = clap_mangen::Man::new(own.clone()).section(SECTION);
    let mut synopsis = Vec::new();
    man.render_synopsis_section(&mut synopsis)?;
    let mut description = Vec::new();
    man.render_description_section(&mut description)?;
    page.push_str(&without_heading(&String::from_utf8(synopsis)?));
    page.push_str(".PP\n");
    page.push_str(&without_heading(&String::from_utf8(description)?));
    if own.get_arguments().any(|a| !a.is_hide_set()) {
        let mut options = Vec::new();
        man.render_options_section(&mut options)?;
        page.push_str(&without_heading(&String::from_utf8(options)?));
    }
    if cmd.has_subcommands() {
        for sub in visible_subcommands(cmd) {
            command_section(sub, page)?;
        }
    }
    Ok(())
}

/// A section rendered by clap_mangen without its `.SH` heading, so that it can sit inside
/// a command's subsection.
fn without_heading(section: &str) -> String {
    section
        .lines()
        .filter(|l| !l.starts_with(".SH "))
        .flat_map(|l| [l, "\n"])
        .collect()
}

fn files_section() -> String {
    let entry = |path: &str, what: &str| format!(".TP\n.I {path}\n{what}\n");
    [
        ".SH FILES\n".to_string(),
        entry(paths::ORDERS, "The order list: the single source of truth."),
        entry(
            paths::DEFAULTS_FILE,
            "The daemon's options (BORDERFILTER_OPTS), read by borderfilter.service; \
             `borderfilter doctor --defaults` checks them.",
        ),
        entry(paths::SOCKET, "The control socket the commands talk to."),
        entry(
            paths::PIN_DIR,
            "The pinned program and maps: enforcement outlives the daemon.",
        ),
        entry(paths::AUDIT_LOG, "The audit trail."),
        entry(
            "/usr/share/doc/borderfilter/operator-manual.md.gz",
            "The operator's manual: installation, upgrades, troubleshooting, and the ways \
             to lock yourself out and how the safety rails prevent them.",
        ),
    ]
    .concat()
}

const SEE_ALSO: &str = ".SH \"SEE ALSO\"\n\
.BR systemctl (1),\n\
.BR journalctl (1),\n\
.BR ip (8),\n\
.BR ethtool (8)\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_documents_every_command_and_option() {
        let page = man_page().expect("renders");
        let mut cmd = Cli::command();
        cmd.build();
        fn walk(cmd: &clap::Command, page: &str) {
            for sub in visible_subcommands(cmd) {
                let name = sub.get_bin_name().expect("built");
                assert!(
                    page.contains(&format!(".SS \"{name}\"")),
                    "no section for {name}"
                );
                for arg in sub
                    .get_arguments()
                    .filter(|a| !a.is_hide_set() && !a.is_global_set())
                {
                    if let Some(long) = arg.get_long() {
                        let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
                        assert!(
                            page.contains(&escaped),
                            "{name}: --{long} is not documented"
                        );
                    }
                }
                walk(sub, page);
            }
        }
        walk(&cmd, &page);
        assert!(!page.contains("generate"), "the hidden command leaked");
    }
}
