//! Plain-text tables for people; `--json` gives scripts the same data.

/// Renders rows under a header, columns padded to their widest cell. Cells are
/// sanitised: control characters in (operator-written) text cannot move the cursor.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect::<String>()
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// 1234567 -> "1.2M"; small numbers as they are.
pub fn human(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_and_control_characters_are_neutralised() {
        let t = super::render(
            &["ID", "ACTION"],
            &[
                vec!["a\u{1b}[2J".into(), "drop".into()],
                vec!["long-id".into(), "monitor".into()],
            ],
        );
        assert_eq!(t, "ID       ACTION\na?[2J    drop\nlong-id  monitor\n");
    }
}
