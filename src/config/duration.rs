//! Durations in Go syntax (`300ms`, `5m`, `1h30m`).
//!
//! Flipt and OPA configs are read by Go's `time.ParseDuration`, and users copy values between
//! them and wasmgate, so a value must mean exactly what it means to Go: the same units, the
//! same fraction rounding, the same range (an `int64` of nanoseconds) and the same rejects.
//! The parser below follows Go's algorithm step by step rather than a grammar of our own.

use std::time::Duration;

/// Why a duration string was rejected; the text names the input so the message stands alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all: empty, no digits, or a stray character.
    #[error(
        "invalid duration {input:?}: expected numbers with units, e.g. 300ms, 30s, 5m or 1h30m"
    )]
    Invalid { input: String },
    /// A number without a unit (`5`); Go only accepts a bare `0`.
    #[error("invalid duration {input:?}: missing unit")]
    MissingUnit { input: String },
    /// A unit Go does not know (`5d`: Go has no days).
    #[error("invalid duration {input:?}: unknown unit {unit:?}")]
    UnknownUnit { input: String, unit: String },
    /// Beyond Go's range of about ±292 years.
    #[error("invalid duration {input:?}: out of range")]
    OutOfRange { input: String },
    /// Valid Go, but `std::time::Duration` cannot hold it and nothing in wasmgate waits a
    /// negative time.
    #[error("invalid duration {input:?}: must not be negative")]
    Negative { input: String },
}

/// Parses a Go duration string into a non-negative [`Duration`].
///
/// Negative durations are valid Go and are reported as [`DurationError::Negative`] rather
/// than as a syntax error, so callers can say "must be greater than zero" instead of
/// "invalid". `-0s` is zero.
pub fn parse_go_duration(s: &str) -> Result<Duration, DurationError> {
    let parsed = parse_signed(s)?;
    if parsed.negative && !parsed.magnitude.is_zero() {
        return Err(DurationError::Negative {
            input: s.to_owned(),
        });
    }
    Ok(parsed.magnitude)
}

/// A Go duration with its sign kept apart, because `std::time::Duration` is unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GoDuration {
    pub(super) negative: bool,
    pub(super) magnitude: Duration,
}

impl GoDuration {
    /// True for the values a poll interval or timeout cannot take: zero and negatives.
    pub(super) fn is_positive(self) -> bool {
        !self.negative && !self.magnitude.is_zero()
    }

    /// The duration, with negatives as zero (for fields nobody validates or uses).
    pub(super) fn or_zero(self) -> Duration {
        if self.negative {
            Duration::ZERO
        } else {
            self.magnitude
        }
    }
}

/// 2^63: the magnitude of Go's most negative duration; positive ones stop one below.
const LIMIT: u64 = 1 << 63;

/// Go's `time.ParseDuration`, keeping the sign instead of applying it.
pub(super) fn parse_signed(input: &str) -> Result<GoDuration, DurationError> {
    let invalid = || DurationError::Invalid {
        input: input.to_owned(),
    };
    let out_of_range = || DurationError::OutOfRange {
        input: input.to_owned(),
    };

    let mut s = input.as_bytes();
    let mut negative = false;
    if let Some((&sign @ (b'-' | b'+'), rest)) = s.split_first() {
        negative = sign == b'-';
        s = rest;
    }
    // Go's special case: a bare "0" needs no unit.
    if s == b"0" {
        return Ok(GoDuration {
            negative,
            magnitude: Duration::ZERO,
        });
    }
    if s.is_empty() {
        return Err(invalid());
    }

    let mut total: u64 = 0;
    while !s.is_empty() {
        if !(s[0] == b'.' || s[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let (mut value, rest) = leading_int(s).ok_or_else(out_of_range)?;
        let had_integer = rest.len() != s.len();
        s = rest;

        let (mut fraction, mut scale, mut had_fraction) = (0, 1.0, false);
        if let Some((b'.', rest)) = s.split_first() {
            let (f, sc, rest2) = leading_fraction(rest);
            (fraction, scale, had_fraction) = (f, sc, rest2.len() != rest.len());
            s = rest2;
        }
        if !had_integer && !had_fraction {
            return Err(invalid()); // ".s", "-.s"
        }

        // The unit runs up to the next number; like Go, anything else in it is "unknown".
        let unit_len = s
            .iter()
            .position(|&c| c == b'.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(DurationError::MissingUnit {
                input: input.to_owned(),
            });
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let Some(unit_nanos) = unit_nanos(unit) else {
            return Err(DurationError::UnknownUnit {
                input: input.to_owned(),
                unit: String::from_utf8_lossy(unit).into_owned(),
            });
        };

        if value > LIMIT / unit_nanos {
            return Err(out_of_range());
        }
        value *= unit_nanos;
        if fraction > 0 {
            // Go computes the fractional part in float64 (exact to the nanosecond for the
            // largest unit, hours); doing the same keeps results bit-identical to Go's.
            value += (fraction as f64 * (unit_nanos as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(out_of_range());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(out_of_range());
        }
    }
    if !negative && total > LIMIT - 1 {
        return Err(out_of_range());
    }
    Ok(GoDuration {
        negative,
        magnitude: Duration::from_nanos(total),
    })
}

/// Consumes leading decimal digits; `None` when they exceed 2^63 (Go's `errLeadingInt`).
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut value: u64 = 0;
    for &c in &s[..digits] {
        if value > LIMIT / 10 {
            return None;
        }
        value = value * 10 + u64::from(c - b'0');
        if value > LIMIT {
            return None;
        }
    }
    Some((value, &s[digits..]))
}

/// Consumes the digits after a decimal point. Like Go, it never fails: once more digits would
/// overflow it stops gaining precision and skips them.
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (mut value, mut scale, mut overflow) = (0u64, 1.0f64, false);
    for &c in &s[..digits] {
        if overflow {
            continue;
        }
        if value > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let next = value * 10 + u64::from(c - b'0');
        if next > LIMIT {
            overflow = true;
            continue;
        }
        value = next;
        scale *= 10.0;
    }
    (value, scale, &s[digits..])
}

/// Nanoseconds per unit; both micro signs are accepted, as in Go.
fn unit_nanos(unit: &[u8]) -> Option<u64> {
    Some(match unit {
        b"ns" => 1,
        b"us" => 1_000,
        // U+00B5 MICRO SIGN and U+03BC GREEK SMALL LETTER MU, as UTF-8.
        b"\xC2\xB5s" | b"\xCE\xBCs" => 1_000,
        b"ms" => 1_000_000,
        b"s" => 1_000_000_000,
        b"m" => 60 * 1_000_000_000,
        b"h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(n: u64) -> Duration {
        Duration::from_nanos(n)
    }

    const SEC: u64 = 1_000_000_000;
    const MIN: u64 = 60 * SEC;
    const HOUR: u64 = 60 * MIN;

    #[test]
    fn accepts_every_form_go_accepts_with_go_values() {
        // (input, negative, nanoseconds): rows taken from Go's own time.ParseDuration tests.
        let table: &[(&str, bool, u64)] = &[
            ("0", false, 0),
            ("-0", true, 0),
            ("+0", false, 0),
            ("5s", false, 5 * SEC),
            ("+5s", false, 5 * SEC),
            ("-1s", true, SEC),
            ("300ms", false, 300_000_000),
            ("1h30m", false, HOUR + 30 * MIN),
            ("2h45m", false, 2 * HOUR + 45 * MIN),
            ("-1.5h", true, HOUR + 30 * MIN),
            ("1.5h", false, HOUR + 30 * MIN),
            ("1.s", false, SEC),
            (".5s", false, SEC / 2),
            ("5.6s", false, 5 * SEC + 600_000_000),
            ("100.00100s", false, 100 * SEC + 1_000_000),
            ("10ns", false, 10),
            ("1us", false, 1_000),
            ("1µs", false, 1_000),
            ("1μs", false, 1_000),
            ("13ms", false, 13_000_000),
            ("10.5s4m", false, 4 * MIN + 10 * SEC + SEC / 2),
            (
                "1h2m3s4ms5us6ns",
                false,
                HOUR + 2 * MIN + 3 * SEC + 4_000_000 + 5_000 + 6,
            ),
            ("0.3333333333333333333h", false, 20 * MIN),
            (
                "0.830103483285477580700h",
                false,
                49 * MIN + 48 * SEC + 372_539_827,
            ),
            ("9007199254740993ns", false, 9_007_199_254_740_993),
            ("9223372036854775807ns", false, (1 << 63) - 1),
            ("9223372036854775.807us", false, (1 << 63) - 1),
            ("-9223372036854775808ns", true, 1 << 63),
        ];
        for &(input, negative, n) in table {
            let got = parse_signed(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(
                got,
                GoDuration {
                    negative,
                    magnitude: nanos(n)
                },
                "{input:?}"
            );
        }
    }

    #[test]
    fn rejects_what_go_rejects_with_the_reason() {
        let invalid = |s: &str| DurationError::Invalid { input: s.into() };
        let missing = |s: &str| DurationError::MissingUnit { input: s.into() };
        let unknown = |s: &str, u: &str| DurationError::UnknownUnit {
            input: s.into(),
            unit: u.into(),
        };
        let range = |s: &str| DurationError::OutOfRange { input: s.into() };
        let table = [
            ("", invalid("")),
            ("-", invalid("-")),
            ("s", invalid("s")),
            (".", invalid(".")),
            (".s", invalid(".s")),
            ("+.s", invalid("+.s")),
            (" 5s", invalid(" 5s")),
            ("5", missing("5")),
            ("00", missing("00")),
            ("1.5.5s", missing("1.5.5s")),
            ("5d", unknown("5d", "d")),
            ("5x", unknown("5x", "x")),
            ("1h-5m", unknown("1h-5m", "h-")),
            ("5 s", unknown("5 s", " s")),
            ("9999999999h", range("9999999999h")),
            ("9223372036854775808ns", range("9223372036854775808ns")),
            ("-9223372036854775809ns", range("-9223372036854775809ns")),
            ("9223372036854775.808us", range("9223372036854775.808us")),
            ("99999999999999999999s", range("99999999999999999999s")),
        ];
        for (input, want) in table {
            assert_eq!(parse_signed(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn public_parser_reports_negative_durations_as_negative_not_invalid() {
        assert_eq!(
            parse_go_duration("-1s"),
            Err(DurationError::Negative {
                input: "-1s".into()
            })
        );
        assert_eq!(parse_go_duration("-0s"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("1h30m"), Ok(nanos(HOUR + 30 * MIN)));
    }

    #[test]
    fn error_text_names_the_input_and_the_unit() {
        let err = parse_go_duration("5x").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid duration "5x": unknown unit "x""#
        );
    }
}
