//! Source files and byte spans. Every later stage points back into a `SourceFile`
//! through a `Span`, so diagnostics can name the file, line and column.

use std::sync::OnceLock;

/// A half-open byte range `[start, end)` into one source file.
///
/// `u32` keeps nodes small; `SourceFile::new` refuses text past 4 GiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub const fn new(start: u32, end: u32) -> Span {
        Span { start, end }
    }

    pub const fn empty(at: u32) -> Span {
        Span { start: at, end: at }
    }

    pub fn len(&self) -> u32 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The smallest span covering both.
    pub fn join(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// A 1-based line and column; the column counts characters, not bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineCol {
    pub line: u32,
    pub column: u32,
}

/// One input: its display name (a path, or `<stdin>`) and its UTF-8 text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: OnceLock<Vec<u32>>,
    mentions_crd: OnceLock<bool>,
}

/// Why bytes could not become a `SourceFile`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("file is not UTF-8 text: invalid byte at line {line}, column {column} (offset {offset})")]
    NotUtf8 { offset: usize, line: u32, column: u32 },
    #[error("file looks binary: it contains a NUL byte at line {line} (offset {offset})")]
    Binary { offset: usize, line: u32 },
    #[error("file is UTF-16 encoded; kubeyard reads UTF-8 (re-encode it, e.g. with `iconv -f UTF-16 -t UTF-8`)")]
    Utf16,
    #[error("file is {size} bytes; kubeyard reads files up to 4 GiB")]
    TooLarge { size: usize },
    #[error("input is over {} MiB (at least {size} bytes); kubeyard reads manifests up to {} MiB", MAX_INPUT_BYTES >> 20, MAX_INPUT_BYTES >> 20)]
    OverLimit { size: u64 },
}

/// The largest input kubeyard reads, refused while reading so that an endless stream or
/// a huge file costs no more than this much memory. Manifests are far smaller (the API
/// server stores objects of at most 3 MiB; the largest real bundles are tens of MiB),
/// and 256 MiB leaves room for generated sets of many thousands of objects.
pub const MAX_INPUT_BYTES: usize = 256 << 20;

impl SourceFile {
    /// Text that is already known to be UTF-8 (for example a `&str` in a test).
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Result<SourceFile, SourceError> {
        let text = text.into();
        if text.len() >= u32::MAX as usize {
            return Err(SourceError::TooLarge { size: text.len() });
        }
        if let Some(offset) = memchr_nul(text.as_bytes()) {
            let line = line_of(text.as_bytes(), offset);
            return Err(SourceError::Binary { offset, line });
        }
        Ok(SourceFile { name: name.into(), text, line_starts: OnceLock::new(), mentions_crd: OnceLock::new() })
    }

    /// Raw bytes from disk or stdin: checked for UTF-16, binary content and invalid UTF-8.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Result<SourceFile, SourceError> {
        if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
            return Err(SourceError::Utf16);
        }
        if let Some(offset) = memchr_nul(&bytes) {
            let line = line_of(&bytes, offset);
            return Err(SourceError::Binary { offset, line });
        }
        match String::from_utf8(bytes) {
            Ok(text) => SourceFile::new(name, text),
            Err(err) => {
                let offset = err.utf8_error().valid_up_to();
                let bytes = err.as_bytes();
                let line = line_of(bytes, offset);
                let line_start = bytes[..offset].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                // The prefix is valid UTF-8, so counting characters is safe.
                let column =
                    std::str::from_utf8(&bytes[line_start..offset]).map_or(0, |s| s.chars().count()) as u32 + 1;
                Err(SourceError::NotUtf8 { offset, line, column })
            }
        }
    }

    /// Whether the text mentions `CustomResourceDefinition` (remembered: the search is
    /// done once, on whichever thread asks first).
    pub fn may_define_crds(&self) -> bool {
        *self.mentions_crd.get_or_init(|| self.text.contains("CustomResourceDefinition"))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text a span covers, clamped to the file and to character boundaries.
    pub fn slice(&self, span: Span) -> &str {
        let len = self.text.len();
        let mut start = (span.start as usize).min(len);
        let mut end = (span.end as usize).clamp(start, len);
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        while !self.text.is_char_boundary(end) {
            end += 1;
        }
        &self.text[start..end]
    }

    fn line_starts(&self) -> &[u32] {
        self.line_starts.get_or_init(|| {
            let mut starts = vec![0u32];
            starts.extend(self.text.bytes().enumerate().filter(|&(_, b)| b == b'\n').map(|(i, _)| i as u32 + 1));
            starts
        })
    }

    /// The line and character column of a byte offset.
    pub fn line_col(&self, offset: u32) -> LineCol {
        let starts = self.line_starts();
        let offset = offset.min(self.text.len() as u32);
        let line = starts.partition_point(|&s| s <= offset).saturating_sub(1);
        let line_start = starts[line] as usize;
        let mut end = offset as usize;
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        let column = self.text[line_start..end].chars().count() as u32 + 1;
        LineCol { line: line as u32 + 1, column }
    }

    /// How many lines the text has.
    /// The first character of `span` (empty if `span` is): an anchor that never splits a
    /// multi-byte character.
    pub fn first_char(&self, span: Span) -> Span {
        let start = (span.start as usize).min(self.text.len());
        let width = self.text.get(start..).and_then(|rest| rest.chars().next()).map_or(0, char::len_utf8);
        Span::new(span.start, (span.start + width as u32).min(span.end.max(span.start)))
    }

    pub fn line_count(&self) -> u32 {
        self.line_starts().len() as u32
    }

    /// The byte span of one whole line (1-based), without its line break.
    pub fn line_span(&self, line: u32) -> Span {
        let starts = self.line_starts();
        let index = (line.max(1) as usize - 1).min(starts.len() - 1);
        let start = starts[index];
        let mut end = starts.get(index + 1).map_or(self.text.len() as u32, |&next| next - 1);
        if end > start && self.text.as_bytes()[end as usize - 1] == b'\r' {
            end -= 1;
        }
        Span::new(start, end)
    }
}

fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == 0)
}

fn line_of(bytes: &[u8], offset: usize) -> u32 {
    bytes[..offset].iter().filter(|&&b| b == b'\n').count() as u32 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let file = SourceFile::new("t", "a: 1\nbé: ü2\n").unwrap();
        assert_eq!(file.line_col(0), LineCol { line: 1, column: 1 });
        assert_eq!(file.line_col(5), LineCol { line: 2, column: 1 });
        // "ü2" starts after "bé: " which is 5 bytes but 4 characters.
        let offset = file.text().find('ü').unwrap() as u32;
        assert_eq!(file.line_col(offset), LineCol { line: 2, column: 5 });
        assert_eq!(file.slice(file.line_span(2)), "bé: ü2");
    }

    #[test]
    fn rejects_binary_utf16_and_invalid_utf8() {
        assert_eq!(
            SourceFile::from_bytes("b", b"a: 1\n\0\x01".to_vec()).unwrap_err(),
            SourceError::Binary { offset: 5, line: 2 }
        );
        assert_eq!(SourceFile::from_bytes("u", vec![0xFF, 0xFE, b'a', 0]).unwrap_err(), SourceError::Utf16);
        assert_eq!(
            SourceFile::from_bytes("i", b"a: 1\nb: \xC3\x28".to_vec()).unwrap_err(),
            SourceError::NotUtf8 { offset: 8, line: 2, column: 4 }
        );
    }
}
