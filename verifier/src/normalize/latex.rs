//! The single linear pass over an answer's LaTeX: spacing and sizing commands
//! dropped, `\text{}`-like wrappers unwrapped, synonyms mapped to one spelling
//! (`\dfrac` -> `\frac`, `\leq` -> `\le`, `×` -> `*`, `÷` -> `\div`), degrees removed, set
//! braces marked.
//!
//! Owns: the command tables and the rewrite of one character or command at a
//! time. Must not know: answer structure, numbers' values, or units as words.

use super::{SET_CLOSE, SET_OPEN};

/// Commands whose braced argument is kept and the wrapper dropped.
const UNWRAP: &[&str] = &[
    "text",
    "textbf",
    "textit",
    "textrm",
    "textsf",
    "texttt",
    "textnormal",
    "textup",
    "mathrm",
    "mathbf",
    "mathit",
    "mathsf",
    "mathtt",
    "mathnormal",
    "boldsymbol",
    "bm",
    "mbox",
    "hbox",
    "operatorname",
    "boxed",
    "fbox",
    "emph",
    "underline",
    "overline",
];

/// Commands dropped entirely (sizing, spacing).
const DROP: &[&str] = &[
    "left",
    "right",
    "big",
    "Big",
    "bigg",
    "Bigg",
    "bigl",
    "bigr",
    "Bigl",
    "Bigr",
    "biggl",
    "biggr",
    "Biggl",
    "Biggr",
    "displaystyle",
    "textstyle",
    "scriptstyle",
    "limits",
    "nolimits",
    "phantom",
];

/// Units that may follow a number inside `\text{}` / `\mathrm{}` / `\mbox{}`
/// and that the unit-word stripping after normalisation would not recognise
/// (it leaves single letters alone: `2 x` is not `2`).
const UNITS: &[&str] = &["m", "g", "s", "h", "L", "l", "mL", "ms", "kL", "dL", "cL"];

fn is_unit(word: &str) -> bool {
    UNITS.contains(&word)
}

/// Rewrite `src` into `out` (see the module comment). Linear in `src`.
pub(super) fn rewrite(src: &str, out: &mut String) {
    let mut pass = Pass {
        src,
        bytes: src.as_bytes(),
        pos: 0,
        out,
        closers: Vec::new(),
    };
    pass.run();
}

struct Pass<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    out: &'a mut String,
    /// For each `{` seen: whether its matching `}` is dropped (unwrapped command).
    closers: Vec<bool>,
}

impl Pass<'_> {
    fn run(&mut self) {
        while self.pos < self.bytes.len() {
            let byte = self.bytes[self.pos];
            match byte {
                b'\\' => self.backslash(),
                b'{' if self.bytes[self.pos..].starts_with(b"{,}") => {
                    // `1{,}000`: a thousands separator; `1{,}5`: a decimal comma.
                    if !self.before_group_of_three(self.pos + 3) {
                        self.out.push(',');
                    }
                    self.pos += 3;
                }
                b'{' => {
                    self.closers.push(false);
                    self.out.push('{');
                    self.pos += 1;
                }
                b'}' => {
                    if self.closers.pop() != Some(true) {
                        self.out.push('}');
                    }
                    self.pos += 1;
                }
                b'$' => self.pos += 1,
                b'~' | b'\t' | b'\n' | b'\r' => {
                    self.out.push(' ');
                    self.pos += 1;
                }
                b',' => self.comma(),
                b'<' | b'>' | b'!' if self.bytes.get(self.pos + 1) == Some(&b'=') => {
                    self.out.push_str(match byte {
                        b'<' => "\\le ",
                        b'>' => "\\ge ",
                        _ => "\\ne ",
                    });
                    self.pos += 2;
                }
                _ if byte.is_ascii() => {
                    self.out.push(byte as char);
                    self.pos += 1;
                }
                _ => self.unicode(),
            }
        }
    }

    /// A backslash: a one-character command (`\,` `\{`) or a named one.
    fn backslash(&mut self) {
        let start = self.pos;
        let mut name_end = start + 1;
        while name_end < self.bytes.len() && self.bytes[name_end].is_ascii_alphabetic() {
            name_end += 1;
        }
        if name_end == start + 1 {
            self.symbol_command();
            return;
        }
        self.pos = name_end;
        let src = self.src;
        self.named_command(&src[start + 1..name_end]);
    }

    /// Non-letter command: `\,` `\!` `\{` `\$` `\%` `\\` ...
    fn symbol_command(&mut self) {
        let next = self.bytes.get(self.pos + 1).copied();
        match next {
            Some(b'!') | Some(b',') | Some(b';') | Some(b':') | Some(b'>') => {}
            Some(b' ') => self.out.push(' '),
            Some(b'{') => self.out.push(SET_OPEN),
            Some(b'}') => self.out.push(SET_CLOSE),
            Some(b'$') => {}
            Some(b'%') => self.out.push('%'),
            Some(b'|') => self.out.push('|'),
            Some(b'\\') => self.out.push_str("\\\\"),
            Some(b'(') | Some(b')') | Some(b'[') | Some(b']') => self.out.push(' '),
            Some(other) if other.is_ascii() => {
                self.out.push('\\');
                self.out.push(other as char);
            }
            Some(_) => self.out.push('\\'),
            None => {}
        }
        self.pos += if next.is_some_and(|x| x.is_ascii()) {
            2
        } else {
            1
        };
    }

    /// `\name`, with `self.pos` just after the name.
    fn named_command(&mut self, name: &str) {
        if UNWRAP.contains(&name) {
            let mut brace = self.pos;
            while brace < self.bytes.len() && self.bytes[brace] == b' ' {
                brace += 1;
            }
            if self.bytes.get(brace) == Some(&b'{') && !self.skip_unit_argument(brace) {
                self.closers.push(true);
                self.pos = brace + 1;
            }
            return;
        }
        if DROP.contains(&name) {
            // `\left.` / `\right.` are invisible delimiters.
            if (name == "left" || name == "right") && self.bytes.get(self.pos) == Some(&b'.') {
                self.pos += 1;
            }
            return;
        }
        let Some(spelling) = self.command_spelling(name) else {
            return;
        };
        if spelling.is_empty() {
            self.out.push('\\');
            self.out.push_str(name);
        } else {
            self.out.push_str(spelling);
        }
        // Keep a letter after a command from merging into its name.
        if self
            .bytes
            .get(self.pos)
            .is_some_and(|x| x.is_ascii_alphabetic())
        {
            self.out.push(' ');
        }
    }

    /// The spelling a command is written as: `Some("")` keeps it as it is,
    /// `None` means it has already been written (or dropped).
    fn command_spelling(&mut self, name: &str) -> Option<&'static str> {
        let written = match name {
            "dfrac" | "tfrac" | "cfrac" => return Some("\\frac"),
            "dbinom" | "tbinom" => return Some("\\binom"),
            "leq" | "le" | "leqslant" | "leqq" => return Some("\\le"),
            "geq" | "ge" | "geqslant" | "geqq" => return Some("\\ge"),
            "neq" | "ne" => return Some("\\ne"),
            "dots" | "ldots" | "cdots" => return Some("\\dots"),
            "infin" => return Some("\\infty"),
            "varnothing" => return Some("\\emptyset"),
            "circ" | "degree" | "degrees" => {
                self.drop_degree_superscript();
                ""
            }
            "cdot" | "times" | "ast" | "bullet" => "*",
            // A division sign stays one (`84 \div 2` is not the fraction `84/2`).
            "div" => "\\div ",
            "lt" => "<",
            "gt" => ">",
            "quad" | "qquad" | "enspace" | "thinspace" | "medspace" | "thickspace" | "space"
            | "hfill" => " ",
            "lvert" | "rvert" | "vert" => "|",
            "colon" => ":",
            "lbrace" => {
                self.out.push(SET_OPEN);
                ""
            }
            "rbrace" => {
                self.out.push(SET_CLOSE);
                ""
            }
            _ => return Some(""),
        };
        self.out.push_str(written);
        None
    }

    /// `5\,\text{m}`, `3 \mathrm{kg}^2`: a unit (even one letter) written as
    /// text right after a number is dropped with its power. `brace` is the `{`.
    fn skip_unit_argument(&mut self, brace: usize) -> bool {
        let after_number = self
            .out
            .trim_end()
            .ends_with(|c: char| c.is_ascii_digit() || c == '}');
        if !after_number {
            return false;
        }
        let Some(len) = self.bytes[brace + 1..].iter().position(|&c| c == b'}') else {
            return false;
        };
        let word = self.src[brace + 1..brace + 1 + len].trim();
        if !is_unit(word) {
            return false;
        }
        self.pos = brace + len + 2;
        for power in ["^2", "^3", "^{2}", "^{3}"] {
            if self.bytes[self.pos..].starts_with(power.as_bytes()) {
                self.pos += power.len();
                break;
            }
        }
        true
    }

    /// Is a group of exactly three digits at `at` (then no further digit)?
    fn before_group_of_three(&self, at: usize) -> bool {
        let digits = self.bytes[at.min(self.bytes.len())..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        digits == 3 && self.out.ends_with(|c: char| c.is_ascii_digit())
    }

    /// `30^\circ`, `30^{\circ}`: the degree sign and its superscript go.
    fn drop_degree_superscript(&mut self) {
        if self.out.ends_with('^') {
            self.out.pop();
        } else if self.out.ends_with("^{") {
            self.out.pop();
            self.out.pop();
            if let Some(top) = self.closers.last_mut() {
                *top = true;
            }
        }
    }

    /// `10,\!080`: a thousands separator; any other comma is kept.
    fn comma(&mut self) {
        let rest = &self.bytes[self.pos + 1..];
        if rest.starts_with(b"\\!") && self.out.ends_with(|ch: char| ch.is_ascii_digit()) {
            self.pos += 3;
            while self.pos < self.bytes.len() && self.bytes[self.pos] == b' ' {
                self.pos += 1;
            }
        } else {
            self.out.push(',');
            self.pos += 1;
        }
    }

    /// A non-ASCII character: Unicode math symbols and spaces.
    fn unicode(&mut self) {
        let ch = self.src[self.pos..].chars().next().unwrap_or(' ');
        self.pos += ch.len_utf8();
        match ch {
            '−' | '–' | '‒' | '﹣' | '－' => self.out.push('-'),
            '×' | '·' | '⋅' | '∗' => self.out.push('*'),
            '÷' => self.out.push_str("\\div "),
            'π' => {
                self.out.push_str("\\pi");
                if self
                    .bytes
                    .get(self.pos)
                    .is_some_and(|x| x.is_ascii_alphabetic())
                {
                    self.out.push(' ');
                }
            }
            '√' => self.out.push_str("\\sqrt"),
            '∞' => self.out.push_str("\\infty"),
            '°' => {}
            '∪' => self.out.push_str("\\cup "),
            '≤' | '≦' | '⩽' => self.out.push_str("\\le "),
            '≥' | '≧' | '⩾' => self.out.push_str("\\ge "),
            '≠' => self.out.push_str("\\ne "),
            '\u{a0}' | '\u{2009}' | '\u{202f}' | '\u{2002}' | '\u{2003}' | '\u{200b}' => {
                self.out.push(' ')
            }
            other => self.out.push(other),
        }
    }
}
