//! Files of JSON lines that are only ever appended to (the audit trail, its side files,
//! the edit journal): a line is appended and synced whole, and a torn last line (a crash
//! in the middle of an append, before anything was acknowledged) is skipped when read.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Write},
    path::Path,
};

use serde::{de::DeserializeOwned, Serialize};

/// Appends `value` as one line to `file` (opened for appending) and syncs it.
pub fn append<T: Serialize>(file: &mut File, value: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    file.write_all(&line)?;
    file.sync_data()
}

/// The lines of the file at `path` that parse as `T`, in order; `None` if there is no
/// such file. The error says which operation failed.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Option<Vec<T>>, (&'static str, io::Error)> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(("opening", e)),
    };
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| ("reading", e))?;
        if let Ok(value) = serde_json::from_str(&line) {
            out.push(value);
        }
    }
    Ok(Some(out))
}
