//! Version ordering and prefix matching.
//!
//! A version is split into segments on `.` and `-` (also `+` and `~`). Two versions compare
//! segment by segment: both numeric → numeric order (so `1.10` > `1.9`, `01` == `1`); a numeric
//! segment sorts above a non-numeric one (`1.0.1` > `1.0.beta`); two non-numeric segments compare
//! as byte strings. When one version is a prefix of the other, the longer one is greater
//! (`1.0.1` > `1.0`). Exact ties of the order (`1.01` vs `1.1`) fall back to the byte string so
//! the order is total.
//!
//! A version *prefix* matches whole segments: `2.1` matches `2.1`, `2.1.3` and `2.1-rc1`, not
//! `2.10`.

use std::cmp::Ordering;

/// True for the separators a version is split on.
fn is_sep(c: char) -> bool {
    matches!(c, '.' | '-' | '+' | '~')
}

fn segments(v: &str) -> impl Iterator<Item = &str> {
    v.split(is_sep)
}

fn cmp_segment(a: &str, b: &str) -> Ordering {
    let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (num(a), num(b)) {
        (true, true) => {
            let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        }
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

/// Compares two versions (see the module documentation).
pub fn compare(a: &str, b: &str) -> Ordering {
    let mut sa = segments(a);
    let mut sb = segments(b);
    loop {
        match (sa.next(), sb.next()) {
            (None, None) => return a.cmp(b),
            (Some(_), None) => return Ordering::Greater,
            (None, Some(_)) => return Ordering::Less,
            (Some(x), Some(y)) => match cmp_segment(x, y) {
                Ordering::Equal => continue,
                o => return o,
            },
        }
    }
}

/// True when `prefix` matches `version` on whole segments (an empty prefix matches everything).
pub fn matches_prefix(version: &str, prefix: &str) -> bool {
    if prefix.is_empty() || version == prefix {
        return true;
    }
    version.len() > prefix.len() && version.starts_with(prefix) && version[prefix.len()..].starts_with(is_sep)
}

/// The prefix of versions derived from an inputs hash (`0.0.0-h<12 hex>`).
pub const DERIVED_PREFIX: &str = "0.0.0-h";

/// The default version of a build: `0.0.0-h` and the first 12 hex digits of its inputs hash.
/// It sorts below every release-style version (`0.0.1`, `1.0`); among themselves, derived
/// versions are ordered by build time when resolving (see `resolve`).
pub fn derived(inputs_hash_hex: &str) -> String {
    format!("{DERIVED_PREFIX}{}", &inputs_hash_hex[..12.min(inputs_hash_hex.len())])
}

/// True for versions made by [`derived`].
pub fn is_derived(v: &str) -> bool {
    v.strip_prefix(DERIVED_PREFIX).is_some_and(|h| h.len() == 12 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Checks a version given on the command line (`-v`, `NAME@VERSION`), with the Jailfile's
/// rules: `A-Z a-z 0-9 . _ + -`, starting with a letter or digit.
pub fn validate(v: &str) -> Result<(), String> {
    jailfile_grammar::validate_version(v).map_err(|e| e.to_string())?;
    if v.len() > 128 {
        return Err(format!("version '{}...' is longer than 128 characters", &v[..32]));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_order() {
        assert_eq!(compare("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare("1.9", "1.10"), Ordering::Less);
        assert_eq!(compare("2.0", "10.0"), Ordering::Less);
        assert_eq!(compare("1.0.1", "1.0"), Ordering::Greater);
        assert_eq!(compare("1.0.1", "1.0.beta"), Ordering::Greater);
        assert_eq!(compare("1.0-2", "1.0-10"), Ordering::Less);
        assert_eq!(compare("1.2", "1.2"), Ordering::Equal);
        assert_ne!(compare("1.01", "1.1"), Ordering::Equal);
        assert_eq!(compare("0.0.0-habc", "0.0.1"), Ordering::Less);
        assert_eq!(compare("a", "b"), Ordering::Less);
    }

    #[test]
    fn total_order_sorts() {
        let mut v = vec!["1.10", "1.9", "1.0", "2", "1.0.1", "0.0.0-h0123456789ab", "1.9.1"];
        v.sort_by(|a, b| compare(a, b));
        assert_eq!(v, ["0.0.0-h0123456789ab", "1.0", "1.0.1", "1.9", "1.9.1", "1.10", "2"]);
    }

    #[test]
    fn prefixes() {
        assert!(matches_prefix("2.1", "2.1"));
        assert!(matches_prefix("2.1.3", "2.1"));
        assert!(matches_prefix("2.1-rc1", "2.1"));
        assert!(!matches_prefix("2.10", "2.1"));
        assert!(!matches_prefix("2", "2.1"));
        assert!(matches_prefix("anything", ""));
    }

    #[test]
    fn derived_versions() {
        let d = derived("0123456789abcdef0123");
        assert_eq!(d, "0.0.0-h0123456789ab");
        assert!(is_derived(&d));
        assert!(!is_derived("0.0.0-hxyz"));
        assert!(validate(&d).is_ok());
    }

    #[test]
    fn validation() {
        assert!(validate("1.0").is_ok());
        assert!(validate("").is_err());
        assert!(validate("-1").is_err());
        assert!(validate("1/2").is_err());
        assert!(validate("1 2").is_err());
    }
}
