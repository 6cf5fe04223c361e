//! Unmarked answers written as LaTeX: the last math environment of a
//! completion (`$…$`, `$$…$$`, `\(…\)`, `\[…\]`), joined with the ones just
//! before it when they are listed ("$x=1$ and $x=2$").
//!
//! Owns: pairing of math delimiters, telling a dollar amount ("costs $5 and
//! $3") from math, and the list joining. Must not know: boxes, phrases, or
//! what the answer means.

/// Most environments joined into one listed answer.
const MAX_LISTED: usize = 5;

/// A math environment: its content and where the whole environment lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Env {
    content_start: usize,
    content_end: usize,
    start: usize,
    end: usize,
}

/// The last math environment with an answer in it (joined with those listed
/// right before it): `(content, end of the last environment)`.
pub(super) fn last_environment(text: &str) -> Option<(String, usize)> {
    let envs = environments(text);
    let last = envs.len().checked_sub(1)?;
    let mut first = last;
    while first > 0
        && last - first + 1 < MAX_LISTED
        && listed(&text[envs[first - 1].end..envs[first].start])
    {
        first -= 1;
    }
    let content = envs[first..=last]
        .iter()
        .map(|e| text[e.content_start..e.content_end].trim())
        .collect::<Vec<_>>()
        .join(", ");
    Some((content, envs[last].end))
}

/// ", ", " and ", ", or ": what separates listed answers.
fn listed(between: &str) -> bool {
    let t = between.trim();
    let t = t.strip_prefix(',').unwrap_or(t).trim_start();
    t.is_empty() || t == "and" || t == "or"
}

/// Which delimiters open an environment, and whether it may span lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    DisplayDollar,
    Bracket,
    Paren,
    Dollar,
}

impl Kind {
    fn delimiters(self) -> (&'static str, &'static str) {
        match self {
            Kind::DisplayDollar => ("$$", "$$"),
            Kind::Bracket => ("\\[", "\\]"),
            Kind::Paren => ("\\(", "\\)"),
            Kind::Dollar => ("$", "$"),
        }
    }
    fn multiline(self) -> bool {
        matches!(self, Kind::DisplayDollar | Kind::Bracket)
    }
    fn index(self) -> usize {
        self as usize
    }
}

/// All math environments with answer-like content, in order. Linear: after a
/// delimiter finds no closer, later openers of its kind on the same line (or
/// in the rest of the text, for display math) are not searched again.
fn environments(text: &str) -> Vec<Env> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    // Per kind: no closer exists before this offset's line end.
    let mut no_closer_before = [0usize; 4];
    let mut pos = 0;
    while pos < bytes.len() {
        // Jump to the next `$` or backslash.
        match bytes[pos..].iter().position(|&c| c == b'$' || c == b'\\') {
            Some(skip) => pos += skip,
            None => break,
        }
        let Some(kind) = opener_at(bytes, pos) else {
            pos += if bytes[pos] == b'\\' { 2 } else { 1 };
            continue;
        };
        let (open, close) = kind.delimiters();
        let content_start = pos + open.len();
        if content_start < no_closer_before[kind.index()] {
            pos = content_start;
            continue;
        }
        let close_at = match find_closer(&text[content_start..], close, !kind.multiline()) {
            Ok(close_at) => close_at,
            Err(searched) => {
                no_closer_before[kind.index()] = content_start + searched;
                pos = content_start;
                continue;
            }
        };
        let env = Env {
            content_start,
            content_end: content_start + close_at,
            start: pos,
            end: content_start + close_at + close.len(),
        };
        let content = &text[env.content_start..env.content_end];
        if kind == Kind::Dollar && dollar_amounts(content) {
            // `$5 and $`: two prices; the second `$` may open real math.
            pos = env.content_end;
            continue;
        }
        if has_answer(content) {
            found.push(env);
        }
        pos = env.end;
    }
    found
}

fn opener_at(bytes: &[u8], pos: usize) -> Option<Kind> {
    match bytes[pos] {
        b'$' if bytes.get(pos + 1) == Some(&b'$') => Some(Kind::DisplayDollar),
        // Not `5$` (a price written after the number).
        b'$' if pos == 0 || !bytes[pos - 1].is_ascii_digit() => Some(Kind::Dollar),
        b'\\' => match bytes.get(pos + 1) {
            Some(b'[') => Some(Kind::Bracket),
            Some(b'(') => Some(Kind::Paren),
            _ => None,
        },
        _ => None,
    }
}

/// Offset of the closing delimiter in `hay` (skipping escaped `\\$`), or how
/// far the search went: to the end, or to the first line break when the
/// environment is single-line.
pub(super) fn find_closer(hay: &str, close: &str, single_line: bool) -> Result<usize, usize> {
    let bytes = hay.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        if bytes[pos..].starts_with(close.as_bytes()) {
            return Ok(pos);
        }
        if single_line && bytes[pos] == b'\n' {
            return Err(pos);
        }
        pos += if bytes[pos] == b'\\' && close.starts_with('$') {
            2
        } else {
            1
        };
    }
    Err(bytes.len())
}

/// `5 and then ` between two `$`: a price, then prose up to the next price,
/// not math. It starts with a digit and has a word of three or more letters
/// outside any command or brace group (`$odd$` or `$x = 5$` is math).
fn dollar_amounts(content: &str) -> bool {
    if !content.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let bytes = content.as_bytes();
    let mut depth = 0i32;
    let mut pos = 0;
    while pos < bytes.len() {
        match bytes[pos] {
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b'\\' => {
                pos += 1;
                while pos < bytes.len() && bytes[pos].is_ascii_alphabetic() {
                    pos += 1;
                }
                continue;
            }
            c if c.is_ascii_alphabetic() && depth == 0 => {
                let word = bytes[pos..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .count();
                if word >= 3 {
                    return true;
                }
                pos += word;
                continue;
            }
            _ => {}
        }
        pos += 1;
    }
    false
}

/// Content that can be an answer: a digit, a letter outside command names,
/// or a command that is a value (`\pi`, `\infty`, `\emptyset`, `\text{…}`).
/// `$\blacksquare$` or `$\Rightarrow$` is not one.
fn has_answer(content: &str) -> bool {
    const VALUE_COMMANDS: &[&str] = &[
        "pi",
        "infty",
        "infin",
        "emptyset",
        "varnothing",
        "text",
        "textbf",
        "mathrm",
        "mbox",
        "alpha",
        "beta",
        "gamma",
        "delta",
        "theta",
        "lambda",
        "mu",
        "sigma",
        "phi",
        "omega",
    ];
    let bytes = content.as_bytes();
    let mut pos = 0;
    while pos < bytes.len() {
        let c = bytes[pos];
        if c == b'\\' {
            let name_end = pos
                + 1
                + bytes[pos + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .count();
            if VALUE_COMMANDS.contains(&&content[pos + 1..name_end]) {
                return true;
            }
            pos = name_end.max(pos + 2);
            continue;
        }
        if c.is_ascii_alphanumeric() {
            return true;
        }
        pos += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last(text: &str) -> Option<String> {
        last_environment(text).map(|(content, _)| content)
    }

    #[test]
    fn environments_and_prices() {
        assert_eq!(last("Thus $x <= 2$ is our answer."), Some("x <= 2".into()));
        assert_eq!(
            last("so \\[ \\frac{1}{2} \\] done"),
            Some("\\frac{1}{2}".into())
        );
        assert_eq!(last("so \\(3\\) then $$4$$"), Some("4".into()));
        assert_eq!(last("so \\(3\\) and $$4$$"), Some("3, 4".into()));
        assert_eq!(last("It costs $5 and then $3 more"), None);
        assert_eq!(last("It costs $5 and then $x=3$ more"), Some("x=3".into()));
        assert_eq!(last("$a$ is 5$ and $b$"), Some("b".into()));
        assert_eq!(last("so $x=1$ and $x=2$."), Some("x=1, x=2".into()));
        assert_eq!(last("so $7$. $\\blacksquare$"), Some("7".into()));
        assert_eq!(last("price \\$5 and \\$6"), None);
        assert_eq!(
            last("$\\frac{1}{2} cups$"),
            Some("\\frac{1}{2} cups".into())
        );
        assert_eq!(last("so it is $odd$."), Some("odd".into()));
        assert_eq!(last("unclosed $5 and \\( 3"), None);
    }
}
