//! The last number of a text (the last resort when no answer is marked and
//! no expression was found): `1,080`, `-3.5`, `.5`, `3/4`; digits inside a
//! word (`AZYUK2A`) are not a number.
//!
//! Owns: what a number token looks like in prose. Must not know: phrases,
//! boxes, or what the answer means.

/// The last number in the text: `1,080`, `-3.5`, `.5`, `3/4`. Commas removed.
pub(super) fn last_number(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut limit = bytes.len();
    loop {
        let last = bytes[..limit].iter().rposition(u8::is_ascii_digit)?;
        // A digit glued to letters (`AZYUK2A`, `x2`) is part of a word.
        let word_start = last
            - bytes[..last]
                .iter()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
        if !bytes[word_start..=last].iter().any(u8::is_ascii_alphabetic) {
            return Some(number_ending_at(text, last));
        }
        limit = word_start;
    }
}

/// The number whose last digit is at `last`.
fn number_ending_at(text: &str, last: usize) -> String {
    let bytes = text.as_bytes();
    let end = last + 1;
    // Walk left over digits, thousands commas (exactly three digits after) and
    // one decimal point.
    let mut start = last;
    let mut run = 1; // digits since the last separator
    let mut seen_point = false;
    let mut seen_comma = false;
    while start > 0 {
        let byte = bytes[start - 1];
        if byte.is_ascii_digit() {
            start -= 1;
            run += 1;
        } else if byte == b',' && run == 3 && start >= 2 && bytes[start - 2].is_ascii_digit() {
            start -= 1;
            run = 0;
            seen_comma = true;
        } else if byte == b'.' && !seen_point && !seen_comma {
            if start >= 2 && bytes[start - 2].is_ascii_digit() {
                start -= 1;
                run = 0;
                seen_point = true;
            } else {
                // `.5`
                start -= 1;
                break;
            }
        } else {
            break;
        }
    }
    let mut token: String = text[start..end].chars().filter(|&ch| ch != ',').collect();
    // Fraction `a/b`.
    if start >= 2
        && bytes[start - 1] == b'/'
        && bytes[start - 2].is_ascii_digit()
        && !token.contains('.')
    {
        let mut numerator_start = start - 1;
        while numerator_start > 0 && bytes[numerator_start - 1].is_ascii_digit() {
            numerator_start -= 1;
        }
        if numerator_start > 0
            && (bytes[numerator_start - 1] == b'.' || bytes[numerator_start - 1] == b'/')
        {
            // `1.5/2` or `1/2/3`: keep the last number alone.
        } else {
            token = format!("{}/{}", &text[numerator_start..start - 1], token);
            start = numerator_start;
        }
    }
    // Sign: `-5` but not `3-5`.
    if start >= 1 && bytes[start - 1] == b'-' {
        let before = if start >= 2 { bytes[start - 2] } else { b' ' };
        if !(before.is_ascii_alphanumeric() || before == b')' || before == b'}') {
            token.insert(0, '-');
        }
    }
    token
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(last_number("it costs $1,080."), Some("1080".into()));
        assert_eq!(last_number("so 16-3-4=9"), Some("9".into()));
        assert_eq!(last_number("x is -3.5"), Some("-3.5".into()));
        assert_eq!(last_number("half is 3/4 cup"), Some("3/4".into()));
        assert_eq!(last_number("values 3,4"), Some("4".into()));
        assert_eq!(last_number("about .5"), Some(".5".into()));
        assert_eq!(last_number("none"), None);
        assert_eq!(last_number("code AZYUK2A"), None);
        assert_eq!(last_number("5 then x2"), Some("5".into()));
        assert_eq!(last_number("a 5cm pole"), Some("5".into()));
    }
}
