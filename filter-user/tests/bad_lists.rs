//! Hostile and broken order lists (and control requests), on the host: the regressions of
//! what fuzzing and the bad-input tests found, and a replay of the fuzz corpus and of
//! every input that once failed, through the very properties the fuzz targets check
//! (`fuzz/src/checks.rs`, included below). `tests/tests/e2e_bad_lists.rs` and
//! `e2e_bad_requests.rs` take the same kinds of input through the running daemon.

#[path = "../../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

use filter_user::{
    control::Request,
    orders::{
        problem::{Problems, MAX_PROBLEMS},
        validate::{check, Policy},
        Severity,
    },
};

fn refused(text: &[u8]) -> Problems {
    let (list, problems) = check(text, &Policy::default());
    assert!(list.is_none(), "refused: {}", String::from_utf8_lossy(text));
    problems
}

fn one_order(fields: &str) -> String {
    format!(
        r#"{{"version": 1, "orders": [{{"id": "A-1", "authority": "Test Court", "issued": "2026-01-01", "action": "drop", "prefixes": ["198.51.100.0/24"]{fields}}}]}}"#
    )
}

#[track_caller]
fn assert_lines_sound(p: &Problems) {
    for line in p.0.iter().map(|p| p.to_string()) {
        assert!(!line.contains(['\n', '\r']), "more than one line: {line:?}");
        assert!(
            line.len() <= checks::MAX_PROBLEM_LINE,
            "{} bytes",
            line.len()
        );
    }
}

#[test]
fn an_unknown_field_cannot_forge_a_line() {
    // Found by fuzzing: the name of an unknown field was printed raw.
    let p = refused(one_order(r#", "x\nerror: file: all good": 1"#).as_bytes());
    assert_lines_sound(&p);
    assert_eq!(
        p.to_string(),
        "error: order \"A-1\" (orders[0]): \"x\\nerror: file: all good\": unknown field (fields are id, authority, issued, valid_from, expires, basis, action, direction, prefixes, domains, allow_broad, allow_shared, note)\n"
    );
    // Plain names stay as written.
    let p = refused(one_order(r#", "expiry": "2027-01-01""#).as_bytes());
    assert!(p.to_string().contains(": expiry: unknown field"), "{p}");
}

#[test]
fn long_text_from_the_file_is_cut_in_messages() {
    let long = "k".repeat(100_000);
    // A key given twice.
    let p =
        refused(format!(r#"{{"version": 1, "orders": [], "{long}": 1, "{long}": 2}}"#).as_bytes());
    assert_lines_sound(&p);
    assert!(p.to_string().contains("\"kkkk"), "{p}");
    // An unknown key.
    let p = refused(one_order(&format!(r#", "{long}": 1"#)).as_bytes());
    assert_lines_sound(&p);
    // A prefix length of many digits.
    let p = refused(
        one_order("")
            .replace(
                "198.51.100.0/24",
                &format!("198.51.100.0/{}33", "0".repeat(5000)),
            )
            .as_bytes(),
    );
    assert_lines_sound(&p);
    assert!(
        p.to_string()
            .contains("prefix length 0000000000000000000000000000000000000000... is out of range for ipv4 (0 to 32)"),
        "{p}"
    );
    // A valid_from with thousands of fraction digits, named in another field's message.
    let from = format!("2026-06-01T00:00:00.{}Z", "1".repeat(4000));
    let p = refused(
        one_order(&format!(
            r#", "valid_from": "{from}", "expires": "2026-05-01""#
        ))
        .as_bytes(),
    );
    assert_lines_sound(&p);
    assert!(
        p.to_string()
            .contains("ends before valid_from 2026-06-01T00:00:00.111"),
        "{p}"
    );
}

#[test]
fn an_overlong_id_is_not_copied_into_every_problem() {
    // An id of 1 MB and 5,000 bad prefixes: each problem used to carry the whole id
    // (5 GB of messages from a 6 MB file).
    let id = "I".repeat(1 << 20);
    let bad: Vec<&str> = vec!["1"; 5000];
    let text = format!(
        r#"{{"version": 1, "orders": [{{"id": "{id}", "authority": "a", "issued": "2026-01-01", "action": "drop", "prefixes": [{}]}}]}}"#,
        bad.join(",")
    );
    let p = refused(text.as_bytes());
    assert_lines_sound(&p);
    assert!(
        p.to_string().starts_with("error: orders[0]: id = \"IIII"),
        "{p}"
    );
}

#[test]
fn a_million_problems_are_reported_as_a_thousand_and_a_count() {
    // Found by the bad-input tests: a 2 MB file of a million bad prefixes took ~700 MB to
    // report, a 60 MB one over 10 GB, and the daemon keeps the report.
    let bad = vec!["1"; 1_000_000].join(",");
    let p = refused(
        one_order("")
            .replace("\"198.51.100.0/24\"", &bad)
            .as_bytes(),
    );
    assert_eq!(p.0.len(), MAX_PROBLEMS + 1);
    assert!(p.has_errors());
    let last = p.0.last().expect("a summary");
    assert_eq!(last.severity, Severity::Error);
    assert_eq!(
        last.to_string(),
        "error: file: 999000 more problems not shown (999000 errors, 0 warnings)"
    );
    assert_eq!((p.error_count(), p.warning_count()), (1_000_000, 0));
}

#[test]
fn warnings_beyond_the_limit_are_counted_and_an_error_after_them_still_refuses() {
    // 1,500 duplicate prefixes (warnings), the list still valid.
    let prefixes: Vec<String> = (0..1501).map(|_| "\"198.51.100.7\"".to_string()).collect();
    let text = one_order("").replace("\"198.51.100.0/24\"", &prefixes.join(","));
    let (list, p) = check(text.as_bytes(), &Policy::default());
    assert!(list.is_some(), "{p}");
    assert_eq!(p.0.len(), MAX_PROBLEMS + 1);
    assert_eq!(
        p.0[MAX_PROBLEMS].to_string(),
        "warning: file: 500 more problems not shown (0 errors, 500 warnings)"
    );
    assert_eq!((p.error_count(), p.warning_count()), (0, 1500));
    // The same with one error at the very end: the summary makes it an error.
    let text = text.replace(r#""prefixes": ["#, r#""allow_broad": "no", "prefixes": ["#);
    let (list, p) = check(text.as_bytes(), &Policy::default());
    assert!(list.is_none());
    assert!(p.has_errors());
    assert_eq!(p.0.len(), MAX_PROBLEMS + 1);
}

#[test]
fn what_editors_and_disks_do_to_a_file_is_named() {
    let list = one_order("");
    let p = refused(&[b"\xef\xbb\xbf".as_slice(), list.as_bytes()].concat());
    assert_eq!(
        p.to_string(),
        "error: line 1, column 1: the file starts with a byte order mark (BOM): save it as UTF-8 without one\n"
    );
    let mut latin1 = list.clone().into_bytes();
    let at = list.find("Test Court").expect("the authority");
    latin1[at + 4] = 0xe6; // "Test\xe6Court": Latin-1, not UTF-8
    let p = refused(&latin1);
    assert!(
        p.to_string()
            .ends_with("invalid JSON: invalid unicode code point (the file is not valid UTF-8)\n"),
        "{p}"
    );
    let p = refused(&[0u8; 512]);
    assert_eq!(
        p.to_string(),
        "error: line 1, column 1: invalid JSON: expected value (the file contains NUL bytes: is it damaged, or not a text file?)\n"
    );
}

#[test]
fn a_request_is_an_object() {
    // serde would read `["detach"]` as a detach request.
    for line in [&b"[\"detach\"]\n"[..], b"  [\"status\"]"] {
        assert_eq!(
            Request::decode(line),
            Err(
                "malformed request: a request is a JSON object like {\"command\": \"status\"}"
                    .into()
            )
        );
    }
    assert_eq!(
        Request::decode(b"{\"command\": \"detach\"}\n"),
        Ok(Request::Detach)
    );
    assert_eq!(
        Request::decode(b"\xff\n"),
        Err("the request is not UTF-8".into())
    );
    // Commands without fields refuse fields like the others (`deny_unknown_fields` does
    // not reach them): a misspelt option must not be silently ignored.
    assert_eq!(
        Request::decode(b"{\"command\": \"detach\", \"pin_dir\": \"/elsewhere\"}"),
        Err("malformed request: unknown field `pin_dir`: `detach` takes no fields".into())
    );
    assert_eq!(
        Request::decode(b"{\"command\": \"status\", \"verbose\": true}"),
        Err("malformed request: unknown field `verbose`: `status` takes no fields".into())
    );
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

/// Runs `check` on every file under fuzz/{seeds,corpus,regressions}/`target`, naming the
/// file that fails.
fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut count = 0;
    for kind in ["seeds", "corpus", "regressions"] {
        for file in inputs(&fuzz.join(kind).join(target)) {
            let data = std::fs::read(&file).expect("reading an input");
            if let Err(e) = std::panic::catch_unwind(|| check(&data)) {
                std::panic::resume_unwind(Box::new(format!(
                    "{} fails: {:?}",
                    file.display(),
                    e.downcast_ref::<String>()
                )));
            }
            count += 1;
        }
    }
    assert!(count > 20, "{count} inputs for {target}: is fuzz/ there?");
}

#[test]
fn the_fuzz_corpus_and_regressions_hold_for_order_lists() {
    replay("order_list", checks::order_list);
}

#[test]
fn the_fuzz_corpus_and_regressions_hold_for_control_requests() {
    replay("control_request", checks::control_request);
}
