//! Thousands separators in a whole-answer number: `1,234,567.5`, `1 234 567`.
//!
//! Owns: recognising digit groups of three. Must not know: LaTeX or any other
//! answer format.

/// `1,234,567.5` -> `1234567.5` (also `1 234 567`) when the whole string is
/// such a number.
pub(crate) fn remove_thousands(s: &str) -> Option<String> {
    remove_separators(s, b',').or_else(|| remove_separators(s, b' '))
}

fn remove_separators(text: &str, sep: u8) -> Option<String> {
    let bytes = text.as_bytes();
    let mut pos = 0;
    if pos < bytes.len() && (bytes[pos] == b'-' || bytes[pos] == b'+') {
        pos += 1;
    }
    let first = pos;
    while pos < bytes.len() && bytes[pos].is_ascii_digit() {
        pos += 1;
    }
    let lead = pos - first;
    // A grouped number never starts with 0 (`0,111` is a decimal comma).
    if lead == 0 || lead > 3 || bytes[first] == b'0' || pos >= bytes.len() || bytes[pos] != sep {
        return None;
    }
    let mut groups = 0;
    while pos < bytes.len() && bytes[pos] == sep {
        if pos + 4 > bytes.len() || !bytes[pos + 1..pos + 4].iter().all(u8::is_ascii_digit) {
            return None;
        }
        if pos + 4 < bytes.len() && bytes[pos + 4].is_ascii_digit() {
            return None;
        }
        pos += 4;
        groups += 1;
    }
    if groups == 0 {
        return None;
    }
    if pos < bytes.len() && bytes[pos] == b'.' {
        pos += 1;
        let fs = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == fs {
            return None;
        }
    }
    if pos < bytes.len() && bytes[pos] == b'%' {
        pos += 1;
    }
    if pos != bytes.len() {
        return None;
    }
    Some(text.replace(sep as char, ""))
}
