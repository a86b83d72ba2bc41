//! What a plain (unquoted) scalar means, and which strings must be quoted to keep meaning the same.
//!
//! Reading follows kubectl: `sigs.k8s.io/yaml` decodes with a go-yaml v2 fork, which resolves plain
//! scalars by YAML 1.1 rules (`on`/`yes`/`y` are booleans, `0400` is octal, `_` is ignored in
//! numbers) but keeps timestamps and sexagesimal values such as `12:30` as strings. Writing is
//! stricter: a string is left plain only when go-yaml v2, the YAML 1.1 type repository (PyYAML,
//! Ruby) and the YAML 1.2 core schema all read it back as that same string.

/// The value of a plain scalar, as kubectl reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plain {
    /// `~`, `null`, `Null`, `NULL` or nothing.
    Null,
    /// `y|yes|true|on` and `n|no|false|off`, in lower, capitalised or upper case.
    Bool(bool),
    /// A signed integer (decimal, `0x` hex, `0`/`0o` octal, `0b` binary).
    Int(i64),
    /// An integer above `i64::MAX`.
    UInt(u64),
    /// A float (`1.5`, `1e3`, `.5`); `.inf` and `.nan` too, though JSON cannot carry them.
    Float(f64),
    /// Anything else: the text itself.
    Str,
}

const TRUE_WORDS: [&str; 11] = [
    "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
];
const FALSE_WORDS: [&str; 11] = [
    "n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
];
const NULL_WORDS: [&str; 5] = ["", "~", "null", "Null", "NULL"];

/// Resolves a plain scalar the way go-yaml v2 does when decoding into `interface{}`.
pub(crate) fn resolve_plain(s: &str) -> Plain {
    if NULL_WORDS.contains(&s) {
        return Plain::Null;
    }
    if TRUE_WORDS.contains(&s) {
        return Plain::Bool(true);
    }
    if FALSE_WORDS.contains(&s) {
        return Plain::Bool(false);
    }
    match s {
        ".nan" | ".NaN" | ".NAN" => return Plain::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Plain::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Plain::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match s.as_bytes()[0] {
        // go-yaml's '.' hint: strconv.ParseFloat on the text as it is.
        b'.' => {
            if is_go_float(s) {
                if let Some(f) = go_parse_float(s) {
                    return Plain::Float(f);
                }
            }
            Plain::Str
        }
        b'0'..=b'9' | b'+' | b'-' => {
            // go-yaml v2 drops every underscore, then tries ParseInt(base 0), ParseUint, and a
            // float pattern, in that order.
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            if let Some(n) = go_parse_int(&plain) {
                return n;
            }
            if is_go_float(&plain) {
                if let Some(f) = go_parse_float(&plain) {
                    return Plain::Float(f);
                }
            }
            Plain::Str
        }
        _ => Plain::Str,
    }
}

/// Go's `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint` for values above `i64::MAX`.
/// Go's `strconv.ParseFloat` as go-yaml uses it: a value beyond the float64 range is an error
/// there (so the scalar stays a string: `1e400`), an underflow is not (`1e-400` is 0).
fn go_parse_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

fn go_parse_int(s: &str) -> Option<Plain> {
    let (negative, signed, rest) = match s.as_bytes().first()? {
        b'-' => (true, true, &s[1..]),
        b'+' => (false, true, &s[1..]),
        _ => (false, false, s),
    };
    let lower = rest.to_ascii_lowercase();
    let (radix, digits) = if rest.len() >= 3 && lower.starts_with("0x") {
        (16, &rest[2..])
    } else if rest.len() >= 3 && lower.starts_with("0o") {
        (8, &rest[2..])
    } else if rest.len() >= 3 && lower.starts_with("0b") {
        (2, &rest[2..])
    } else if let Some(octal) = rest.strip_prefix('0') {
        (8, octal)
    } else {
        (10, rest)
    };
    if rest.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = if digits.is_empty() {
        0
    } else {
        u128::from_str_radix(digits, radix).ok()?
    };
    let value = if negative {
        -i128::try_from(magnitude).ok()?
    } else {
        i128::try_from(magnitude).ok()?
    };
    if let Ok(v) = i64::try_from(value) {
        return Some(Plain::Int(v));
    }
    // ParseUint takes no sign.
    match u64::try_from(value) {
        Ok(v) if !signed => Some(Plain::UInt(v)),
        _ => None,
    }
}

/// go-yaml v2's float pattern: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_go_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => digits(frac),
        Some((int, frac)) => digits(int) && (frac.is_empty() || digits(frac)),
        None => digits(mantissa),
    };
    let exponent_ok = match exponent {
        None => true,
        Some(e) => digits(e.strip_prefix(['-', '+']).unwrap_or(e)),
    };
    mantissa_ok && exponent_ok
}

/// Whether some YAML 1.1 or 1.2 reader could take this plain text for something other than a
/// string: the words above, anything numeric-looking (ints and floats in every base, with `_`,
/// sexagesimal `12:30`, `.5`, `.inf`), timestamps (`2024-01-01`), and `<<` and `=`. Errs on the
/// side of quoting: a needless quote changes nothing.
pub(crate) fn may_resolve_to_non_string(s: &str) -> bool {
    if resolve_plain(s) != Plain::Str {
        return true;
    }
    if matches!(s, "<<" | "=") {
        return true;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    if matches!(lower.as_str(), ".inf" | ".nan" | "inf" | "nan") {
        return true;
    }
    let first = unsigned.as_bytes().first().copied();
    let numeric_start = match first {
        Some(b'0'..=b'9') => true,
        Some(b'.') => unsigned.as_bytes().get(1).is_some_and(u8::is_ascii_digit) || unsigned == ".",
        _ => false,
    };
    // Ints and floats of YAML 1.1 (all bases, sexagesimal, `_`) and 1.2 use only these characters.
    let numeric_chars = unsigned
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b"_.:xXoObB+-".contains(&b));
    if numeric_start && numeric_chars {
        return true;
    }
    // YAML 1.1 timestamps start with a four-digit year and a dash.
    let b = s.as_bytes();
    b.len() >= 5 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_scalars_resolve_as_kubectl_reads_them() {
        let cases: &[(&str, Plain)] = &[
            ("", Plain::Null),
            ("~", Plain::Null),
            ("null", Plain::Null),
            ("NULL", Plain::Null),
            ("on", Plain::Bool(true)),
            ("On", Plain::Bool(true)),
            ("ON", Plain::Bool(true)),
            ("yes", Plain::Bool(true)),
            ("y", Plain::Bool(true)),
            ("Y", Plain::Bool(true)),
            ("True", Plain::Bool(true)),
            ("off", Plain::Bool(false)),
            ("NO", Plain::Bool(false)),
            ("n", Plain::Bool(false)),
            ("false", Plain::Bool(false)),
            ("0400", Plain::Int(256)),
            ("0755", Plain::Int(493)),
            ("0o17", Plain::Int(15)),
            ("0x1F", Plain::Int(31)),
            ("-0x1F", Plain::Int(-31)),
            ("0b101", Plain::Int(5)),
            ("0", Plain::Int(0)),
            ("-0", Plain::Int(0)),
            ("+12", Plain::Int(12)),
            ("1_000", Plain::Int(1000)),
            ("42", Plain::Int(42)),
            ("9223372036854775807", Plain::Int(i64::MAX)),
            ("18446744073709551615", Plain::UInt(u64::MAX)),
            ("08", Plain::Float(8.0)),
            ("1.5", Plain::Float(1.5)),
            ("1e3", Plain::Float(1000.0)),
            (".5", Plain::Float(0.5)),
            ("+.5", Plain::Float(0.5)),
            ("1.", Plain::Float(1.0)),
            ("12:30", Plain::Str),
            ("2024-01-01", Plain::Str),
            ("10m", Plain::Str),
            ("1Gi", Plain::Str),
            ("0x", Plain::Str),
            ("-", Plain::Str),
            ("1.2.3", Plain::Str),
            ("yep", Plain::Str),
            ("oN", Plain::Str),
            ("<<", Plain::Str),
            ("nginx:1.25", Plain::Str),
        ];
        for (text, want) in cases {
            assert_eq!(&resolve_plain(text), want, "{text:?}");
        }
        assert!(matches!(resolve_plain(".inf"), Plain::Float(f) if f.is_infinite()));
        assert!(matches!(resolve_plain(".NaN"), Plain::Float(f) if f.is_nan()));
    }

    #[test]
    fn strings_any_reader_could_retype_are_flagged() {
        for s in [
            "",
            "~",
            "null",
            "on",
            "yes",
            "NO",
            "off",
            "y",
            "n",
            "true",
            "12:30",
            "190:20:30",
            "1:30.5",
            "2024-01-01",
            "2001-12-14t21:59:43.10-05:00",
            "0755",
            "0400",
            "080",
            "42",
            "-1",
            "+1",
            "1_000",
            "0x_1F",
            "0b1",
            "0o17",
            "1.5",
            "1e3",
            "1E+3",
            "1.2.3",
            ".5",
            ".",
            "-.inf",
            ".NaN",
            "<<",
            "=",
        ] {
            assert!(may_resolve_to_non_string(s), "{s:?} must be quoted");
        }
        for s in [
            "nginx",
            "10m",
            "1Gi",
            "100Mi",
            "v1",
            "nginx:1.25",
            "--verbose",
            "deadbeef",
            "yep",
            "oN",
            "Null-ish",
            "/deputy/bin",
            "k8s-deputy.io/inject",
            "app.kubernetes.io/name",
            "a b",
            "1 2",
        ] {
            assert!(!may_resolve_to_non_string(s), "{s:?} needs no quotes");
        }
    }
}
