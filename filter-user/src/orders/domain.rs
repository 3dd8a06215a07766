//! Domain names in orders: what a valid one is, and its one spelling.
//!
//! A name is kept as the file spells it (`Listed::text`) and compared, resolved and shown
//! in its ASCII form (`DomainName`): lower case, IDNA-encoded (`blåbær.dk` becomes
//! `xn--blbr-roa5a.dk`), without the root's trailing dot. Wildcards are refused: a
//! wildcard cannot be resolved to the addresses of every name it covers.

use std::fmt;

use serde_json::Value;

use super::{
    problem::{show, Place, Problems},
    Listed,
};

/// Longest name, in bytes of its ASCII form without the trailing dot (RFC 1035 2.3.4).
pub const MAX_NAME_BYTES: usize = 253;
/// Longest label (RFC 1035 2.3.4).
pub const MAX_LABEL_BYTES: usize = 63;
/// Most names one order may list; a list's names are re-resolved on their TTL, so this
/// bounds the queries one order can cause.
pub const MAX_NAMES_PER_ORDER: usize = 1000;

/// A valid domain name in its ASCII form.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a person reads it (Unicode labels decoded), for messages and pages.
    pub fn unicode(&self) -> String {
        idna::domain_to_unicode(&self.0).0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for DomainName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Read back (the daemon's state file) through the same checks as the list.
impl<'de> serde::Deserialize<'de> for DomainName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for DomainName {
    type Err = String;

    /// Checks and normalises a name; the error says what is wrong with it.
    fn from_str(text: &str) -> Result<Self, String> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Err("an empty name".into());
        }
        if trimmed.trim() != trimmed || trimmed.contains(char::is_whitespace) {
            return Err("a name has no spaces".into());
        }
        if trimmed.parse::<std::net::IpAddr>().is_ok()
            || trimmed.parse::<crate::prefix::Prefix>().is_ok()
        {
            return Err("an IP address, not a name: list it in \"prefixes\"".into());
        }
        if trimmed.contains('*') {
            return Err(
                "wildcards are not supported: a wildcard cannot be resolved to the addresses of \
                 every name it covers; list each name"
                    .into(),
            );
        }
        if trimmed.contains("://") || trimmed.contains('/') {
            return Err("a name, not a URL: write just the host, like \"allofmp3.com\"".into());
        }
        let ascii = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            idna::domain_to_ascii_strict(trimmed).map_err(|_| {
                "not a valid internationalised name (IDNA 2008 / UTS 46 refuses it)".to_string()
            })?
        };
        if ascii.len() > MAX_NAME_BYTES {
            return Err(format!(
                "{} bytes long{}; a name has at most {MAX_NAME_BYTES}",
                ascii.len(),
                if ascii.len() != trimmed.len() {
                    " in its IDNA form"
                } else {
                    ""
                }
            ));
        }
        for label in ascii.split('.') {
            if label.is_empty() {
                return Err("an empty label (two dots in a row, or a leading dot)".into());
            }
            if label.len() > MAX_LABEL_BYTES {
                return Err(format!(
                    "the label {:?} is {} bytes long; a label has at most {MAX_LABEL_BYTES}",
                    cut(label),
                    label.len()
                ));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(format!(
                    "the label {:?} holds {c:?}: a host name has letters, digits and hyphens",
                    cut(label)
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!(
                    "the label {:?} starts or ends with a hyphen",
                    cut(label)
                ));
            }
        }
        if !ascii.contains('.') {
            return Err(
                "a single label (a top-level domain or a local host name); write the whole name"
                    .into(),
            );
        }
        if ascii
            .rsplit('.')
            .next()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return Err("the last label is all digits: not a name (a mistyped address?)".into());
        }
        Ok(DomainName(ascii))
    }
}

fn cut(text: &str) -> String {
    if text.chars().count() <= 24 {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(24).collect::<String>())
    }
}

/// Reads an order's `"domains"`: every name valid, none twice. Problems go against
/// `place`, each naming `domains[i]`.
pub fn read_domains(
    value: &Value,
    place: &Place,
    p: &mut Problems,
) -> Option<Vec<Listed<DomainName>>> {
    let Value::Array(items) = value else {
        p.error(
            place,
            "domains".to_string(),
            show(value),
            "must be an array of names like [\"allofmp3.com\"]",
        );
        return None;
    };
    if items.len() > MAX_NAMES_PER_ORDER {
        p.error(
            place,
            "domains".to_string(),
            None,
            format!(
                "{} names; an order lists at most {MAX_NAMES_PER_ORDER} (split it into several orders)",
                items.len()
            ),
        );
        return None;
    }
    let mut out: Vec<Listed<DomainName>> = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let field = format!("domains[{i}]");
        let Value::String(text) = item else {
            p.error(
                place,
                field,
                show(item),
                "must be a string like \"allofmp3.com\"",
            );
            ok = false;
            continue;
        };
        match text.parse::<DomainName>() {
            Ok(name) => {
                if let Some(j) = out.iter().position(|l| l.value == name) {
                    p.warning(
                        place,
                        field,
                        show(item),
                        format!("the same name as domains[{j}] ({name})"),
                    );
                }
                out.push(Listed {
                    text: text.clone(),
                    value: name,
                });
            }
            Err(why) => {
                p.error(place, field, show(item), why);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Result<String, String> {
        s.parse::<DomainName>().map(|n| n.0)
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(name("AllOfMP3.com.").unwrap(), "allofmp3.com");
        assert_eq!(name("www.allofmp3.com").unwrap(), "www.allofmp3.com");
        // A Danish name: IDNA, and back for people.
        let n: DomainName = "blåbærgrød.dk".parse().unwrap();
        assert_eq!(n.as_str(), "xn--blbrgrd-fxak7p.dk");
        assert_eq!(n.unicode(), "blåbærgrød.dk");
        assert_eq!(name("BLÅBÆRGRØD.DK").unwrap(), "xn--blbrgrd-fxak7p.dk");
    }

    #[test]
    fn bad_names_say_why() {
        let long_label = "a".repeat(64);
        let long_name = format!("{}.com", ["abcdefghij"; 23].join("."));
        for (text, why) in [
            ("", "empty"),
            (".", "empty"),
            ("198.51.100.7", "IP address"),
            ("2001:db8::1", "IP address"),
            ("203.0.113.0/24", "IP address"),
            ("*.allofmp3.com", "wildcards"),
            ("https://allofmp3.com/", "URL"),
            ("allofmp3..com", "empty label"),
            (".allofmp3.com", "empty label"),
            ("all of mp3.com", "spaces"),
            ("allofmp3.com\n", "spaces"),
            ("-allofmp3.com", "hyphen"),
            ("allofmp3!.com", "holds '!'"),
            ("localhost", "single label"),
            ("198.51.100", "all digits"),
            (long_label.as_str(), "64 bytes"),
            (long_name.as_str(), "at most 253"),
        ] {
            let e = name(text).expect_err(text);
            assert!(e.contains(why), "{text:?}: {e}");
        }
        let label = format!("{long_label}.com");
        assert!(name(&label).unwrap_err().contains("at most 63"));
        assert_eq!(name(&format!("{}.com", "a".repeat(63))).unwrap().len(), 67);
    }
}
