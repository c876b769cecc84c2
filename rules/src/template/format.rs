//! Prometheus's humanize functions and Go's value formatting: `strconv.FormatFloat`'s
//! `%g` / `%e`, `strconv.Quote`, and `fmt.Sprintf` for `printf`.

use std::fmt::Write as _;

use super::exec::{Val, format_v};

/// Prometheus's `humanize`: SI prefixes with four significant digits (`1.235M`, `12.35m`).
pub fn humanize(v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus's `humanize1024`: binary prefixes (`1ki`, `1.5Mi`).
pub fn humanize_1024(v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, Some(4)))
}

/// Prometheus's `humanizeDuration` of seconds (`1m 30s`, `1d 2h 0m 0s`, `1.5s`, `12ms`).
pub fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let (sign, v) = if v < 0.0 { ("-", -v) } else { ("", v) };
        let d = v as i64;
        let (seconds, minutes, hours, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {hours}h {minutes}m {seconds}s");
        }
        if hours != 0 {
            return format!("{sign}{hours}h {minutes}m {seconds}s");
        }
        if minutes != 0 {
            return format!("{sign}{minutes}m {seconds}s");
        }
        return format!("{sign}{}s", format_g(v, Some(4)));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, Some(4)))
}

/// Prometheus's `humanizePercentage` of a ratio (`12.34%`).
pub fn humanize_percentage(v: f64) -> String {
    format!("{}%", format_g(v * 100.0, Some(4)))
}

/// Prometheus's `humanizeTimestamp` of Unix seconds, printed like Go's `time.Time` in UTC
/// (`2023-01-02 03:04:05.123 +0000 UTC`), at millisecond precision.
pub fn humanize_timestamp(v: f64) -> Result<String, String> {
    if v.is_nan() || v.is_infinite() {
        return Ok(format_g(v, Some(4)));
    }
    let ns = v * 1e9;
    if ns > i64::MAX as f64 || ns < i64::MIN as f64 {
        return Err(format!(
            "{} cannot be represented as a nanoseconds timestamp since it overflows int64",
            format_g(v, None)
        ));
    }
    let ms = (ns as i64).div_euclid(1_000_000);
    Ok(format_utc(ms))
}

/// Formats Unix milliseconds like Go's `time.Time.String()` in UTC.
fn format_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Significant decimal digits an `f64` can have: its exact expansion ends within 767 of them, so
/// asking for more only adds zeros. Rust's formatter also refuses a precision above `u16::MAX`
/// with a panic (found by the `template` fuzz target with `%.90883e`).
const MAX_EXACT_DIGITS: usize = 800;

/// Digits after the point an `f64` can have in `%f`: the smallest subnormal has 1,074.
const MAX_EXACT_DECIMALS: usize = 1_100;

/// The decimal digits of `|v|` (no trailing zeros) and the position of the decimal point, for
/// `sig` significant digits or the shortest representation (`None`).
fn decimal_digits(v: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    if v == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        Some(p) => format!("{:.*e}", p.saturating_sub(1).min(MAX_EXACT_DIGITS), v.abs()),
        None => format!("{:e}", v.abs()),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exp + 1)
}

fn special(v: f64, plus: bool) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v == f64::INFINITY {
        Some(if plus { "+Inf" } else { "Inf" }.into())
    } else if v == f64::NEG_INFINITY {
        Some("-Inf".into())
    } else {
        None
    }
}

/// Go's `%e` body for digits: `d.ddde±XX` with `prec` digits after the point.
fn fmt_e(digits: &[u8], dp: i32, prec: usize, upper: bool) -> String {
    let mut s = String::new();
    s.push(*digits.first().unwrap_or(&b'0') as char);
    if prec > 0 {
        s.push('.');
        for i in 1..=prec {
            s.push(*digits.get(i).unwrap_or(&b'0') as char);
        }
    }
    let exp = if digits.is_empty() { 0 } else { dp - 1 };
    s.push(if upper { 'E' } else { 'e' });
    s.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 {
        s.push('0');
    }
    s.push_str(&e.to_string());
    s
}

/// Go's `%f` body for digits with `prec` digits after the point.
fn fmt_f(digits: &[u8], dp: i32, prec: usize) -> String {
    let mut s = String::new();
    if dp > 0 {
        for i in 0..dp as usize {
            s.push(*digits.get(i).unwrap_or(&b'0') as char);
        }
    } else {
        s.push('0');
    }
    if prec > 0 {
        s.push('.');
        for i in 0..prec as i32 {
            let j = dp + i;
            let c = if j < 0 {
                b'0'
            } else {
                *digits.get(j as usize).unwrap_or(&b'0')
            };
            s.push(c as char);
        }
    }
    s
}

/// Go's `%g` (`strconv.FormatFloat(v, 'g', prec, 64)`): `prec` significant digits, or the
/// shortest representation that reads back exactly when `None`. Infinity prints as `+Inf`.
pub fn format_g(v: f64, prec: Option<usize>) -> String {
    format_g_flags(v, prec, true, false)
}

fn format_g_flags(v: f64, prec: Option<usize>, plus_inf: bool, upper: bool) -> String {
    if let Some(s) = special(v, plus_inf) {
        return s;
    }
    let neg = v.is_sign_negative();
    let prec_n = prec.map(|p| p.max(1));
    let (digits, dp) = decimal_digits(v, prec_n);
    let nd = digits.len() as i32;
    let shortest = prec_n.is_none();
    let mut p = prec_n.map_or(nd, |p| p as i32);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    let body = if exp < -4 || exp >= eprec {
        if p > nd {
            p = nd;
        }
        fmt_e(&digits, dp, (p - 1).max(0) as usize, upper)
    } else {
        if p > dp {
            p = nd;
        }
        fmt_f(&digits, dp, (p - dp).max(0) as usize)
    };
    if neg { format!("-{body}") } else { body }
}

/// Go's `strconv.FormatFloat(v, 'E', -1, 64)` (`1E+00`, `6.1E+01`), as promtool prints values.
pub fn format_go_e(v: f64) -> String {
    if let Some(s) = special(v, true) {
        return s;
    }
    let (digits, dp) = decimal_digits(v, None);
    let body = fmt_e(&digits, dp, digits.len().saturating_sub(1), true);
    if v.is_sign_negative() {
        format!("-{body}")
    } else {
        body
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    sharp: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

fn pad(s: String, spec: &Spec, numeric: bool) -> String {
    let Some(w) = spec.width else { return s };
    let n = s.chars().count();
    if n >= w {
        return s;
    }
    let fill = w - n;
    if spec.minus {
        return s + &" ".repeat(fill);
    }
    if spec.zero && numeric {
        let (sign, rest) = match s.chars().next() {
            Some(c @ ('-' | '+' | ' ')) => (c.to_string(), s[1..].to_string()),
            _ => (String::new(), s.clone()),
        };
        return sign + &"0".repeat(fill) + &rest;
    }
    " ".repeat(fill) + &s
}

fn bad_verb(verb: char, v: &Val) -> String {
    match v {
        Val::Nil => format!("%!{verb}(<nil>)"),
        _ => format!("%!{verb}({}={})", v.type_name(), format_v(v)),
    }
}

fn signed(s: String, neg: bool, spec: &Spec) -> String {
    if neg {
        format!("-{s}")
    } else if spec.plus {
        format!("+{s}")
    } else if spec.space {
        format!(" {s}")
    } else {
        s
    }
}

fn format_float_verb(f: f64, verb: char, spec: &Spec) -> String {
    if let Some(s) = special(f, false) {
        let s = if s == "Inf" {
            if spec.plus {
                "+Inf".to_string()
            } else if spec.space {
                " Inf".to_string()
            } else {
                "+Inf".to_string()
            }
        } else {
            s
        };
        // Go pads infinities and NaN with spaces, never zeros.
        let sp = Spec {
            zero: false,
            ..*spec
        };
        return pad(s, &sp, false);
    }
    let neg = f.is_sign_negative();
    let body = match verb {
        'f' | 'F' => {
            let p = spec.prec.unwrap_or(6);
            let exact = p.min(MAX_EXACT_DECIMALS);
            let mut s = format!("{:.*}", exact, f.abs());
            s.extend(std::iter::repeat_n('0', p - exact));
            s
        }
        'e' | 'E' => {
            let p = spec.prec.unwrap_or(6);
            let (digits, dp) = decimal_digits(f, Some(p + 1));
            fmt_e(&digits, dp, p, verb == 'E')
        }
        _ => {
            // 'g', 'G', 'v'
            let s = format_g_flags(f.abs(), spec.prec, false, verb == 'G');
            if spec.sharp {
                s
            } else {
                s.trim_start_matches('+').to_string()
            }
        }
    };
    pad(signed(body, neg, spec), spec, true)
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %q %d %f %F %e %E %g %G %x %X %t %%`
/// with flags, width and precision; wrong types print Go's `%!d(float64=1.5)` forms.
pub(super) fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => spec.sharp = true,
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                if n.unwrap_or(0) > 1_000_000 {
                    // Go's `tooLarge`: a crazy long number swallows the rest of the format,
                    // which then has no verb (found by the `template` fuzz target).
                    chars.by_ref().for_each(drop);
                    return None;
                }
                n = Some(n.unwrap_or(0) * 10 + d as usize);
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        let s = match (verb, arg) {
            ('v', Val::Float(f)) => format_float_verb(*f, 'g', &spec),
            ('v', Val::Int(i)) | ('d', Val::Int(i)) => {
                let body = match spec.prec {
                    Some(p) => {
                        let digits = i.unsigned_abs().to_string();
                        "0".repeat(p.saturating_sub(digits.len())) + &digits
                    }
                    None => i.unsigned_abs().to_string(),
                };
                pad(signed(body, *i < 0, &spec), &spec, spec.prec.is_none())
            }
            ('v' | 's', Val::Str(s)) => {
                let s = match spec.prec {
                    Some(p) => s.chars().take(p).collect(),
                    None => s.clone(),
                };
                pad(s, &spec, false)
            }
            ('v' | 's', Val::Map(_) | Val::Root(_) | Val::Nil) | ('v' | 't', Val::Bool(_)) => {
                pad(format_v(arg), &spec, false)
            }
            ('q', Val::Str(s)) => pad(go_quote(s), &spec, false),
            ('f' | 'F' | 'e' | 'E' | 'g' | 'G', Val::Float(f)) => {
                format_float_verb(*f, verb, &spec)
            }
            ('x' | 'X', Val::Int(i)) => {
                let body = if verb == 'x' {
                    format!("{:x}", i.unsigned_abs())
                } else {
                    format!("{:X}", i.unsigned_abs())
                };
                let body = if spec.sharp {
                    format!("0{verb}{body}")
                } else {
                    body
                };
                pad(signed(body, *i < 0, &spec), &spec, true)
            }
            ('x' | 'X', Val::Str(s)) => {
                let mut h = String::new();
                for b in s.bytes() {
                    if verb == 'x' {
                        let _ = write!(h, "{b:02x}");
                    } else {
                        let _ = write!(h, "{b:02X}");
                    }
                }
                pad(h, &spec, false)
            }
            ('c', Val::Int(i)) => u32::try_from(*i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}')
                .to_string(),
            _ => bad_verb(verb, arg),
        };
        out.push_str(&s);
    }
    if next < args.len() {
        let extra: Vec<String> = args[next..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), format_v(a)))
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_matches_prometheus() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1234567.0, "1.235M"),
            (1000.0, "1k"),
            (999.0, "999"),
            (0.0012, "1.2m"),
            (123.456, "123.5"),
            (1.0, "1"),
            (-1234.0, "-1.234k"),
            (1e30, "1e+06Y"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (12345.0, "12.35k"),
        ];
        for (v, want) in cases {
            assert_eq!(humanize(*v), *want, "humanize({v})");
        }
        assert_eq!(humanize_1024(1024.0), "1ki");
        assert_eq!(humanize_1024(1.5 * 1024.0 * 1024.0), "1.5Mi");
        assert_eq!(humanize_1024(0.5), "0.5");
        assert_eq!(humanize_percentage(0.1234), "12.34%");
        assert_eq!(humanize_percentage(0.5), "50%");
        assert_eq!(humanize_percentage(1.0 / 3.0), "33.33%");
        assert_eq!(humanize_duration(90.0), "1m 30s");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.012), "12ms");
        assert_eq!(humanize_duration(93784.0), "1d 2h 3m 4s");
        assert_eq!(humanize_duration(3600.0), "1h 0m 0s");
        assert_eq!(humanize_duration(-90.0), "-1m 30s");
        assert_eq!(
            humanize_timestamp(0.0).unwrap(),
            "1970-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            humanize_timestamp(1_679_000_000.5).unwrap(),
            "2023-03-16 20:53:20.5 +0000 UTC"
        );
    }

    #[test]
    fn go_float_formats() {
        assert_eq!(format_g(1234567.0, None), "1.234567e+06");
        assert_eq!(format_g(100.0, None), "100");
        assert_eq!(format_g(0.1, None), "0.1");
        assert_eq!(format_g(1e-5, None), "1e-05");
        assert_eq!(format_g(123456.0, None), "123456");
        assert_eq!(format_g(1e21, None), "1e+21");
        assert_eq!(format_g(0.0, Some(4)), "0");
        assert_eq!(format_g(1.0, Some(4)), "1");
        assert_eq!(format_g(1234567.0, Some(4)), "1.235e+06");
        assert_eq!(format_g(-0.5, None), "-0.5");
        assert_eq!(sprintf("%.2f", &[Val::Float(1.23456)]), "1.23");
        assert_eq!(
            sprintf(
                "%5.1f|%-5d|%05d",
                &[Val::Float(2.25), Val::Int(3), Val::Int(-42)]
            ),
            "  2.2|3    |-0042"
        );
        assert_eq!(sprintf("%d", &[Val::Float(1.5)]), "%!d(float64=1.5)");
        assert_eq!(
            sprintf("%s %q", &[Val::Str("a".into()), Val::Str("b\"".into())]),
            "a \"b\\\"\""
        );
        assert_eq!(sprintf("%e", &[Val::Float(1234.5678)]), "1.234568e+03");
        assert_eq!(
            sprintf("%g %v", &[Val::Float(0.000012), Val::Float(2.0)]),
            "1.2e-05 2"
        );
        assert_eq!(sprintf("%d%%", &[Val::Int(5)]), "5%");
        assert_eq!(sprintf("%s", &[]), "%!s(MISSING)");
        assert_eq!(sprintf("x", &[Val::Int(1)]), "x%!(EXTRA int=1)");
        assert_eq!(sprintf("%.1f", &[Val::Float(f64::INFINITY)]), "+Inf");
    }

    #[test]
    fn a_huge_width_or_precision_swallows_the_format_as_go_does() {
        // Found by the `template` fuzz target: the number overflowed `usize`.
        let long = format!("x%0.{}f tail", "1".repeat(40));
        assert_eq!(
            sprintf(&long, &[Val::Float(1.0)]),
            "x%!(NOVERB)%!(EXTRA float64=1)"
        );
        let wide = format!("%{}d", "9".repeat(30));
        assert_eq!(sprintf(&wide, &[]), "%!(NOVERB)");
        assert_eq!(sprintf("%8.3f|", &[Val::Float(1.0)]), "   1.000|");
    }

    #[test]
    fn a_precision_beyond_rusts_formatter_limit_prints_go_zeros_instead_of_panicking() {
        // Found by the `template` fuzz target: `%.90883e` panicked in `format!` ("Formatting
        // argument out of range"; Rust caps precision at u16::MAX, Go allows up to 1e6).
        let e = sprintf("%.90883e", &[Val::Float(0.5)]);
        assert_eq!(e.len(), "5.".len() + 90_883 + "e-01".len());
        assert!(
            e.starts_with("5.000") && e.ends_with("000e-01"),
            "{}",
            &e[..20]
        );
        let f = sprintf("%.70000f", &[Val::Float(0.1)]);
        assert_eq!(f.len(), "0.".len() + 70_000);
        // The exact binary value of 0.1, then zeros.
        assert!(
            f.starts_with("0.1000000000000000055511151231257827"),
            "{}",
            &f[..40]
        );
        assert!(f[1_100..].bytes().all(|b| b == b'0'));
        let g = sprintf("%.70000g", &[Val::Float(0.1)]);
        assert!(
            g.starts_with("0.1000000000000000055511151231257827"),
            "{}",
            &g[..40]
        );
        let d = sprintf("%.70000d", &[Val::Int(-42)]);
        assert_eq!(d.len(), 1 + 70_000);
        assert!(d.starts_with("-000") && d.ends_with("042"));
        assert_eq!(sprintf("%.3d", &[Val::Int(7)]), "007");
    }
}
