//! The order list's text ([`OrderList::to_json`], byte for byte) kept in pieces, one per
//! order, with the SHA-256 state before each piece: after a CLI edit only the order it
//! touched is serialized again, and only the text from that order on is hashed again. A
//! million prefixes serialize in tens of milliseconds; one order of them in microseconds.

use std::{io, sync::Arc};

use sha2::{Digest, Sha256};

use super::{edit::Done, OrderList};

/// The text of an order list, in pieces: the head (up to the orders' opening bracket),
/// one piece per order (with the separator before it), and the tail (the orders' closing
/// bracket, the exceptions, the end).
#[derive(Clone)]
pub struct ListText {
    pieces: Vec<Arc<str>>,
    /// The hash state after the pieces before each piece (`states[k]` has hashed
    /// `pieces[..k]`).
    states: Vec<Sha256>,
    sha256: String,
}

/// `text` with every line after the first indented by `by` spaces: a value serialized on
/// its own, placed at a deeper level of the document. JSON strings never hold a raw line
/// break, so every `\n` is between tokens.
fn indented(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(&pad);
        }
        out.push_str(line);
    }
    out
}

fn pretty<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("an order list always serializes")
}

fn head(list: &OrderList) -> String {
    format!("{{\n  \"version\": {},\n  \"orders\": [", list.version)
}

fn order_piece(list: &OrderList, index: usize) -> String {
    let separator = if index == 0 { "\n    " } else { ",\n    " };
    format!("{separator}{}", indented(&pretty(&list.orders[index]), 4))
}

fn tail(list: &OrderList) -> String {
    let close = if list.orders.is_empty() { "]" } else { "\n  ]" };
    format!(
        "{close},\n  \"exceptions\": {}\n}}\n",
        indented(&pretty(&list.exceptions), 2)
    )
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl ListText {
    pub fn new(list: &OrderList) -> Self {
        let mut pieces: Vec<Arc<str>> = Vec::with_capacity(list.orders.len() + 2);
        pieces.push(head(list).into());
        pieces.extend((0..list.orders.len()).map(|i| Arc::from(order_piece(list, i))));
        pieces.push(tail(list).into());
        let mut text = Self {
            pieces,
            states: Vec::new(),
            sha256: String::new(),
        };
        text.rehash_from(0);
        text
    }

    /// SHA-256 of the text, in hex, as [`super::file::digest`] gives it.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Length of the text in bytes.
    pub fn len(&self) -> usize {
        self.pieces.iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn write_to(&self, out: &mut impl io::Write) -> io::Result<()> {
        self.pieces
            .iter()
            .try_for_each(|p| out.write_all(p.as_bytes()))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write_to(&mut out).expect("writing to memory");
        out
    }

    /// The pieces, to write the text elsewhere without copying it (a writer thread).
    pub fn pieces(&self) -> Vec<Arc<str>> {
        self.pieces.clone()
    }

    /// Brings the text to `list` after the edit `done` was made on it.
    pub fn update(&mut self, list: &OrderList, done: &Done) {
        let orders = list.orders.len();
        let first = match done {
            Done::Nothing => return,
            Done::AddedPrefixes(i, _) | Done::RemovedPrefixes(i, _) => {
                self.pieces[i + 1] = order_piece(list, *i).into();
                i + 1
            }
            Done::AddedOrder => {
                let at = self.pieces.len() - 1;
                self.pieces.insert(at, order_piece(list, orders - 1).into());
                self.pieces[at + 1] = tail(list).into();
                at
            }
            Done::AddedException | Done::RemovedExceptions(_) => {
                let at = self.pieces.len() - 1;
                self.pieces[at] = tail(list).into();
                at
            }
            Done::RemovedOrder(..) => {
                *self = Self::new(list);
                return;
            }
        };
        self.rehash_from(first);
    }

    /// Hashes the pieces from `first` on again, from the state saved before it.
    fn rehash_from(&mut self, first: usize) {
        self.states.truncate(first);
        let mut state = self.states.last().cloned().unwrap_or_default();
        if first > 0 {
            state.update(self.pieces[first - 1].as_bytes());
        }
        for piece in &self.pieces[first..] {
            self.states.push(state.clone());
            state.update(piece.as_bytes());
        }
        self.sha256 = hex(&state.finalize());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{edit::Edit, file::digest, validate};

    fn list(text: &str) -> OrderList {
        let (list, problems) = validate::check(text.as_bytes(), &Default::default());
        list.unwrap_or_else(|| panic!("{problems}"))
    }

    #[track_caller]
    fn same(text: &ListText, list: &OrderList) {
        let expected = list.to_json();
        assert_eq!(String::from_utf8(text.to_bytes()).unwrap(), expected);
        assert_eq!(text.sha256(), digest(expected.as_bytes()));
        assert_eq!(text.len(), expected.len());
    }

    const ORDER: &str = r#"{"id": "A", "authority": "Court \"x\"\nline", "issued": "2026-01-01",
        "action": "drop", "prefixes": ["198.51.100.0/24", "2001:db8::/48"], "note": "a\\b"}"#;

    #[test]
    fn the_pieces_are_to_json_byte_for_byte() {
        for text in [
            r#"{"version": 1, "orders": [], "exceptions": []}"#.to_string(),
            format!(r#"{{"version": 1, "orders": [{ORDER}], "exceptions": []}}"#),
            format!(
                r#"{{"version": 1, "orders": [{ORDER}, {}], "exceptions": [{{"prefix": "198.51.100.53", "reason": "r"}}]}}"#,
                ORDER.replace("\"A\"", "\"B\"")
            ),
        ] {
            let l = list(&text);
            same(&ListText::new(&l), &l);
        }
    }

    #[test]
    fn each_edit_updates_the_text_as_a_fresh_serialization_would() {
        let mut l = list(r#"{"version": 1, "orders": [], "exceptions": []}"#);
        let mut text = ListText::new(&l);
        let order: serde_json::Value = serde_json::from_str(ORDER).unwrap();
        let mut second = order.clone();
        second["id"] = "B".into();
        let edits = [
            Edit::AddOrder { order },
            Edit::AddOrder { order: second },
            Edit::AddPrefixes {
                order: "A".into(),
                prefixes: vec!["203.0.113.7".into()],
            },
            Edit::AddException {
                prefix: "198.51.100.53".into(),
                reason: "shared resolver".into(),
            },
            Edit::RemovePrefixes {
                order: "B".into(),
                prefixes: vec!["198.51.100.0/24".into()],
            },
            Edit::RemoveException {
                prefix: "198.51.100.53".into(),
            },
            Edit::RemoveOrder { id: "A".into() },
            Edit::AddPrefixes {
                order: "B".into(),
                prefixes: vec!["203.0.113.8".into()],
            },
        ];
        for edit in &edits {
            let done = edit.apply_in_place(&mut l).expect("a valid edit");
            assert!(done.changed(), "{edit:?}");
            text.update(&l, &done);
            same(&text, &l);
        }
    }
}
