//! How long the Hub client waits, and when it tries again.
//!
//! - Timeouts are per socket operation, so that no request hangs and none is cut off while it
//!   makes progress: connecting takes at most 10 s, and every read of a reply and every write
//!   of a body at most `RLVR_HUB_TIMEOUT_S` (default 60 s). A metadata call (create,
//!   preupload, LFS batch, verify, commit) that gets no reply fails after that long; an upload
//!   of a multi-GB file runs as long as each chunk of it is written within that time.
//! - A call that failed with 429, 500, 502, 503, 504 or a transport error (refused, reset,
//!   timed out) is sent again, at most `RLVR_HUB_RETRIES` (default 4) more times, after an
//!   exponential backoff from `RLVR_HUB_BACKOFF_MS` (default 1000 ms, doubling, capped at 30 s)
//!   with jitter, or after the server's `Retry-After` when that is longer.
//! - A call that is not safe to repeat once the server has read it (the commit, the multipart
//!   completion) is sent again only when the server cannot have acted on it: the connection
//!   failed, or it answered 429 or 503.
//!
//! Owns the policy and the waiting; it must not know the protocol's endpoints or bodies.

use std::time::Duration;

use anyhow::{bail, Context, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RETRIES: u32 = 4;
const DEFAULT_BACKOFF: Duration = Duration::from_millis(1000);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A `Retry-After` longer than this fails the push instead of waiting.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Whether a request may be sent again after the server may have read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Sending it twice does what sending it once does (reads, uploads of content by hash,
    /// creations that answer 409 the second time).
    Safe,
    /// Only when the server cannot have acted on it (commits, multipart completion).
    Unsent,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Try again, not sooner than the server's `Retry-After`, if it sent one.
    Retry {
        retry_after: Option<Duration>,
    },
    /// The server asked for a wait longer than we are willing to make.
    TooLong(Duration),
    Fail,
}

#[derive(Debug, Clone)]
pub struct Policy {
    /// Per read (metadata calls) and per write (uploads) of the socket.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Attempts after the first.
    pub retries: u32,
    pub backoff: Duration,
    /// Seeds the jitter (a process's own; fixed in tests).
    pub seed: u64,
}

impl Policy {
    /// The defaults, with `RLVR_HUB_TIMEOUT_S`, `RLVR_HUB_RETRIES` and `RLVR_HUB_BACKOFF_MS`.
    pub fn from_env() -> Result<Policy> {
        let timeout = match env_number("RLVR_HUB_TIMEOUT_S")? {
            Some(s) => Duration::from_secs_f64(s),
            None => DEFAULT_TIMEOUT,
        };
        let retries = match env_number("RLVR_HUB_RETRIES")? {
            Some(n) if n.fract() == 0.0 && n <= 100.0 => n as u32,
            Some(n) => bail!("RLVR_HUB_RETRIES={n}: expected a whole number of retries ≤ 100"),
            None => DEFAULT_RETRIES,
        };
        let backoff = match env_number("RLVR_HUB_BACKOFF_MS")? {
            Some(ms) => Duration::from_secs_f64(ms / 1e3),
            None => DEFAULT_BACKOFF,
        };
        let seed = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        Ok(Policy {
            connect_timeout: CONNECT_TIMEOUT.min(timeout),
            timeout,
            retries,
            backoff,
            seed,
        })
    }

    /// An HTTP agent with these timeouts (no overall one: a long upload that keeps moving is
    /// not cut off).
    pub fn agent(&self) -> ureq::Agent {
        ureq::AgentBuilder::new()
            .timeout_connect(self.connect_timeout)
            .timeout_read(self.timeout)
            .timeout_write(self.timeout)
            .user_agent(concat!("rlvr/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// The wait before attempt `attempt + 1` (`attempt` ≥ 1 failed): `backoff · 2^(attempt−1)`,
    /// capped, times a jitter factor in [0.5, 1) drawn from the seed; at least `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .backoff
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
            .min(MAX_BACKOFF);
        let unit = (mix(self.seed ^ u64::from(attempt)) >> 11) as f64 / (1u64 << 53) as f64;
        let jittered = exp.mul_f64(0.5 + 0.5 * unit);
        retry_after.map_or(jittered, |r| jittered.max(r))
    }
}

/// A positive, finite number from the environment, if the variable is set.
fn env_number(var: &str) -> Result<Option<f64>> {
    let Ok(raw) = std::env::var(var) else {
        return Ok(None);
    };
    let value: f64 = raw
        .trim()
        .parse()
        .with_context(|| format!("{var}={raw:?}: expected a number"))?;
    if !(value.is_finite() && value >= 0.0) || (var.ends_with("TIMEOUT_S") && value == 0.0) {
        bail!("{var}={raw:?}: expected a positive number");
    }
    Ok(Some(value))
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether the failure `err` of a request that repeats as `repeat` is worth another attempt.
pub fn verdict(err: &ureq::Error, repeat: Repeat) -> Verdict {
    match err {
        ureq::Error::Status(code, resp) => {
            let retryable = match repeat {
                Repeat::Safe => matches!(code, 429 | 500 | 502 | 503 | 504),
                Repeat::Unsent => matches!(code, 429 | 503),
            };
            if !retryable {
                return Verdict::Fail;
            }
            match resp.header("retry-after").and_then(parse_retry_after) {
                Some(wait) if wait > MAX_RETRY_AFTER => Verdict::TooLong(wait),
                retry_after => Verdict::Retry { retry_after },
            }
        }
        ureq::Error::Transport(t) => {
            use ureq::ErrorKind::*;
            let unsent = matches!(t.kind(), Dns | ConnectionFailed);
            let transient = unsent || matches!(t.kind(), Io | BadStatus | BadHeader);
            match repeat {
                Repeat::Safe if transient => Verdict::Retry { retry_after: None },
                Repeat::Unsent if unsent => Verdict::Retry { retry_after: None },
                _ => Verdict::Fail,
            }
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the Hub and is ignored).
fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

/// Whether a transport failure was a timeout (the reply, or a chunk of the body, too slow).
pub fn is_timeout(err: &ureq::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return true;
            }
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(seed: u64) -> Policy {
        Policy {
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
            retries: DEFAULT_RETRIES,
            backoff: DEFAULT_BACKOFF,
            seed,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let p = policy(7);
        for attempt in 1..=8u32 {
            let d = p.delay(attempt, None);
            let full = DEFAULT_BACKOFF
                .saturating_mul(1 << (attempt - 1))
                .min(MAX_BACKOFF);
            assert!(
                d >= full / 2 && d < full,
                "attempt {attempt}: {d:?} vs {full:?}"
            );
            // The same seed gives the same wait; another seed, another one.
            assert_eq!(d, policy(7).delay(attempt, None));
        }
        assert_ne!(p.delay(1, None), policy(8).delay(1, None));
        let long = Duration::from_secs(20);
        assert_eq!(p.delay(1, Some(long)), long);
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn what_is_retried() {
        let status = |code: u16, retry_after: Option<&str>| {
            let mut text = format!("HTTP/1.1 {code} X\r\n");
            if let Some(r) = retry_after {
                text.push_str(&format!("Retry-After: {r}\r\n"));
            }
            text.push_str("\r\n");
            ureq::Error::Status(code, text.parse::<ureq::Response>().unwrap())
        };
        let retry = |retry_after| Verdict::Retry { retry_after };
        assert_eq!(verdict(&status(500, None), Repeat::Safe), retry(None));
        assert_eq!(verdict(&status(500, None), Repeat::Unsent), Verdict::Fail);
        assert_eq!(
            verdict(&status(429, Some("2")), Repeat::Unsent),
            retry(Some(Duration::from_secs(2)))
        );
        assert_eq!(
            verdict(&status(503, Some("3600")), Repeat::Safe),
            Verdict::TooLong(Duration::from_secs(3600))
        );
        for code in [400, 401, 403, 404, 409, 413] {
            assert_eq!(verdict(&status(code, None), Repeat::Safe), Verdict::Fail);
        }
    }
}
