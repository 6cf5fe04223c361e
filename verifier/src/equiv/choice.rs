//! Multiple-choice letters: `C`, `(C)`, `C)`, `Option C`.
//!
//! Owns: recognising a choice letter. Must not know: anything else about
//! answers.

/// Multiple-choice letter: `C`, `(C)`, `C)`, `Option C`, `(c)`.
/// `strict` (for gold answers) requires an upper-case letter.
pub(super) fn choice_letter(s: &str, strict: bool) -> Option<char> {
    let mut t = s.trim();
    for prefix in ["Option", "option", "Choice", "choice", "Answer", "answer"] {
        if let Some(r) = t.strip_prefix(prefix) {
            t = r.trim_start_matches([' ', ':']);
        }
    }
    let (inner, paren) = if let Some(r) = t.strip_prefix('(') {
        (r.strip_suffix(')')?, true)
    } else if let Some(r) = t.strip_suffix(')') {
        (r, true)
    } else {
        (t, false)
    };
    let inner = inner.trim();
    let mut chars = inner.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    let upper = c.to_ascii_uppercase();
    if !('A'..='H').contains(&upper) {
        return None;
    }
    if c.is_ascii_uppercase() || (paren && !strict) {
        Some(upper)
    } else {
        None
    }
}
