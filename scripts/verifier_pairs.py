#!/usr/bin/env python3
"""Build the verifier's comparison set: (gold, prediction, expected) pairs.

Deterministic (fixed seed, standard library only). Reads the repository's
data/gsm8k_test.jsonl and data/math500_test.jsonl and writes JSON Lines to
stdout, one pair per line:

    {"id", "class", "gold", "pred", "expected"}

- gold: a reference answer in one of the forms datasets use: plain (`18`,
  `\\frac{1}{2}`), `$...$`, `\\boxed{...}`, or GSM8K's `#### 18`.
- pred: a completion (or the end of one) that writes an answer the way models
  do: boxed or not, `$...$` / `\\(...\\)` / `\\[...\\]`, a final-answer phrase in
  one of several languages, a plain expression, thousands separators, decimal
  commas, units, degrees, percent, intervals, tuples, sets, relations,
  assignments; or deliberately wrong (near misses, other numbers, wrong
  interval ends, swapped tuples, dropped elements).
- expected: whether the prediction's final answer is the gold answer, as a
  careful human grader would say (and, for answers too long to compare, as the
  verifier's contract says: never correct).

Usage (from the repository root):
    python3 scripts/verifier_pairs.py > "$TMPDIR/pairs.unlabelled.jsonl"
then label with scripts/verifier_label.py (see tests/fixtures/verifier/README.md).
"""

import json
import random
import re
import sys
from pathlib import Path

SEED = 20261202
ROOT = Path(__file__).resolve().parent.parent

rng = random.Random(SEED)
pairs = []


def add(cls, gold, pred, expected):
    pairs.append({"class": cls, "gold": gold, "pred": pred, "expected": bool(expected)})


def read_jsonl(name):
    with open(ROOT / "data" / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ---------------------------------------------------------------- GSM8K ----

NAMES = ["Janet", "Carlos", "Mei", "Tom", "Aisha", "Olga", "Ravi", "Lena"]
THINGS = ["apples", "eggs", "books", "marbles", "stickers", "cookies"]


def context():
    """A short worked step with its own numbers, as models write before the answer."""
    name, thing = rng.choice(NAMES), rng.choice(THINGS)
    p, q = rng.randint(2, 12), rng.randint(2, 15)
    return f"{name} buys {p} boxes with {q} {thing} each, so {p} * {q} = {p * q} {thing}."


def grouped(n, sep):
    s = f"{abs(n):,}".replace(",", sep)
    return ("-" if n < 0 else "") + s


def gsm_gold(n, k):
    form = k % 4
    if form == 0:
        return "plain", str(n)
    if form == 1:
        return "hash", f"Work shown above.\n#### {n}"
    if form == 2:
        return "dollar", f"${n}$"
    return "boxed", f"\\boxed{{{n}}}"


def split_sum(n):
    a = rng.randint(1, max(1, abs(n) - 1)) if abs(n) > 1 else 1
    return a, n - a


LANGS = [
    ("es", "La respuesta es {n}."),
    ("fr", "La réponse est {n}."),
    ("de", "Die Antwort ist {n}."),
    ("it", "La risposta è {n}."),
    ("pt", "A resposta é {n}."),
    ("ru", "Ответ: {n}"),
    ("zh", "所以答案是 {n}。"),
    ("ja", "答えは {n} です。"),
    ("ko", "정답은 {n}입니다."),
    ("sw", "Jibu ni {n}."),
    ("th", "คำตอบคือ {n}"),
    ("bn", "উত্তর: {n}"),
]


def gsm_correct(n, k):
    """(class, pred) writing the correct answer n."""
    c = context()
    a, b = split_sum(n)
    big = abs(n) >= 1000
    options = [
        ("phrase-en", f"{c} The answer is {n}."),
        ("final-answer", f"{c}\nSo the final answer is {n}."),
        ("bold-final", f"{c}\n**Final Answer:** {n}"),
        ("answer-colon", f"{c}\nAnswer: {n}"),
        ("last-number-dollars", f"{c} So she makes ${n} in total."),
        ("latex-inline", f"{c} Therefore, the total is ${n}$."),
        ("latex-paren", f"{c} The total is \\({n}\\)."),
        ("latex-display", f"{c}\n\\[ {n} \\]"),
        ("chain", f"{c} Adding up: {a} + {b} = {n}." if b >= 0 else f"{c} Adding up: {a} - {-b} = {n}."),
        ("calc-annotation", f"{c} She earns {a} + {b} = <<{a}+{b}={n}>>{n} dollars." if b >= 0 else f"{c} It is {n} dollars."),
        ("assignment", f"{c} Let $x$ be the number of {rng.choice(THINGS)}. Then $x = {n}$."),
        ("decimal-zeros", f"{c} The answer is {n}.00 dollars."),
        ("unit-text", f"{c} The length is ${n}\\text{{ cm}}$."),
        ("unit-mbox", f"{c} So it takes ${n} \\mbox{{ minutes}}$."),
        ("last-number", f"{c} In the end there are {n} {rng.choice(THINGS)} left."),
        ("final-then-check", f"The final answer is {n}. Check: ${a} + {b} = {n}$." if b >= 0 else f"The final answer is {n}."),
        ("boxed", f"{c} Thus $\\boxed{{{n}}}$."),
        ("hash", f"{c}\n#### {n}"),
    ]
    if big:
        options += [
            ("thousands-comma", f"{c} The answer is {grouped(n, ',')}."),
            ("thousands-space", f"{c} In total {grouped(n, ' ')} people came."),
            ("thousands-thin", f"{c} That is ${grouped(n, chr(92) + ',')}$ dollars."),
            ("thousands-brace", f"{c} That is ${grouped(n, '{,}')}$."),
            ("thousands-nnbsp", f"{c} The answer is {grouped(n, chr(0x202F))}."),
        ]
    for code, template in LANGS:
        options.append((f"lang-{code}", f"{c} {template.format(n=n)}"))
    return options[k % len(options)]


def gsm_wrong(n, k):
    """(class, pred) writing a wrong answer for gold n."""
    c = context()
    a, b = split_sum(n)
    options = [
        ("wrong-phrase", f"{c} The answer is {n + 1}."),
        ("wrong-latex", f"{c} Therefore the total is ${n - 1}$."),
        ("wrong-last-number", f"{c} So she has {n * 2 + 3} {rng.choice(THINGS)}."),
        ("wrong-decimal", f"{c} The answer is {n}.5."),
        ("wrong-chain", f"{c} Adding up: {a} + {b} = {n + 1}." if b >= 0 else f"{c} So {n + 1}."),
        ("wrong-word-number", f"The code is AZYUK{abs(n)}A."),
        ("wrong-lang", f"{c} La respuesta es {n + 2}."),
        ("wrong-boxed", f"{c} $\\boxed{{{n + 10}}}$"),
        ("wrong-decimal-comma", f"{c} It measures {n},5 m."),
        ("wrong-unit", f"{c} The length is ${n + 1}\\text{{ cm}}$."),
        ("wrong-sign", f"{c} The answer is {-n if n != 0 else 1}."),
        ("wrong-tenfold", f"{c}\n**Final Answer:** {n * 10 if n != 0 else 10}"),
        ("wrong-thousands", f"{c} The answer is {grouped(n + 1000, ',')}."),
        ("wrong-annotation", f"{c} She earns <<{a}+{b}={n}>>{n + 4} dollars."),
    ]
    return options[k % len(options)]


gsm = read_jsonl("gsm8k_test.jsonl")
picked = rng.sample(range(len(gsm)), 330)
for k, row in enumerate(picked):
    n = int(gsm[row]["answer_final"])
    form, gold = gsm_gold(n, k)
    cls, pred = gsm_correct(n, k)
    add(f"gsm8k/{cls}/gold-{form}", gold, pred, True)
    form, gold = gsm_gold(n, k + 1)
    cls, pred = gsm_wrong(n, k)
    add(f"gsm8k/{cls}/gold-{form}", gold, pred, False)

# ------------------------------------------------------------- MATH-500 ----

INT = re.compile(r"-?\d+")
FRAC = re.compile(r"(-?)\\frac\{(\d+)\}\{(\d+)\}")
MATH_CONTEXT = [
    "We simplify the expression step by step, using $a^2 - b^2 = (a-b)(a+b)$.",
    "Substituting back, the equation $2x + 3 = 7$ gives the value we need.",
    "Combining the two cases from \\(x \\ge 0\\) and \\(x < 0\\), we conclude.",
    "After clearing denominators we get $3y = 12$, and the rest follows.",
]


def finite_decimal(p, q):
    d = q
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    if d != 1:
        return None
    s = f"{p / q:.12f}".rstrip("0").rstrip(".")
    return s


def math_gold(a, k, simple):
    form = k % 3 if simple else 1 + k % 2
    if form == 0:
        return "plain", a
    if form == 1:
        return "dollar", f"${a}$"
    return "boxed", f"\\boxed{{{a}}}"


def end_with(answer_latex, k):
    """A completion ending with the answer written as LaTeX, marked or not."""
    c = MATH_CONTEXT[k % len(MATH_CONTEXT)]
    endings = [
        ("phrase", f"{c} Therefore, the answer is ${answer_latex}$."),
        ("latex-inline", f"{c} Thus we get ${answer_latex}$."),
        ("final-i-hope", f"{c}\nFinal Answer: The final answer is ${answer_latex}$. I hope it is correct."),
        ("latex-display", f"{c}\n\\[ {answer_latex} \\]"),
        ("latex-paren", f"{c} The answer is \\({answer_latex}\\)."),
        ("bold-final", f"{c}\n\n**Final Answer**\n\n${answer_latex}$"),
        ("boxed", f"{c} So $\\boxed{{{answer_latex}}}$."),
        ("latex-unboxed-last", f"{c} Hence the value is ${answer_latex}$, as required."),
    ]
    return endings[k % len(endings)]


def rewrites(a):
    """Equivalent LaTeX spellings of answer a (with a class name)."""
    out = [("verbatim", a)]
    if "\\frac" in a:
        out.append(("dfrac", a.replace("\\frac", "\\dfrac")))
        out.append(("tfrac", a.replace("\\frac", "\\tfrac")))
    compact = re.sub(r"\\frac\{(\d)\}\{(\d)\}", r"\\frac\1\2", a)
    if compact != a:
        out.append(("frac-compact", compact))
    sqrt_compact = re.sub(r"\\sqrt\{(\d)\}", r"\\sqrt\1", a)
    if sqrt_compact != a:
        out.append(("sqrt-compact", sqrt_compact))
    if a[:1] in "([" and a[-1:] in ")]" and "\\left" not in a:
        out.append(("left-right", f"\\left{a[0]} {a[1:-1]} \\right{a[-1]}"))
    if a.startswith(("(", "[", "\\{", "\\left")) and "," in a:
        out.append(("thin-spaces", a.replace(",", ",\\,")))
    return out


def mutate(a):
    """A wrong answer near a (with a class name), or None."""
    if re.fullmatch(r"\\text\{[A-Za-z ]+\}", a):
        return "wrong-text", "\\text{west}" if "west" not in a else "\\text{east}"
    if a[:1] in "([" and a[-1:] in ")]" and "\\infty" not in a and a.count(",") >= 1:
        flipped = ("[" if a[0] == "(" else "(") + a[1:]
        return "wrong-interval-end", flipped
    if a.endswith(")") and "\\infty" in a and not a.rstrip(")").endswith("\\infty"):
        return "wrong-interval-end", a[:-1] + "]"
    m = re.fullmatch(r"\(([^,()]+),\s*([^,()]+)\)", a)
    if m and m.group(1).strip() != m.group(2).strip():
        return "wrong-tuple-order", f"({m.group(2).strip()}, {m.group(1).strip()})"
    # The last digit that is not an exponent (`864 \mbox{ inches}^2` -> 865).
    digits = [i for i, ch in enumerate(a) if ch.isdigit()]
    plain = [i for i in digits if a[i - 1 : i] != "^"]
    if digits:
        i = (plain or digits)[-1]
        return "wrong-digit", a[:i] + str((int(a[i]) + 1) % 10) + a[i + 1:]
    return None


math = read_jsonl("math500_test.jsonl")
for k, row in enumerate(math):
    a = row["answer"].strip()
    simple = bool(INT.fullmatch(a) or FRAC.fullmatch(a) or re.fullmatch(r"-?\d*\.\d+", a))
    # Correct: a rewrite, ended in one of the ways models end.
    options = rewrites(a)
    name, written = options[k % len(options)]
    ending, pred = end_with(written, k)
    form, gold = math_gold(a, k, simple)
    add(f"math/{name}/{ending}/gold-{form}", gold, pred, True)
    # Plain-text forms of numbers: a/b, decimals, thousands, x = a, degrees.
    m = FRAC.fullmatch(a)
    if m:
        sign, p, q = m.group(1), int(m.group(2)), int(m.group(3))
        add("math/frac-as-slash/gold-" + form, gold, f"So the answer is {sign}{p}/{q}.", True)
        dec = finite_decimal(p, q)
        if dec is not None and k % 2 == 0:
            add("math/frac-as-decimal/gold-" + form, gold, f"The value is {sign}{dec}.", True)
    if INT.fullmatch(a):
        n = int(a)
        choice = k % 4
        if choice == 0:
            add("math/int-assignment/gold-" + form, gold, f"Solving, we find $n = {n}$.", True)
        elif choice == 1 and abs(n) >= 1000:
            add("math/int-thousands/gold-" + form, gold, f"The count is {n:,}.", True)
        elif choice == 2:
            add("math/int-degrees/gold-" + form, gold, f"So the angle measures ${n}^\\circ$.", True)
        else:
            add("math/int-plain-last/gold-" + form, gold, f"Adding the cases gives {n}.", True)
    # Wrong: a near miss, for two answers in three.
    if k % 3 != 2:
        mutated = mutate(a)
        if mutated:
            name, wrong = mutated
            ending, pred = end_with(wrong, k + 1)
            form, gold = math_gold(a, k + 1, simple)
            add(f"math/{name}/{ending}/gold-{form}", gold, pred, False)

# --------------------------------------------------- issue classes, probes ----

BIG = "1" + "0" * 36
LONG_A = "".join(str((i * 7) % 10) for i in range(2000))
LONG_B = LONG_A[:-1] + str((int(LONG_A[-1]) + 1) % 10)

PROBES = [
    # The table.
    ("issue/interval-unboxed", "$[0,1)$", "$[0,1)$", True),
    ("issue/frac-vs-slash", "10/9", "\\frac{10}{9}", True),
    ("issue/frac-compact", "$1/3$", "$\\frac13 $", True),
    ("issue/relation-unboxed", "$x \\leq 2$", "Thus $x <= 2$ is our answer.", True),
    ("issue/thousands-space", "1000", "1 000", True),
    # Relations.
    ("relation/flipped", "$x \\geq 3$", "The solution set is $3 \\le x$.", True),
    ("relation/unicode", "$x \\leq 2$", "So x ≤ 2.", True),
    ("relation/strict-vs-loose", "$x \\leq 2$", "We get $x < 2$.", False),
    ("relation/neq", "$x \\neq 2$", "Hence $x != 2$.", True),
    ("relation/neq-command", "$x \\ne 5$", "Hence $x \\neq 5$.", True),
    ("relation/wrong-bound", "$x > 4$", "Therefore $x > 5$.", False),
    ("relation/as-interval", "$x \\leq 2$", "The answer is $(-\\infty, 2]$.", True),
    ("relation/double", "$1 < x < 3$", "So $3 > x > 1$.", True),
    ("relation/ge-text", "$y \\ge 0$", "Answer: y >= 0", True),
    # Intervals, tuples, sets.
    ("interval/plain-text", "$[0,1)$", "The interval is [0, 1).", True),
    ("interval/wrong-closed", "$[0,1)$", "The interval is $[0,1]$.", False),
    ("interval/left-right", "$(2, 5]$", "So $x \\in \\left( 2, 5 \\right]$.", True),
    ("tuple/order", "$(3, -1)$", "The point is $(3,-1)$.", True),
    ("tuple/swapped", "$(3, -1)$", "The point is $(-1, 3)$.", False),
    ("set/reordered", "$\\{1, 2, 5\\}$", "The set is $\\{5, 1, 2\\}$.", True),
    ("set/missing", "$\\{1, 2, 5\\}$", "The set is $\\{1, 2\\}$.", False),
    ("list/roots", "$1, -2$", "The solutions are $x=1$ and $x=-2$.", True),
    # Fractions and roots.
    ("frac/dfrac", "$\\frac{3}{4}$", "So $\\dfrac{3}{4}$.", True),
    ("frac/cfrac", "$\\frac{3}{4}$", "So $\\cfrac{3}{4}$.", True),
    ("frac/unreduced", "$\\frac{3}{4}$", "So $\\frac{6}{8}$.", True),
    ("frac/decimal", "$\\frac{3}{4}$", "So it is 0.75.", True),
    ("frac/wrong", "$\\frac{3}{4}$", "So it is 0.7.", False),
    ("sqrt/compact", "$2\\sqrt{3}$", "We get $2\\sqrt3$.", True),
    ("sqrt/combined", "$2\\sqrt{3}$", "We get $\\sqrt{12}$.", True),
    ("spacing/thin", "$\\frac{1}{2}$", "The ratio is $\\frac{1}{2}\\,$.", True),
    ("spacing/negative", "$12$", "It is $1\\!2$.", True),
    # Units, degrees, percent.
    ("unit/text", "5", "The side is $5\\text{ cm}$.", True),
    ("unit/textbf", "12", "**Answer:** $\\textbf{12}$ apples", True),
    ("unit/mathrm-m", "3", "The height is $3\\,\\mathrm{m}$.", True),
    ("unit/mbox-sq", "864", "The area is $864 \\mbox{ inches}^2$.", True),
    ("degree/circ", "45", "The angle is $45^\\circ$.", True),
    ("degree/symbol", "45", "The angle is 45°.", True),
    ("degree/wrong", "45", "The angle is $54^\\circ$.", False),
    ("percent/sign", "25", "The rate is 25%.", True),
    ("percent/latex", "$25\\%$", "The rate is $25\\%$.", True),
    ("percent/fraction", "0.25", "The rate is 25%.", True),
    # Assignments and equations.
    ("assign/value", "$\\frac{1}{3}$", "so $k = 1/3$.", True),
    ("assign/frac", "$\\frac{1}{3}$", "Therefore $k = \\frac{1}{3}$.", True),
    ("assign/sum", "$7$", "Therefore $a + b = 7$.", True),
    ("assign/wrong", "$7$", "Therefore $a + b = 8$.", False),
    ("equation/line", "$y = 2x + 3$", "The line is $y = 3 + 2x$.", True),
    ("equation/line-wrong", "$y = 2x + 3$", "The line is $y = 2x - 3$.", False),
    # Thousands and decimal commas.
    ("thousands/comma", "1234567", "The total is 1,234,567.", True),
    ("thousands/thin", "1000", "It costs $1\\,000$ dollars.", True),
    ("thousands/brace", "1000", "It costs $1{,}000$.", True),
    ("thousands/nnbsp", "25000", "About 25\u202f000 people.", True),
    ("decimal-comma/plain", "1.22", "The length is 1,22", True),
    ("decimal-comma/currency", "2.74", "The price is 2,74 $", True),
    ("decimal-comma/unit", "1.5", "It weighs 1,5 kg.", True),
    ("decimal-comma/not-twelve", "12", "It is 1,2.", False),
    # Numbers inside words, and prose around the answer.
    ("word-number/only", "2", "The code is AZYUK2A.", False),
    ("word-number/then-number", "5", "Code AZYUK2A gives 5.", True),
    # A power is a computation unless it is scientific notation (see "unevaluated/" below).
    ("expression/power", "1024", "The count is 2^{10}.", False),
    ("expression/negative", "-3.5", "The result is -3.5 meters.", True),
    ("expression/frac-plain", "$\\frac{10}{9}$", "which simplifies to \\frac{10}{9}", True),
    ("expression/sum", "7", "So x + y = 7.", True),
    ("phrase/beats-later-math", "18", "The final answer is 18. Check: $18 \\times 2 = 36$.", True),
    ("phrase/spanish-latex", "$\\frac{1}{2}$", "La respuesta es $\\frac{1}{2}$.", True),
    ("phrase/german-wrong", "7", "Die Antwort ist 8.", False),
    ("phrase/chinese-frac", "$\\frac{3}{5}$", "答案是 $\\frac{3}{5}$。", True),
    ("phrase/russian", "42", "Ответ: 42", True),
    ("gold/hash", "#### 1,080", "She makes 1080 dollars.", True),
    ("gold/boxed", "\\boxed{\\frac{1}{2}}", "The answer is 0.5.", True),
    ("gold/dollar", "$\\sqrt{2}$", "So the length is $\\sqrt{2}$.", True),
    # Exact integers at any length; answers too long to compare.
    ("bigint/equal", BIG, "The answer is " + BIG + ".", True),
    ("bigint/off-by-one", BIG, "The answer is " + BIG[:-1] + "1.", False),
    ("bigint/power", "$10^{36}$", "The answer is " + BIG + ".", True),
    ("bigint/power-plus-one", "$10^{36}$", "The answer is " + BIG[:-1] + "1.", False),
    ("bigint/40-digits", "1" + "0" * 39, "$10^{39}+1$", False),
    ("bigint/2-pow-100", "$2^{100}$", "It is 1267650600228229401496703205376.", True),
    ("too-long/different", LONG_A, "\\boxed{" + LONG_B + "}", False),
    ("too-long/same", LONG_A, "\\boxed{" + LONG_A + "}", False),
    # Rounding and near misses.
    ("rounding/third", "$\\frac{1}{3}$", "It is about 0.333333.", True),
    ("rounding/too-coarse", "$\\frac{1}{3}$", "It is about 0.33.", False),
    ("rounding/money", "12345.67", "It costs 12345.68 dollars.", False),
    ("rounding/millions", "1000000.5", "It is 1000000.6.", False),
    ("rounding/pi", "$\\pi$", "It is 3.14159265358979.", True),
    ("rounding/pi-short", "$\\pi$", "It is 3.1416.", False),
    ("choice/letter", "$\\text{(C)}$", "The answer is (C).", True),
    ("choice/wrong", "$\\text{(C)}$", "The answer is (B).", False),
    # Several boxes listed, a phrase after the box, a sentence as the answer.
    ("boxes/listed", "$1, -2$", "So $n = \\boxed{1}$ or $n = \\boxed{-2}$.", True),
    ("boxes/listed-quad", "$\\{2, 3\\}$", "\\[ \\boxed{2} \\quad \\text{and} \\quad \\boxed{3} \\]", True),
    ("boxes/listed-wrong", "$\\{2, 3\\}$", "\\[ \\boxed{2} \\quad \\text{and} \\quad \\boxed{4} \\]", False),
    ("boxes/separate-steps", "7", "First $\\boxed{5}$, and after the second step we get $\\boxed{7}$.", True),
    ("boxes/phrase-after", "$10455$", "Partial sum $\\boxed{255}$. Final Answer: The final answer is $10,455$.", True),
    ("sentence/final-answer", "$120$", "Final Answer: The volume of the box is 120. I hope it is correct.", True),
    ("sentence/final-answer-wrong", "$120$", "Final Answer: The volume of the box is 125.", False),
    ("braces/grouped-list", "$1, 2, 3$", "The values are ${1, 2, 3}$.", True),
    ("decimal/leading-point", "0.4", "It is .4 of the total.", True),
    ("decimal/gold-comma", "1,22", "It measures 1.22 m.", True),
    ("decimal/gold-comma-zero", "0,111", "The ratio is 0.111.", True),
    ("approx/value", "11", "So $x \\approx 11$.", True),
    ("approx/exact-first", "$\\frac{1}{3}$", "So $x = 1/3 \\approx 0.33$.", True),
    ("list/semicolons", "$\\{-2, -1, 3\\}$", "The roots are $-2; -1; 3$.", True),
    ("gold-named/tuple", "$(p, q) = (3, 2)$", "We find $(3, 2)$.", True),
    ("gold-named/segment", "$|AB| = 5$", "So the length is $5$.", True),
    ("gold-named/ratio", "$V_1 : V_2 = 11 : 21$", "The ratio is $11 : 21$.", True),
    ("gold-equation/not-a-name", "$x^2 + y^2 = 1$", "The radius is $1$.", False),
    ("relation/in-interval", "$-2 \\le x \\le 7$", "So $x \\in [-2, 7]$.", True),
    ("relation/in-interval-open", "$-2 \\le x \\le 7$", "So $x \\in (-2, 7]$.", False),
    ("matrix/array-brackets", "$\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}$", "$\\left[\\begin{array}{cc} 1 & 2 \\\\ 3 & 4 \\end{array}\\right]$", True),
    ("text/unboxed-word", "$\\text{odd}$", "So the function is $odd$.", True),
    ("equation/zero-form", "0", "The plane is $5x - 7y + 11z + 4 = 0$.", False),
    # A gold number asks for a number: a computation with its value (the
    # question's operands restated, a power, a factorial) is not the answer,
    # however it is marked; after `=` the right side is the answer.
    ("unevaluated/plain-sum", "42", "To find the answer, add 12 and 30: 12 + 30", False),
    ("unevaluated/plain-sum-tight", "42", "So the total is 12+30", False),
    ("unevaluated/phrase-dollar", "42", "The answer is simply $12 + 30$.", False),
    ("unevaluated/latex-paren", "42", "We add them: \\(12 + 30\\)", False),
    ("unevaluated/latex-display", "42", "Adding the two numbers:\n\\[ 12 + 30 \\]", False),
    ("unevaluated/boxed", "42", "\\boxed{12 + 30}", False),
    ("unevaluated/boxed/gold-boxed", "\\boxed{42}", "So $\\boxed{12+30}$.", False),
    ("unevaluated/gold-hash", "Work shown above.\n#### 42", "She has 12 + 30 apples in total: 12 + 30", False),
    ("unevaluated/times-plus", "17", "We get $3 \\times 4 + 5$.", False),
    ("unevaluated/cdot", "42", "The product is $6 \\cdot 7$.", False),
    ("unevaluated/unicode-times", "42", "The product is 6 × 7", False),
    ("unevaluated/unicode-divide", "4", "So it is 12 ÷ 3", False),
    ("unevaluated/latex-div", "4", "So it is $12 \\div 3$.", False),
    ("unevaluated/difference", "42", "The answer is 50 - 8.", False),
    ("unevaluated/fractions-sum", "$\\frac{10}{9}$", "So $\\frac{5}{9} + \\frac{5}{9}$.", False),
    ("unevaluated/decimal-gold", "-3.5", "The result is $-1.5 - 2$.", False),
    ("unevaluated/power", "1024", "So there are $2^{10}$ subsets.", False),
    ("unevaluated/power-boxed", "1024", "So there are $\\boxed{2^{10}}$ subsets.", False),
    ("unevaluated/factorial", "120", "The number of orders is $5!$.", False),
    ("unevaluated/binomial", "10", "So there are $\\binom{5}{2}$ ways.", False),
    ("unevaluated/sqrt", "4", "The side is $\\sqrt{16}$.", False),
    ("unevaluated/assignment", "42", "So $x = 12 + 30$.", False),
    ("evaluated/chain", "42", "To find the answer, add 12 and 30: 12 + 30 = 42", True),
    ("evaluated/chain-latex", "42", "So $12 + 30 = 42$.", True),
    ("evaluated/chain-boxed", "42", "\\boxed{12 + 30 = 42}", True),
    ("evaluated/chain-times", "17", "$3 \\times 4 + 5 = 17$", True),
    ("evaluated/chain-wrong", "42", "So $12 + 30 = 32$.", False),
    ("evaluated/wrong-sum", "42", "The answer is $12 + 31$.", False),
    # Number notations that are not computations.
    ("notation/scientific", "1500", "It is $1.5 \\times 10^{3}$.", True),
    ("notation/power-of-ten", "1000000", "About $10^{6}$ grains.", True),
    ("notation/unreduced-fraction", "42", "So $\\frac{84}{2}$.", True),
    ("notation/signed-fraction", "$-\\frac{3}{8}$", "So $\\frac{-3}{8}$.", True),
    ("notation/mixed-number", "$\\frac{5}{2}$", "It takes $2\\frac{1}{2}$ hours.", True),
    ("notation/negative", "-7", "The answer is $-7$.", True),
    # A gold that is an expression is compared by value.
    ("symbolic-gold/sum", "$\\frac{1}{2} + \\frac{\\sqrt{3}}{2}$", "So $\\frac{1+\\sqrt{3}}{2}$.", True),
    ("symbolic-gold/power-as-number", "$2^{10}$", "There are $1024$ subsets.", True),
    ("symbolic-gold/power-as-power", "$2^{10}$", "There are $2^{10}$ subsets.", True),
    ("symbolic-gold/root-sum", "$1 + \\sqrt{2}$", "So $\\sqrt{2} + 1$.", True),
    ("symbolic-gold/factorial", "$5!$", "The number of orders is $120$.", True),
]
for cls, gold, pred, expected in PROBES:
    add("probe/" + cls, gold, pred, expected)

for k, p in enumerate(pairs):
    p["id"] = f"p{k:04d}"
    sys.stdout.write(json.dumps({"id": p["id"], **{x: p[x] for x in ("class", "gold", "pred", "expected")}}, ensure_ascii=False) + "\n")
print(f"{len(pairs)} pairs ({sum(p['expected'] for p in pairs)} expected correct)", file=sys.stderr)
