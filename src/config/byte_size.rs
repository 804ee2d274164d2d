//! Byte sizes written for people (`256MiB`, `64MB`, `1GiB`) rather than as raw byte counts.

/// Binary (`KiB`, `MiB`, …) and decimal (`KB`, `MB`, …) units, matched case-insensitively,
/// also without the trailing `B` (`Mi`, `M`), as Kubernetes and OPA's `units.parse_bytes`
/// write them.
const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1_000),
    ("kb", 1_000),
    ("ki", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("mi", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("gi", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("ti", 1 << 40),
    ("tib", 1 << 40),
];

/// Parses a byte size: a plain count (`1048576`) or a number with a unit (`64MB`, `256MiB`).
///
/// A decimal fraction is allowed when the result is a whole number of bytes (`1.5GiB` is
/// 1610612736) and rejected otherwise (`1.5B`), so a limit never silently rounds. The
/// arithmetic is exact (integers, not floats). The error is a complete sentence naming the
/// input; the config layer prefixes the field path.
pub fn parse_byte_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_len);
    let unit = unit.trim_start();

    let (integer, fraction) = match number.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (number, None),
    };
    // Digits before the point are required, and after it when there is one: `.5`, `1.` and
    // `1.2.3` are more likely typos than intent.
    let well_formed =
        !integer.is_empty() && fraction.is_none_or(|f| !f.is_empty() && !f.contains('.'));
    if !well_formed {
        return Err(format!(
            "invalid byte size {s:?}: expected a number of bytes with an optional unit, \
             e.g. 1048576, 64MB, 256MiB or 1GiB"
        ));
    }
    let Some(&(_, multiplier)) = UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))
    else {
        return Err(format!(
            "invalid byte size {s:?}: unknown unit {unit:?} \
             (expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
        ));
    };

    let fraction = fraction.unwrap_or("");
    let too_large = || format!("invalid byte size {s:?}: too large");
    // u128 holds 38 digits; beyond that the value cannot fit u64 bytes anyway.
    if integer.len() + fraction.len() > 38 {
        return Err(too_large());
    }
    let digits: u128 = format!("{integer}{fraction}")
        .parse()
        .map_err(|_| too_large())?;
    let divisor = 10u128.pow(fraction.len() as u32);
    let scaled = digits
        .checked_mul(u128::from(multiplier))
        .ok_or_else(too_large)?;
    if scaled % divisor != 0 {
        return Err(format!(
            "invalid byte size {s:?}: not a whole number of bytes"
        ));
    }
    u64::try_from(scaled / divisor).map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn accepts_counts_and_binary_and_decimal_units() {
        let table: &[(&str, u64)] = &[
            ("1048576", 1_048_576),
            ("1024", 1024),
            ("0", 0),
            ("256MiB", 256 * MIB),
            ("256mib", 256 * MIB),
            ("256Mi", 256 * MIB),
            ("64MB", 64_000_000),
            ("64M", 64_000_000),
            ("1GiB", 1 << 30),
            ("1.5GiB", 3 << 29),
            ("0.5KiB", 512),
            ("512 KiB", 512 << 10),
            (" 2TiB ", 2 << 40),
            ("10B", 10),
            ("16777215TiB", 16_777_215 << 40),
        ];
        for &(input, want) in table {
            assert_eq!(parse_byte_size(input), Ok(want), "{input:?}");
        }
    }

    #[test]
    fn rejects_garbage_negatives_fractions_of_a_byte_and_overflow() {
        let table: &[(&str, &str)] = &[
            ("x", "expected a number of bytes"),
            ("", "expected a number of bytes"),
            ("-1", "expected a number of bytes"),
            ("MiB", "expected a number of bytes"),
            (".5GiB", "expected a number of bytes"),
            ("1.GiB", "expected a number of bytes"),
            ("1.2.3MB", "expected a number of bytes"),
            ("5XB", r#"unknown unit "XB""#),
            ("5 MiB extra", r#"unknown unit "MiB extra""#),
            ("1.5B", "not a whole number of bytes"),
            ("0.1KiB", "not a whole number of bytes"),
            ("18446744073709551616", "too large"),
            ("16777216TiB", "too large"),
            ("99999999999999999999999999999999999999999", "too large"),
        ];
        for &(input, want) in table {
            let err = parse_byte_size(input).expect_err(input);
            assert!(err.contains(want), "{input:?}: {err}");
            assert!(err.contains(&format!("{input:?}")), "{input:?}: {err}");
        }
    }
}
