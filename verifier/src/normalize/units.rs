//! Units and prose after a number: `5 cm`, `18 dollars per day`,
//! `864 inches^2`, `5cm`, `25 percent`.
//!
//! Owns: the unit word lists and what counts as a unit. Must not know: LaTeX
//! (it runs on normalised text) or values.

/// Words that are mathematics, not units or prose.
fn math_word(w: &str) -> bool {
    matches!(
        w,
        "pi" | "sin"
            | "cos"
            | "tan"
            | "cot"
            | "sec"
            | "csc"
            | "log"
            | "ln"
            | "exp"
            | "sqrt"
            | "inf"
            | "infty"
            | "and"
            | "or"
    )
}

/// Two-letter unit abbreviations that may follow a number.
const SHORT_UNITS: &[&str] = &[
    "cm", "mm", "km", "kg", "mg", "ft", "in", "mi", "lb", "oz", "ml", "hr", "yd", "sq", "cu", "pm",
    "am", "gb", "mb", "kb",
];

/// Attached units accepted without a space: `5cm`, `12kg`.
const ATTACHED_UNITS: &[&str] = &[
    "cm", "mm", "km", "kg", "mg", "ft", "ml", "hrs", "lbs", "mph", "kph", "cents", "dollars",
    "degrees", "meters", "inches", "feet", "miles", "hours", "minutes", "seconds", "days", "years",
    "units", "pounds", "grams",
];

/// Result of removing trailing unit words / prose from a numeric answer.
pub(crate) struct Stripped<'a> {
    pub text: &'a str,
    pub percent: bool,
}

/// Remove trailing unit words (`5 cm`, `18 dollars per day`, `864 inches^2`) and
/// a percent sign, when what remains still contains a digit.
pub(crate) fn strip_units(s: &str) -> Stripped<'_> {
    let mut rest = s.trim();
    let mut percent = false;
    for _ in 0..8 {
        let before = rest.len();
        if let Some(before_percent) = rest.strip_suffix('%') {
            rest = before_percent.trim_end();
            percent = true;
        }
        // Last whitespace-separated token.
        if let Some(space) = rest.rfind(' ') {
            let tok = &rest[space + 1..];
            let prefix = rest[..space].trim_end();
            let word = tok
                .strip_suffix("^2")
                .or_else(|| tok.strip_suffix("^3"))
                .or_else(|| tok.strip_suffix("^{2}"))
                .or_else(|| tok.strip_suffix("^{3}"))
                .unwrap_or(tok)
                .trim_end_matches('.');
            let is_word = word.bytes().all(|c| c.is_ascii_alphabetic())
                && (word.len() >= 3 || SHORT_UNITS.contains(&word))
                && !math_word(word);
            if is_word && prefix.bytes().any(|c| c.is_ascii_digit()) {
                if word.eq_ignore_ascii_case("percent") {
                    percent = true;
                }
                rest = prefix;
            }
        }
        if rest.len() == before {
            break;
        }
    }
    // Attached unit after a plain number: `5cm`.
    let digits_end = rest
        .bytes()
        .position(|c| !(c.is_ascii_digit() || c == b'.' || c == b'-' || c == b'+'))
        .unwrap_or(rest.len());
    if digits_end > 0 && digits_end < rest.len() && rest.as_bytes()[0] != b'.' {
        let suffix = &rest[digits_end..];
        let unit = suffix
            .strip_suffix("^2")
            .or_else(|| suffix.strip_suffix("^3"))
            .unwrap_or(suffix);
        if ATTACHED_UNITS.contains(&unit) {
            rest = &rest[..digits_end];
        } else if unit == "percent" {
            rest = &rest[..digits_end];
            percent = true;
        }
    }
    Stripped {
        text: rest,
        percent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(strip_units("864 inches^2").text, "864");
        assert_eq!(strip_units("18 dollars per day").text, "18");
        assert_eq!(strip_units("5 cm").text, "5");
        assert_eq!(strip_units("5cm").text, "5");
        let p = strip_units("25 %");
        assert!(p.percent);
        assert_eq!(p.text, "25");
        assert_eq!(strip_units("east").text, "east");
        assert_eq!(strip_units("2 xy").text, "2 xy");
    }
}
