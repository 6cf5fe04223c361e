//! Exact integers of any length up to a fixed cap, for comparing integers that
//! do not fit in `i128` or in the 53 bits an `f64` holds exactly (`10^{40}+1`,
//! a 60-digit literal, `2^{200}`, `30!`).
//!
//! Owns: sign-magnitude integers in base 10^9 with addition, subtraction,
//! multiplication and small powers, every result capped at `MAX_DIGITS`
//! (`None` beyond it, never a panic or an unbounded loop). Must not know:
//! rationals, floating point, or any text format beyond plain digits.

use std::cmp::Ordering;

const BASE: u64 = 1_000_000_000;
/// Decimal digits per limb.
const LIMB_DIGITS: usize = 9;
/// Most decimal digits of a result; answers are capped at about a kilobyte,
/// so anything longer cannot be one written out.
pub(crate) const MAX_DIGITS: usize = 4096;
const MAX_LIMBS: usize = MAX_DIGITS / LIMB_DIGITS + 1;

/// An exact integer: `negative` and little-endian base-10^9 limbs without
/// trailing zero limbs (zero is no limbs and not negative).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BigInt {
    negative: bool,
    limbs: Vec<u32>,
}

impl BigInt {
    fn from_parts(negative: bool, mut limbs: Vec<u32>) -> Option<BigInt> {
        while limbs.last() == Some(&0) {
            limbs.pop();
        }
        if limbs.len() > MAX_LIMBS {
            return None;
        }
        Some(BigInt {
            negative: negative && !limbs.is_empty(),
            limbs,
        })
    }

    pub fn from_i128(value: i128) -> BigInt {
        let mut magnitude = value.unsigned_abs();
        let mut limbs = Vec::new();
        while magnitude > 0 {
            limbs.push((magnitude % BASE as u128) as u32);
            magnitude /= BASE as u128;
        }
        BigInt {
            negative: value < 0,
            limbs,
        }
    }

    /// A run of ASCII digits (leading zeros allowed); `None` for anything else
    /// or beyond the cap.
    pub fn from_digits(digits: &str) -> Option<BigInt> {
        let digits = digits.trim_start_matches('0');
        if digits.len() > MAX_DIGITS || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let bytes = digits.as_bytes();
        let mut limbs = Vec::with_capacity(bytes.len() / LIMB_DIGITS + 1);
        let mut end = bytes.len();
        while end > 0 {
            let start = end.saturating_sub(LIMB_DIGITS);
            let limb = bytes[start..end]
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'));
            limbs.push(limb);
            end = start;
        }
        BigInt::from_parts(false, limbs)
    }

    pub fn neg(mut self) -> BigInt {
        self.negative = !self.negative && !self.limbs.is_empty();
        self
    }

    pub fn abs(mut self) -> BigInt {
        self.negative = false;
        self
    }

    pub fn add(&self, other: &BigInt) -> Option<BigInt> {
        if self.negative == other.negative {
            return BigInt::from_parts(self.negative, add_magnitudes(&self.limbs, &other.limbs));
        }
        match cmp_magnitudes(&self.limbs, &other.limbs) {
            Ordering::Equal => Some(BigInt::from_i128(0)),
            Ordering::Greater => {
                BigInt::from_parts(self.negative, sub_magnitudes(&self.limbs, &other.limbs))
            }
            Ordering::Less => {
                BigInt::from_parts(other.negative, sub_magnitudes(&other.limbs, &self.limbs))
            }
        }
    }

    pub fn sub(&self, other: &BigInt) -> Option<BigInt> {
        self.add(&other.clone().neg())
    }

    pub fn mul(&self, other: &BigInt) -> Option<BigInt> {
        if self.limbs.len() + other.limbs.len() > MAX_LIMBS + 1 {
            return None;
        }
        let mut product = vec![0u64; self.limbs.len() + other.limbs.len()];
        for (i, &a) in self.limbs.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in other.limbs.iter().enumerate() {
                let cell = product[i + j] + u64::from(a) * u64::from(b) + carry;
                product[i + j] = cell % BASE;
                carry = cell / BASE;
            }
            let mut k = i + other.limbs.len();
            while carry > 0 && k < product.len() {
                let cell = product[k] + carry;
                product[k] = cell % BASE;
                carry = cell / BASE;
                k += 1;
            }
        }
        let limbs = product.into_iter().map(|x| x as u32).collect();
        BigInt::from_parts(self.negative != other.negative, limbs)
    }

    /// `self * factor` for a small factor, in place; `None` past the cap.
    pub fn mul_small(mut self, factor: u32) -> Option<BigInt> {
        let mut carry = 0u64;
        for limb in &mut self.limbs {
            let cell = u64::from(*limb) * u64::from(factor) + carry;
            *limb = (cell % BASE) as u32;
            carry = cell / BASE;
        }
        while carry > 0 {
            self.limbs.push((carry % BASE) as u32);
            carry /= BASE;
        }
        BigInt::from_parts(self.negative, self.limbs)
    }

    /// `self^exponent` by repeated squaring; `None` when the result would pass the cap.
    pub fn pow(&self, exponent: u64) -> Option<BigInt> {
        let bits = self.approx_bits();
        if bits > 1.0 && bits * exponent as f64 > (MAX_DIGITS as f64) * std::f64::consts::LOG2_10 {
            return None;
        }
        let mut result = BigInt::from_i128(1);
        let mut base = self.clone();
        let mut remaining = exponent;
        while remaining > 0 {
            if remaining & 1 == 1 {
                result = result.mul(&base)?;
            }
            remaining >>= 1;
            if remaining > 0 {
                base = base.mul(&base)?;
            }
        }
        Some(result)
    }

    /// `self * 10^zeros`.
    pub fn shifted(&self, zeros: u64) -> Option<BigInt> {
        if zeros as usize > MAX_DIGITS {
            return None;
        }
        self.mul(&BigInt::from_i128(10).pow(zeros)?)
    }

    /// `self` when it is between 0 and `limit`.
    pub fn to_small(&self, limit: u64) -> Option<u64> {
        if self.negative || self.limbs.len() > 2 {
            return None;
        }
        let value = self
            .limbs
            .iter()
            .rev()
            .fold(0u64, |acc, &limb| acc * BASE + u64::from(limb));
        (value <= limit).then_some(value)
    }

    /// About how many bits the magnitude has (for bounding powers).
    fn approx_bits(&self) -> f64 {
        match self.limbs.last() {
            None => 0.0,
            Some(&top) => {
                (self.limbs.len() - 1) as f64 * (BASE as f64).log2() + f64::from(top.max(1)).log2()
            }
        }
    }
}

impl std::fmt::Display for BigInt {
    /// Plain decimal digits, with a leading `-` when negative.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some((top, rest)) = self.limbs.split_last() else {
            return f.write_str("0");
        };
        let sign = if self.negative { "-" } else { "" };
        write!(f, "{sign}{top}")?;
        rest.iter()
            .rev()
            .try_for_each(|limb| write!(f, "{limb:0width$}", width = LIMB_DIGITS))
    }
}

fn cmp_magnitudes(a: &[u32], b: &[u32]) -> Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.iter().rev().cmp(b.iter().rev()))
}

fn add_magnitudes(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut sum = Vec::with_capacity(a.len().max(b.len()) + 1);
    let mut carry = 0u64;
    for k in 0..a.len().max(b.len()) {
        let cell = u64::from(*a.get(k).unwrap_or(&0)) + u64::from(*b.get(k).unwrap_or(&0)) + carry;
        sum.push((cell % BASE) as u32);
        carry = cell / BASE;
    }
    if carry > 0 {
        sum.push(carry as u32);
    }
    sum
}

/// `a - b` for magnitudes with `a >= b`.
fn sub_magnitudes(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut difference = Vec::with_capacity(a.len());
    let mut borrow = 0i64;
    for (k, &limb) in a.iter().enumerate() {
        let mut cell = i64::from(limb) - i64::from(*b.get(k).unwrap_or(&0)) - borrow;
        borrow = i64::from(cell < 0);
        if cell < 0 {
            cell += BASE as i64;
        }
        difference.push(cell as u32);
    }
    difference
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big(s: &str) -> BigInt {
        BigInt::from_digits(s).expect("digits")
    }

    #[test]
    fn arithmetic() {
        let a = big("1000000000000000000000000000000000000");
        let one = BigInt::from_i128(1);
        assert_ne!(a, a.add(&one).expect("sum"));
        assert_eq!(a.add(&one).expect("sum").sub(&one).expect("difference"), a);
        assert_eq!(BigInt::from_i128(10).pow(36).expect("power"), a);
        assert_eq!(
            BigInt::from_i128(2).pow(200).expect("power"),
            big("1606938044258990275541962092341162602522202993782792835301376")
        );
        assert_eq!(
            BigInt::from_i128(-3).mul(&BigInt::from_i128(7)),
            Some(BigInt::from_i128(-21))
        );
        assert_eq!(
            BigInt::from_i128(5).sub(&BigInt::from_i128(8)),
            Some(BigInt::from_i128(-3))
        );
        assert_eq!(big("0000"), BigInt::from_i128(0));
        assert_eq!(big("12").shifted(3), Some(BigInt::from_i128(12000)));
        assert_eq!(big("123").to_small(1000), Some(123));
        assert_eq!(
            big("999999999999").mul_small(1000),
            Some(big("999999999999000"))
        );
    }

    #[test]
    fn capped() {
        assert!(BigInt::from_i128(10).pow(5000).is_none());
        assert!(BigInt::from_i128(2).pow(u64::MAX).is_none());
        assert!(BigInt::from_digits(&"9".repeat(MAX_DIGITS + 1)).is_none());
        assert!(BigInt::from_digits("12a").is_none());
        assert_eq!(
            BigInt::from_i128(1).pow(u64::MAX),
            Some(BigInt::from_i128(1))
        );
    }
}
