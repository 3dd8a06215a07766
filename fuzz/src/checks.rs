//! The properties the fuzz targets check, as plain functions: the targets in
//! `fuzz_targets/` call them on libFuzzer's inputs, and `filter-user/tests/bad_lists.rs`
//! includes this file to replay the committed corpus and the regressions on every
//! `cargo xtask test`. Each function panics when a property fails.

use filter_user::{
    control::Request,
    orders::{
        edit::Edit,
        parse,
        validate::{check, validate, validate_edit, Policy, RedirectTarget},
        OrderList, Problems,
    },
    prefix::Prefix,
};
use serde_json::Value;

/// Longest line a problem may print as: an id of up to 128 characters, a field and a
/// value cut to 80, a message of a few hundred bytes, and escaping.
pub const MAX_PROBLEM_LINE: usize = 2048;

fn strict() -> Policy {
    Policy {
        protect: vec!["192.0.2.0/24".parse::<Prefix>().expect("a valid prefix")],
        redirect: RedirectTarget::NotConfigured,
        capacity_v4: 8,
        capacity_v6: 8,
    }
}

fn lines_are_sound(problems: &Problems, input: &[u8]) {
    for p in &problems.0 {
        let line = p.to_string();
        assert!(
            !line.contains(['\n', '\r']),
            "a problem printed as more than one line: {line:?}\ninput: {:?}",
            String::from_utf8_lossy(input)
        );
        assert!(
            line.len() <= MAX_PROBLEM_LINE,
            "a problem printed as {} bytes: {:?}...",
            line.len(),
            line.chars().take(200).collect::<String>()
        );
    }
}

/// The order list file: `data` through the parser and validator, as the daemon and
/// `borderfilter validate` read it (`validate::check`). Beyond "no panic":
/// - a list comes back only without errors, and a refusal always says why;
/// - each problem prints as one line of bounded length (no value from the file can
///   forge log lines or flood them);
/// - an accepted list, written back with `to_json` (as every CLI edit does) and checked
///   again, gives the same list, with no errors and the same warnings;
/// - a list accepted under a strict deployment (protected ranges, no redirect target,
///   small maps) reads the same as under the default one, and `parse` agrees with `check`.
pub fn order_list(data: &[u8]) {
    let (list, problems) = check(data, &Policy::default());
    lines_are_sound(&problems, data);
    let Some(list) = list else {
        assert!(
            problems.has_errors(),
            "refused without an error: {problems:?}"
        );
        return;
    };
    assert!(
        !problems.has_errors(),
        "a list came back with errors: {problems}"
    );

    let (parsed, _) = parse::parse(data);
    assert_eq!(parsed.as_ref(), Some(&list), "parse and check disagree");

    let text = list.to_json();
    let (again, problems_again) = check(text.as_bytes(), &Policy::default());
    assert!(
        !problems_again.has_errors(),
        "the list written back is refused:\n{problems_again}\n{text}"
    );
    assert_eq!(
        again.as_ref(),
        Some(&list),
        "the list changed when written back:\n{text}"
    );
    let warnings = |p: &Problems| p.warnings().map(|w| w.to_string()).collect::<Vec<_>>();
    assert_eq!(warnings(&problems), warnings(&problems_again));

    let (strict_list, strict_problems) = check(data, &strict());
    lines_are_sound(&strict_problems, data);
    if let Some(s) = strict_list {
        assert_eq!(s, list, "the policy changed what was read");
    }
}

/// The list the edits of [`control_request`] are made on.
const BASE: &str = r#"{
  "version": 1,
  "orders": [
    {"id": "DROP-1", "authority": "Test Court", "issued": "2026-01-01", "action": "drop",
     "prefixes": ["198.51.100.0/24", "2001:db8:66::/48", "203.0.113.7"]},
    {"id": "MON-1", "authority": "Test Court", "issued": "2026-01-01", "action": "monitor",
     "direction": "dst", "prefixes": ["203.0.113.64/26"]}
  ],
  "exceptions": [{"prefix": "198.51.100.53", "reason": "shared resolver"}]
}"#;

fn base() -> OrderList {
    let (list, problems) = check(BASE.as_bytes(), &Policy::default());
    list.unwrap_or_else(|| panic!("the base list is valid: {problems}"))
}

/// Equal, except that a float may come back one step off: serde_json's default number
/// parser is fast rather than correctly rounded (its `float_roundtrip` feature). Numbers
/// mean nothing in a request (an order object has none), so this is not a defect.
fn same(a: &Request, b: &Request) -> bool {
    fn value(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                    x == y || (x - y).abs() <= x.abs().max(y.abs()) * 4.0 * f64::EPSILON
                }
                _ => x == y,
            },
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(x, y)| value(x, y))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| value(v, w)))
            }
            _ => a == b,
        }
    }
    match (a, b) {
        (
            Request::Edit {
                edit: Edit::AddOrder { order: x },
                force: f,
            },
            Request::Edit {
                edit: Edit::AddOrder { order: y },
                force: g,
            },
        ) => f == g && value(x, y),
        _ => a == b,
    }
}

/// The control socket: `data` as one request line, decoded as the daemon decodes it
/// (`Request::decode`); a decoded edit is then made, as the daemon makes it, on a small
/// valid list. Beyond "no panic":
/// - a decoded request encodes (as the CLI sends it) and decodes back to itself;
/// - an edit that the daemon's incremental check (`validate_edit`) accepts leaves a list
///   that the full check accepts too, and that survives being written and read back: a
///   CLI change never leaves a file the daemon would refuse at its next start;
/// - a failed edit leaves the list alone, and undoing an edit gives it back exactly.
pub fn control_request(data: &[u8]) {
    let request = match Request::decode(data) {
        Ok(r) => r,
        Err(message) => {
            assert!(!message.is_empty(), "an empty error message");
            return;
        }
    };
    let _ = (request.name(), request.changes_state());
    let line = serde_json::to_vec(&request).expect("requests serialize");
    let again = Request::decode(&line)
        .unwrap_or_else(|e| panic!("re-encoded as {:?}: {e}", String::from_utf8_lossy(&line)));
    assert!(
        same(&again, &request),
        "re-encoded as {:?}, decoded as {again:?}",
        String::from_utf8_lossy(&line)
    );

    let Request::Edit { edit, .. } = request else {
        return;
    };
    let _ = edit.describe();
    let policy = Policy::default();
    let original = base();
    let mut list = original.clone();
    let Ok(done) = edit.apply_in_place(&mut list) else {
        assert_eq!(list, original, "a failed edit changed the list");
        return;
    };
    let incremental = validate_edit(&list, &done, &policy);
    if !incremental.has_errors() {
        let full = validate(&list, &policy);
        assert!(
            !full.has_errors(),
            "the edit passed the incremental check but the whole list fails:\n{full}"
        );
        let text = list.to_json();
        let (again, problems) = check(text.as_bytes(), &policy);
        assert!(
            !problems.has_errors(),
            "written back, refused:\n{problems}\n{text}"
        );
        assert_eq!(
            again.as_ref(),
            Some(&list),
            "written back, changed:\n{text}"
        );
    }
    done.undo(&mut list);
    assert_eq!(list, original, "undo did not restore the list");
}
