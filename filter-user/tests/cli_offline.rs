//! The commands that work without a daemon, run as an operator would run them.

use std::process::Command;

fn borderfilter(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_borderfilter"))
        .args(args)
        .output()
        .expect("running borderfilter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `check --orders` says what the data plane does: a redirect order redirects requests
/// to the service and drops what the service sends.
#[test]
fn offline_check_reports_the_data_planes_verdict_per_side() {
    let dir = std::env::temp_dir().join(format!("bf-offline-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("orders.json");
    std::fs::write(
        &path,
        r#"{"version": 1, "orders": [{"id": "R-1", "authority": "Retten", "issued": "2026-01-01",
            "action": "redirect", "prefixes": ["198.51.100.0/24"]}]}"#,
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let (code, out, err) = borderfilter(&["check", "198.51.100.10", "--orders", path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("198.51.100.10 as destination: redirect by order R-1"),
        "{out}"
    );
    assert!(
        out.contains("198.51.100.10 as source: drop by order R-1"),
        "{out}"
    );
    let (code, out, err) = borderfilter(&["--json", "check", "198.51.100.10", "--orders", path]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["sides"][0]["verdict"], "redirect", "{v:#}");
    assert_eq!(v["sides"][1]["verdict"], "drop", "{v:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}
