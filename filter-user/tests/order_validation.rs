//! Every validation error the order list can have: each case asserts that a problem names
//! the right place (order id and index, or line and column), the field and the value.

use filter_user::orders::{
    validate::{check, Policy, RedirectTarget},
    Problems, Severity,
};

fn policy() -> Policy {
    Policy {
        protect: vec!["192.0.2.0/28".parse().unwrap()],
        redirect: RedirectTarget::NotConfigured,
        capacity_v4: 10,
        capacity_v6: 10,
    }
}

/// A valid order as JSON text, with the fields of `extra` (JSON object members)
/// replacing or adding to its own.
fn order(id: &str, extra: &str) -> String {
    let mut base: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"authority": "Københavns Byret", "issued": "2006-10-25", "action": "drop", "prefixes": ["198.51.100.0/24"]}"#,
    )
    .unwrap();
    base.insert("id".into(), id.into());
    if !extra.is_empty() {
        let extra: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&format!("{{{extra}}}")).expect("test JSON");
        base.extend(extra);
    }
    serde_json::to_string(&base).unwrap()
}

fn list(orders: &[String], exceptions: &str) -> String {
    format!(
        r#"{{"version": 1, "orders": [{}], "exceptions": [{exceptions}]}}"#,
        orders.join(",")
    )
}

#[track_caller]
fn problems(text: &str) -> Problems {
    let (list, problems) = check(text.as_bytes(), &policy());
    if problems.has_errors() {
        assert!(list.is_none(), "a list with errors must not be returned");
    }
    problems
}

/// Asserts that some error line contains every one of `needles`.
#[track_caller]
fn assert_error(text: &str, needles: &[&str]) {
    let p = problems(text);
    let lines: Vec<String> = p.errors().map(|e| e.to_string()).collect();
    assert!(
        lines.iter().any(|l| needles.iter().all(|n| l.contains(n))),
        "expected an error containing {needles:?}, got:\n{}",
        lines.join("\n")
    );
}

#[test]
fn a_valid_list_has_no_problems() {
    let text = list(
        &[order(
            "A-1",
            r#""valid_from": "2006-10-26", "expires": "2027-10-25", "basis": "copyright", "direction": "both", "note": "x""#,
        )],
        r#"{"prefix": "198.51.100.53/32", "reason": "shared resolver"}"#,
    );
    let (parsed, p) = check(text.as_bytes(), &policy());
    assert!(p.0.is_empty(), "{p}");
    let parsed = parsed.expect("valid");
    assert_eq!(parsed.orders[0].id, "A-1");
    assert_eq!(parsed.exceptions.len(), 1);
}

#[test]
fn json_syntax_errors_give_line_and_column() {
    assert_error(
        "{\n  \"version\": 1,\n  \"orders\": [\n}",
        &["line 4, column 1", "invalid JSON"],
    );
    assert_error(
        "{\"version\": 1, \"orders\": [",
        &["line 1, column 26", "EOF"],
    );
    assert_error("", &["the file is empty"]);
    assert_error("   \n", &["the file is empty"]);
    assert_error(
        "{\"version\": 1, \"orders\": [], \"x\": \"\0\"}",
        &["line 1", "control character"],
    );
    let mut bad_utf8 =
        b"{\"version\": 1, \"orders\": [], \"exceptions\": [{\"prefix\": \"".to_vec();
    bad_utf8.extend_from_slice(&[0xff, 0xfe]);
    bad_utf8.extend_from_slice(b"\"}]}");
    let (_, p) = check(&bad_utf8, &policy());
    assert!(p.to_string().contains("line 1, column"), "{p}");
    assert_error(
        "{\"version\": 1,\n \"orders\": [],\n \"version\": 1}",
        &["line 3", "\"version\" is given twice"],
    );
    let deep = "[".repeat(10_000);
    assert_error(&deep, &["recursion limit"]);
}

#[test]
fn top_level_shape() {
    assert_error("[]", &["file", "top level must be an object"]);
    assert_error(
        r#"{"orders": []}"#,
        &["version", "required field is missing"],
    );
    assert_error(
        r#"{"version": 2, "orders": []}"#,
        &["version = 2", "unsupported version"],
    );
    assert_error(
        r#"{"version": 1}"#,
        &["orders", "required field is missing"],
    );
    assert_error(
        r#"{"version": 1, "orders": {}}"#,
        &["orders = {}", "must be an array of orders, not an object"],
    );
    assert_error(
        r#"{"version": 1, "orders": [], "exeptions": []}"#,
        &["exeptions", "unknown field", "did you mean \"exceptions\""],
    );
}

#[test]
fn wrong_types_name_order_field_and_value() {
    assert_error(
        &list(&["42".into()], ""),
        &["orders[0]", "= 42", "an order must be an object"],
    );
    assert_error(
        &list(&[order("T-1", r#""allow_broad": "yes""#)], ""),
        &[
            "order \"T-1\" (orders[0])",
            "allow_broad = \"yes\"",
            "must be true or false",
        ],
    );
    assert_error(&list(&[r#"{"id": 7, "authority": "a", "issued": "2006-10-25", "action": "drop", "prefixes": ["198.51.100.0/24"]}"#.into()], ""),
        &["orders[0]: id = 7", "must be a string, not a number"]);
    assert_error(
        &list(&[order("T-2", r#""prefixes": "198.51.100.0/24""#)], ""),
        &[
            "order \"T-2\"",
            "prefixes = \"198.51.100.0/24\"",
            "must be an array",
        ],
    );
    assert_error(
        &list(&[order("T-3", r#""prefixes": [24]"#)], ""),
        &["order \"T-3\"", "prefixes[0] = 24", "must be a string"],
    );
    assert_error(
        &list(&[order("T-4", r#""note": ["x"]"#)], ""),
        &["order \"T-4\"", "note = [\"x\"]", "must be a string"],
    );
}

#[test]
fn unknown_and_missing_fields() {
    assert_error(
        &list(&[order("U-1", r#""expiry": "2027-01-01""#)], ""),
        &[
            "order \"U-1\" (orders[0])",
            "expiry",
            "unknown field",
            "did you mean \"expires\"",
        ],
    );
    assert_error(&list(&[r#"{"id": "U-2", "issued": "2006-10-25", "action": "drop", "prefixes": ["198.51.100.0/24"]}"#.into()], ""),
        &["order \"U-2\"", "authority", "required field is missing"]);
    assert_error(&list(&[r#"{"authority": "a", "issued": "2006-10-25", "action": "drop", "prefixes": ["198.51.100.0/24"]}"#.into()], ""),
        &["orders[0]: id", "required field is missing"]);
    assert_error(
        &list(&[], r#"{"prefix": "198.51.100.1"}"#),
        &["exceptions[0]: reason", "required field is missing"],
    );
    assert_error(
        &list(
            &[],
            r#"{"prefix": "198.51.100.1", "reason": "r", "why": 1}"#,
        ),
        &["exceptions[0]: why", "unknown field"],
    );
}

#[test]
fn ids() {
    assert_error(
        &list(&[order("D-1", ""), order("D-1", "")], ""),
        &[
            "order \"D-1\" (orders[1])",
            "id = \"D-1\"",
            "duplicates the id of orders[0]",
        ],
    );
    assert_error(
        &list(&[order("", "")], ""),
        &["id = \"\"", "1 to 128 characters"],
    );
    let long = "x".repeat(129);
    assert_error(
        &list(&[order(&long, "")], ""),
        &["must be 1 to 128 characters, not 129"],
    );
    assert_error(
        &list(&[order("bad\u{7}id", "")], ""),
        &["id = \"bad\\u0007id\"", "printable"],
    );
}

#[test]
fn prefixes() {
    let with = |p: &str| list(&[order("P-1", &format!(r#""prefixes": ["{p}"]"#))], "");
    assert_error(
        &with("198.51.100.0/33"),
        &[
            "order \"P-1\"",
            "prefixes[0] = \"198.51.100.0/33\"",
            "out of range",
        ],
    );
    assert_error(
        &with("2001:db8::/129"),
        &["prefixes[0] = \"2001:db8::/129\"", "out of range"],
    );
    assert_error(
        &with("198.51.100"),
        &["prefixes[0] = \"198.51.100\"", "not an IPv4 or IPv6"],
    );
    assert_error(
        &with("example.com"),
        &["prefixes[0] = \"example.com\"", "not an IPv4 or IPv6"],
    );
    assert_error(
        &with("198.51.100.7/24"),
        &[
            "prefixes[0] = \"198.51.100.7/24\"",
            "host bits are set; the network is 198.51.100.0/24",
        ],
    );
    assert_error(
        &with("0.0.0.0/0"),
        &["prefixes[0] = \"0.0.0.0/0\"", "never allowed"],
    );
    assert_error(&with("::/0"), &["prefixes[0] = \"::/0\"", "never allowed"]);
    assert_error(
        &list(&[order("P-2", r#""prefixes": []"#)], ""),
        &["order \"P-2\"", "prefixes = []", "at least one prefix"],
    );
    // /0 stays refused even with allow_broad.
    assert_error(
        &list(
            &[order(
                "P-3",
                r#""prefixes": ["0.0.0.0/0"], "allow_broad": true"#,
            )],
            "",
        ),
        &["never allowed"],
    );
    assert_error(
        &list(&[], r#"{"prefix": "::/0", "reason": "r"}"#),
        &["exceptions[0]: prefix = \"::/0\"", "never allowed"],
    );
    assert_error(
        &list(&[], r#"{"prefix": "198.51.100.1/24", "reason": "r"}"#),
        &["exceptions[0]: prefix", "host bits"],
    );
}

#[test]
fn broad_prefixes_need_allow_broad() {
    assert_error(
        &list(&[order("B-1", r#""prefixes": ["198.0.0.0/15"]"#)], ""),
        &[
            "order \"B-1\"",
            "prefixes[0] = \"198.0.0.0/15\"",
            "broader than /16",
            "allow_broad",
        ],
    );
    assert_error(
        &list(&[order("B-2", r#""prefixes": ["2001:d00::/24"]"#)], ""),
        &["prefixes[0] = \"2001:d00::/24\"", "broader than /32"],
    );
    let ok = list(
        &[order(
            "B-3",
            r#""prefixes": ["198.0.0.0/15"], "allow_broad": true"#,
        )],
        "",
    );
    assert!(!problems(&ok).has_errors(), "{}", problems(&ok));
}

#[test]
fn protected_ranges() {
    // The operator's --protect range (192.0.2.0/28), from either side.
    assert_error(
        &list(&[order("R-1", r#""prefixes": ["192.0.2.0/24"]"#)], ""),
        &[
            "order \"R-1\"",
            "prefixes[0] = \"192.0.2.0/24\"",
            "overlaps 192.0.2.0/28",
            "--protect",
        ],
    );
    assert_error(
        &list(&[order("R-2", r#""prefixes": ["192.0.2.7"]"#)], ""),
        &["prefixes[0] = \"192.0.2.7\"", "overlaps 192.0.2.0/28"],
    );
    // Built-in ranges.
    assert_error(
        &list(&[order("R-3", r#""prefixes": ["224.0.0.5"]"#)], ""),
        &[
            "prefixes[0] = \"224.0.0.5\"",
            "overlaps 224.0.0.0/4",
            "multicast",
        ],
    );
    assert_error(
        &list(&[order("R-4", r#""prefixes": ["fe80::1"]"#)], ""),
        &["overlaps fe80::/10", "link-local"],
    );
    assert_error(
        &list(&[order("R-5", r#""prefixes": ["127.0.0.1"]"#)], ""),
        &["overlaps 127.0.0.0/8"],
    );
}

#[test]
fn dates() {
    assert_error(
        &list(&[order("T-1", r#""issued": "25-10-2006""#)], ""),
        &["order \"T-1\"", "issued = \"25-10-2006\"", "YYYY-MM-DD"],
    );
    assert_error(
        &list(&[order("T-2", r#""valid_from": "2006-02-30""#)], ""),
        &["valid_from = \"2006-02-30\"", "no such day"],
    );
    assert_error(
        &list(&[order("T-3", r#""expires": "2027-13-01""#)], ""),
        &["expires = \"2027-13-01\"", "month out of range"],
    );
    assert_error(
        &list(&[order("T-4", r#""expires": "tomorrow""#)], ""),
        &["expires = \"tomorrow\"", "RFC 3339"],
    );
    assert_error(
        &list(
            &[order(
                "T-5",
                r#""valid_from": "2027-01-02", "expires": "2027-01-01""#,
            )],
            "",
        ),
        &[
            "order \"T-5\"",
            "expires = \"2027-01-01\"",
            "ends before valid_from 2027-01-02",
        ],
    );
    // One day: valid_from and expires the same date is a valid one-day order.
    let one_day = list(
        &[order(
            "T-6",
            r#""valid_from": "2027-01-01", "expires": "2027-01-01""#,
        )],
        "",
    );
    assert!(!problems(&one_day).has_errors());
}

#[test]
fn enums() {
    assert_error(
        &list(&[order("E-1", r#""action": "block""#)], ""),
        &[
            "order \"E-1\"",
            "action = \"block\"",
            "one of drop, redirect, monitor",
        ],
    );
    assert_error(
        &list(&[order("E-2", r#""direction": "in""#)], ""),
        &["direction = \"in\"", "one of dst, src, both"],
    );
}

#[test]
fn redirect_needs_a_target() {
    assert_error(
        &list(&[order("X-1", r#""action": "redirect""#)], ""),
        &[
            "order \"X-1\"",
            "action = \"redirect\"",
            "no redirect target",
        ],
    );
    let offline = Policy {
        redirect: RedirectTarget::Unknown,
        ..policy()
    };
    let (_, p) = check(
        list(&[order("X-1", r#""action": "redirect""#)], "").as_bytes(),
        &offline,
    );
    assert!(
        !p.has_errors(),
        "offline validation cannot know the target: {p}"
    );
}

#[test]
fn capacity() {
    let many: Vec<String> = (0..11).map(|i| format!("\"198.51.100.{i}\"")).collect();
    assert_error(
        &list(
            &[order(
                "C-1",
                &format!(r#""prefixes": [{}]"#, many.join(",")),
            )],
            "",
        ),
        &["11 distinct ipv4 prefixes", "exceed the map capacity of 10"],
    );
}

#[test]
fn duplicated_prefixes_are_warnings() {
    let text = list(&[order("W-1", ""), order("W-2", "")], "");
    let p = problems(&text);
    assert!(!p.has_errors(), "{p}");
    let warnings: Vec<String> = p.warnings().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("order \"W-2\" (orders[1])")
            && warnings[0].contains("also listed by order \"W-1\""),
        "{}",
        warnings[0]
    );
    assert!(p.0.iter().all(|x| x.severity == Severity::Warning));
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let text = list(
        &[
            order(
                "M-1",
                r#""issued": "yesterday", "prefixes": ["198.51.100.7/24", "bad"], "colour": "red""#,
            ),
            order("M-1", ""),
        ],
        r#"{"prefix": "nope", "reason": "r"}"#,
    );
    let p = problems(&text);
    let n = p.errors().count();
    assert!(n >= 5, "expected at least 5 errors (issued, two prefixes, unknown field, exception), got {n}:\n{p}");
}

#[test]
fn policy_checks_still_run_on_orders_with_other_errors() {
    // The first order fails to parse (bad date, bad prefixes), yet its readable prefixes
    // are still checked, under their own position in the file.
    let text = list(
        &[
            order(
                "Q-1",
                r#""issued": "yesterday", "prefixes": ["bad", "10.0.0.0/8", "224.0.0.5"]"#,
            ),
            order("Q-1", ""),
        ],
        "",
    );
    assert_error(
        &text,
        &[
            "order \"Q-1\" (orders[0])",
            "prefixes[1] = \"10.0.0.0/8\"",
            "broader than /16",
        ],
    );
    assert_error(
        &text,
        &[
            "order \"Q-1\" (orders[0])",
            "prefixes[2] = \"224.0.0.5\"",
            "overlaps 224.0.0.0/4",
        ],
    );
    assert_error(
        &text,
        &[
            "order \"Q-1\" (orders[1])",
            "duplicates the id of orders[0]",
        ],
    );
}
