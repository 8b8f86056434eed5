//! Plain aligned tables, as kubectl prints them: a header row of upper-case
//! column names, every column as wide as its widest cell, two spaces
//! between columns, no trailing blanks. Sizes are binary units without a
//! space (`1GiB`, `96MiB`, `1.5GiB`).

/// A table being built row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// What an absent value prints as.
pub const NONE: &str = "<none>";

impl Table {
    pub fn new<S: AsRef<str>>(header: &[S]) -> Self {
        Self {
            header: header.iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row; it must have one cell per column.
    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len(), "one cell per column");
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text, one line per row, each ending with a newline.
    pub fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0usize; columns];
        for row in std::iter::once(&self.header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (index, (cell, width)) in row.iter().zip(&widths).enumerate() {
                line.push_str(cell);
                if index + 1 < columns {
                    let pad = width - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A byte count in binary units: `0B`, `512B`, `1KiB`, `96MiB`, `1.5GiB`.
pub use mayastor_common::size::format_compact as human_size;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(512), "512B");
        assert_eq!(human_size(1024), "1KiB");
        assert_eq!(human_size(96 << 20), "96MiB");
        assert_eq!(human_size(1 << 30), "1GiB");
        assert_eq!(human_size(3 << 29), "1.5GiB");
        assert_eq!(human_size((1 << 30) - 1), "1024MiB");
        assert_eq!(human_size(u64::MAX), "16EiB");
    }

    #[test]
    fn alignment() {
        let mut table = Table::new(&["ID", "STATUS", "NOTE"]);
        table.push(vec!["a".into(), "Online".into(), String::new()]);
        table.push(vec!["longer-id".into(), "X".into(), "n".into()]);
        assert_eq!(
            table.render(),
            "ID         STATUS  NOTE\na          Online\nlonger-id  X       n\n"
        );
    }
}
