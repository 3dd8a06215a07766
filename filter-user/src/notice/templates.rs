//! The notice pages: plain files an operator can edit, one per legal basis with a
//! default, in HTML and plain text. Placeholders are `{{name}}`; every value is escaped
//! for HTML (or stripped of control characters for text) before it is put in.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// The templates built into the binary, used when --templates has no file for a basis.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "default.html",
        include_str!("../../templates/notice/default.html"),
    ),
    (
        "default.txt",
        include_str!("../../templates/notice/default.txt"),
    ),
    (
        "copyright.html",
        include_str!("../../templates/notice/copyright.html"),
    ),
    (
        "gambling.html",
        include_str!("../../templates/notice/gambling.html"),
    ),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Html,
    Text,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Text => "txt",
        }
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A basis usable as a file name: lowercase letters, digits, '-' and '_' only.
fn file_stem(basis: &str) -> Option<String> {
    let stem = basis.trim().to_lowercase();
    (!stem.is_empty()
        && stem.len() <= 64
        && stem
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    .then_some(stem)
}

/// Finds the template for `basis` in `dir`, then among the built-in ones, then the
/// default.
pub fn load(dir: Option<&Path>, basis: Option<&str>, format: Format) -> String {
    let ext = format.extension();
    let mut names: Vec<String> = basis
        .and_then(file_stem)
        .map(|b| format!("{b}.{ext}"))
        .into_iter()
        .collect();
    names.push(format!("default.{ext}"));
    for name in &names {
        if let Some(dir) = dir {
            let path: PathBuf = dir.join(name);
            if let Ok(text) = std::fs::read_to_string(&path) {
                return text;
            }
        }
        if let Some((_, text)) = BUILT_IN.iter().find(|(n, _)| n == name) {
            return (*text).to_string();
        }
    }
    // No text template for this basis or by default in the directory: the built-in one.
    BUILT_IN
        .iter()
        .find(|(n, _)| *n == format!("default.{ext}"))
        .map(|(_, t)| (*t).to_string())
        .unwrap_or_default()
}

/// Fills `{{name}}` placeholders from `values`, escaped for `format`. Unknown
/// placeholders become empty.
pub fn render(template: &str, values: &HashMap<&str, String>, format: Format) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let key = after[..end].trim();
                let value = values.get(key).map(String::as_str).unwrap_or("");
                match format {
                    Format::Html => out.push_str(&escape_html(value)),
                    Format::Text => out.extend(value.chars().filter(|c| !c.is_control())),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_and_templates_chosen_by_basis() {
        let values = HashMap::from([("authority", "<script>x</script> & co".to_string())]);
        assert_eq!(
            render("by {{authority}}.", &values, Format::Html),
            "by &lt;script&gt;x&lt;/script&gt; &amp; co."
        );
        assert_eq!(
            render("{{missing}}|{{ authority }}", &values, Format::Text),
            "|<script>x</script> & co"
        );
        assert!(load(None, Some("gambling"), Format::Html).contains("Spillemyndigheden"));
        assert!(load(None, Some("../../etc/passwd"), Format::Html)
            .contains("Adgangen til denne tjeneste er blokeret</h1>"));
        assert!(load(None, Some("copyright"), Format::Text)
            .contains("Access to this service is blocked."));
    }
}
