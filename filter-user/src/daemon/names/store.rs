//! The book in the state directory: written (atomically, synced) after every change of a
//! name's addresses, read at start, so that a daemon started while DNS cannot be reached
//! enforces what it enforced before.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::book::Book;
use crate::{error_chain, orders::file::write_atomic};

/// The only format this build reads and writes.
const FORMAT: u64 = 1;

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u64,
    #[serde(flatten)]
    book: Book,
}

/// Reads the book; a missing file is an empty book.
pub fn load(path: &Path) -> anyhow::Result<Book> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Book::default()),
        Err(e) => anyhow::bail!("reading the resolved names {}: {e}", path.display()),
    };
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "the resolved names {} cannot be read ({e}); move it aside to start without them",
            path.display()
        )
    })?;
    if stored.version != FORMAT {
        anyhow::bail!(
            "the resolved names {} are in format {}; this build reads format {FORMAT}",
            path.display(),
            stored.version
        );
    }
    Ok(stored.book)
}

/// Writes the book.
pub fn save(path: &Path, book: &Book) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let stored = Stored {
        version: FORMAT,
        book: book.clone(),
    };
    let mut text = serde_json::to_vec_pretty(&stored).expect("a book always serializes");
    text.push(b'\n');
    write_atomic(path, &text).map_err(|e| error_chain(&e))
}
