//! The edit journal beside the order list file (`orders.json.journal`): CLI edits that
//! were acknowledged before the file was rewritten. Rewriting and syncing a list of a
//! million prefixes takes tens of milliseconds; appending one line and syncing it takes
//! one or two. So an edit is durable once its line is in the journal, the daemon answers,
//! and writes the whole file afterwards, then drops the lines the file now holds.
//!
//! Whoever reads the list reads the file with the journal's pending edits made again on
//! it ([`replay`]): after a crash between the answer and the rewrite nothing is lost. Each
//! line names the list it was made on and the list it gave (their SHA-256), so lines the
//! file already holds are told from lines it does not. If the file was replaced by someone
//! else meanwhile, the pending edits are made again on their version, as a CLI edit that
//! finds the file changed under it is; one that no longer applies is skipped and named.

use std::{
    fs::{self, OpenOptions},
    io,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{
    edit::Edit,
    file::{self, FileError},
    validate, OrderList,
};

/// One acknowledged edit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// SHA-256 of the list the edit was made on.
    pub base: String,
    /// SHA-256 of the list it gave.
    pub after: String,
    pub edit: Edit,
}

/// The journal of the order list at `orders`.
pub fn path_for(orders: &Path) -> PathBuf {
    let mut name = orders.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    orders.with_file_name(name)
}

/// Appends `line` and syncs it. The journal gets the owner, group and mode of the list.
pub fn append(journal: &Path, orders: &Path, line: &Line) -> Result<(), FileError> {
    let meta = fs::metadata(orders).ok();
    let mode = meta.as_ref().map_or(0o644, |m| m.mode() & 0o7777);
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(journal)
        .map_err(file::write_error("opening", journal))?;
    if let Some(m) = &meta {
        // Best effort, as for the list itself: a non-root test may not own it.
        let _ = std::os::unix::fs::fchown(&f, Some(m.uid()), Some(m.gid()));
    }
    crate::jsonl::append(&mut f, line).map_err(file::write_error("appending to", journal))
}

/// The journal's lines; none if there is no journal. A torn last line (a crash in the
/// middle of an append, before the edit was acknowledged) is skipped.
pub fn read(journal: &Path) -> Result<Vec<Line>, FileError> {
    crate::jsonl::read(journal)
        .map(Option::unwrap_or_default)
        .map_err(|(op, source)| match op {
            "opening" => FileError::Open {
                path: journal.to_path_buf(),
                source,
            },
            _ => FileError::Read {
                path: journal.to_path_buf(),
                source,
            },
        })
}

/// Drops the first `n` lines (the file holds them now): the rest are written under
/// another name, synced and renamed over the journal; no rest removes it.
pub fn drop_first(journal: &Path, orders: &Path, n: usize) -> Result<(), FileError> {
    let lines = read(journal)?;
    if n >= lines.len() {
        return match fs::remove_file(journal) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(file::write_error("removing", journal)(e))
            }
            _ => file::sync_directory_of(orders),
        };
    }
    let mut text = Vec::new();
    for l in &lines[n..] {
        serde_json::to_writer(&mut text, l).expect("journal lines always serialize");
        text.push(b'\n');
    }
    let staged = file::stage(journal, &text)?;
    file::put_in_place(&staged, journal)
}

/// What the file and its journal hold together.
pub struct Replayed {
    /// The list's text: the file's bytes when no pending edit applies.
    pub bytes: Vec<u8>,
    /// How many pending edits were made.
    pub made: usize,
    /// The pending edits that no longer apply, each with why.
    pub skipped: Vec<String>,
}

/// The order list at `orders` as the daemon sees it: the file with its journal's pending
/// edits made again on it. For readers other than the daemon (`verify`).
pub fn read_with_journal(orders: &Path, max_bytes: u64) -> Result<Replayed, FileError> {
    let bytes = file::read(orders, max_bytes)?;
    Ok(replay(bytes, &read(&path_for(orders))?))
}

/// Makes the journal's pending edits again on the file's bytes.
pub fn replay(file_bytes: Vec<u8>, lines: &[Line]) -> Replayed {
    let unchanged = |bytes| Replayed {
        bytes,
        made: 0,
        skipped: Vec::new(),
    };
    let sha = file::digest(&file_bytes);
    // The file holds every edit up to the last line that gave it, or none from the
    // first line made on it; failing both, someone else wrote it: all are pending.
    let start = match lines.iter().rposition(|l| l.after == sha) {
        Some(i) => i + 1,
        None => lines.iter().position(|l| l.base == sha).unwrap_or(0),
    };
    if start == lines.len() {
        return unchanged(file_bytes);
    }
    // The deployment's rules are the daemon's to check, on the result.
    let (list, _) = validate::check(&file_bytes, &validate::Policy::default());
    let Some(mut list) = list else {
        return Replayed {
            skipped: vec![format!(
                "{} pending edit(s) wait: the order list file does not parse",
                lines.len() - start
            )],
            ..unchanged(file_bytes)
        };
    };
    let mut made = 0;
    let mut skipped = Vec::new();
    for l in &lines[start..] {
        match l.edit.apply_in_place(&mut list) {
            Ok(_) => made += 1,
            Err(e) => skipped.push(format!(
                "a pending CLI edit ({}) no longer applies to the file and was dropped: {e}",
                l.edit.describe()
            )),
        }
    }
    Replayed {
        bytes: OrderList::to_json(&list).into_bytes(),
        made,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const EMPTY: &str = r#"{"version": 1, "orders": [], "exceptions": []}"#;

    fn order(id: &str) -> Edit {
        Edit::AddOrder {
            order: serde_json::json!({"id": id, "authority": "Court", "issued": "2026-01-01",
                "action": "drop", "prefixes": ["198.51.100.7"]}),
        }
    }

    /// The lines of `edits` made one after the other on `start`, and each list's text.
    fn chain(start: &str, edits: &[Edit]) -> (Vec<Line>, Vec<String>) {
        let (list, _) = validate::check(start.as_bytes(), &Default::default());
        let mut list = list.unwrap();
        let mut base = file::digest(start.as_bytes());
        let (mut lines, mut texts) = (Vec::new(), Vec::new());
        for e in edits {
            e.apply_in_place(&mut list).unwrap();
            let text = list.to_json();
            let after = file::digest(text.as_bytes());
            lines.push(Line {
                base: base.clone(),
                after: after.clone(),
                edit: e.clone(),
            });
            texts.push(text);
            base = after;
        }
        (lines, texts)
    }

    #[test]
    fn pending_edits_are_made_on_the_file_once_whatever_it_already_holds() {
        let (lines, texts) = chain(EMPTY, &[order("A"), order("B"), order("C")]);
        // Nothing written yet, one written, all written.
        let r = replay(EMPTY.as_bytes().to_vec(), &lines);
        assert_eq!(
            (r.made, r.bytes.clone()),
            (3, texts[2].clone().into_bytes())
        );
        let r = replay(texts[0].clone().into_bytes(), &lines);
        assert_eq!(
            (r.made, r.bytes.clone()),
            (2, texts[2].clone().into_bytes())
        );
        let r = replay(texts[2].clone().into_bytes(), &lines);
        assert_eq!(r.made, 0);
        assert!(r.skipped.is_empty());
    }

    #[test]
    fn a_file_replaced_by_someone_else_gets_the_edits_that_still_apply() {
        let (lines, _) = chain(EMPTY, &[order("A"), order("B")]);
        // The operator's version already has B (and something else).
        let theirs = format!(
            r#"{{"version": 1, "orders": [{}], "exceptions": []}}"#,
            serde_json::to_string(&match order("B") {
                Edit::AddOrder { order } => order,
                _ => unreachable!(),
            })
            .unwrap()
        );
        let r = replay(theirs.into_bytes(), &lines);
        assert_eq!(r.made, 1);
        assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
        assert!(r.skipped[0].contains("add order B"), "{:?}", r.skipped);
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.contains("\"A\"") && text.contains("\"B\""), "{text}");
    }

    #[test]
    fn an_unparseable_file_keeps_the_edits_pending() {
        let (lines, _) = chain(EMPTY, &[order("A")]);
        let r = replay(b"{ not json".to_vec(), &lines);
        assert_eq!(r.made, 0);
        assert_eq!(r.bytes, b"{ not json");
        assert!(r.skipped[0].contains("does not parse"));
    }

    #[test]
    fn lines_are_appended_read_back_and_dropped() {
        let dir = std::env::temp_dir().join(format!("bf-journal-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let orders = dir.join("orders.json");
        fs::write(&orders, EMPTY).unwrap();
        let journal = path_for(&orders);
        assert_eq!(journal, dir.join("orders.json.journal"));
        let (lines, _) = chain(EMPTY, &[order("A"), order("B")]);
        for l in &lines {
            append(&journal, &orders, l).unwrap();
        }
        // A torn append is skipped.
        OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap()
            .write_all(b"{\"base\": \"ab")
            .unwrap();
        assert_eq!(read(&journal).unwrap(), lines);
        drop_first(&journal, &orders, 1).unwrap();
        assert_eq!(read(&journal).unwrap(), lines[1..]);
        drop_first(&journal, &orders, 1).unwrap();
        assert!(!journal.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
