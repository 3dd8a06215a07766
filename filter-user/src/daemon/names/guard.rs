//! The collateral guard: an address a name resolves to is not blocked when blocking it
//! would block others too: it lies in a protected range (always), or in a shared-hosting
//! range (a CDN or a large hoster, where one address serves thousands of unrelated
//! sites) and the order does not say `"allow_shared": true`.

use std::{net::IpAddr, path::Path};

use crate::{orders::validate::ALWAYS_PROTECTED, prefix::Prefix};

/// A shared-hosting range, with what the file says of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRange {
    pub prefix: Prefix,
    /// The rest of its line (who hosts there), if any.
    pub label: String,
}

/// Why an address is not blocked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Guarded {
    pub range: Prefix,
    pub why: String,
}

#[derive(Clone, Debug, Default)]
pub struct Guard {
    pub protect: Vec<Prefix>,
    pub shared: Vec<SharedRange>,
    /// Where the shared ranges came from, for messages.
    pub shared_file: Option<String>,
}

impl Guard {
    /// The guard of `run`'s options: `--protect` and the `--shared-ranges` file (read
    /// now; a bad line is an error naming it).
    pub fn load(protect: Vec<Prefix>, shared_ranges: Option<&Path>) -> anyhow::Result<Self> {
        Ok(Self {
            protect,
            shared: match shared_ranges {
                Some(path) => read_shared_ranges(path)?,
                None => Vec::new(),
            },
            shared_file: shared_ranges.map(|p| p.display().to_string()),
        })
    }

    /// Whether `addr`, a name's address under an order with `allow_shared`, must not be
    /// blocked, and why.
    pub fn check(&self, addr: IpAddr, allow_shared: bool) -> Option<Guarded> {
        let host = Prefix::host(addr);
        for (text, why) in ALWAYS_PROTECTED {
            let range: Prefix = text.parse().expect("built-in ranges are valid");
            if range.contains(&host) {
                return Some(Guarded {
                    range,
                    why: format!("it lies in {range}, {why}, which no order may block"),
                });
            }
        }
        if let Some(range) = self.protect.iter().find(|p| p.contains(&host)) {
            return Some(Guarded {
                range: *range,
                why: format!("it lies in {range}, protected with --protect"),
            });
        }
        if allow_shared {
            return None;
        }
        self.shared
            .iter()
            .filter(|s| s.prefix.contains(&host))
            .max_by_key(|s| s.prefix.length())
            .map(|s| Guarded {
                range: s.prefix,
                why: format!(
                    "it lies in the shared-hosting range {}{} (--shared-ranges {}), where one address serves many unrelated sites; \
                     the order does not say \"allow_shared\": true",
                    s.prefix,
                    if s.label.is_empty() { String::new() } else { format!(" ({})", s.label) },
                    self.shared_file.as_deref().unwrap_or("?"),
                ),
            })
    }
}

/// Reads a shared-ranges file: one prefix per line, optionally followed by a label;
/// `#` starts a comment. Every bad line is reported, naming the file and the line.
pub fn read_shared_ranges(path: &Path) -> anyhow::Result<Vec<SharedRange>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--shared-ranges {}: {e}", path.display()))?;
    parse_shared_ranges(&text).map_err(|problems| {
        anyhow::anyhow!(
            "--shared-ranges {}: {}",
            path.display(),
            problems.join("; ")
        )
    })
}

pub fn parse_shared_ranges(text: &str) -> Result<Vec<SharedRange>, Vec<String>> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (first, rest) = line
            .split_once(char::is_whitespace)
            .map_or((line, ""), |(a, b)| (a, b.trim()));
        match first.parse::<Prefix>() {
            Ok(prefix) => out.push(SharedRange {
                prefix,
                label: rest.to_string(),
            }),
            Err(e) => problems.push(format!(
                "line {}: {first:?}: {}",
                i + 1,
                crate::orders::parse::prefix_problem(&e)
            )),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protect_always_wins_and_shared_needs_allow_shared() {
        let guard = Guard {
            protect: vec!["192.0.2.0/24".parse().unwrap()],
            shared: parse_shared_ranges("# CDNs\n203.0.113.0/24 ExampleCDN\n2001:db8:cd::/48\n")
                .unwrap(),
            shared_file: Some("shared.txt".into()),
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let g = guard.check(ip("192.0.2.9"), true).unwrap();
        assert!(g.why.contains("--protect"), "{}", g.why);
        assert!(guard
            .check(ip("127.0.0.1"), true)
            .unwrap()
            .why
            .contains("loopback"));
        let g = guard.check(ip("203.0.113.70"), false).unwrap();
        assert!(
            g.why.contains("ExampleCDN") && g.why.contains("shared.txt"),
            "{}",
            g.why
        );
        assert_eq!(guard.check(ip("203.0.113.70"), true), None);
        assert!(guard.check(ip("2001:db8:cd::1"), false).is_some());
        assert_eq!(guard.check(ip("198.51.100.10"), false), None);
    }

    #[test]
    fn bad_lines_are_named() {
        let e =
            parse_shared_ranges("203.0.113.0/24\nnot-a-prefix\n10.0.0.1/8 hoster\n").unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("line 2:"), "{e:?}");
        assert!(
            e[1].starts_with("line 3:") && e[1].contains("host bits"),
            "{e:?}"
        );
    }
}
