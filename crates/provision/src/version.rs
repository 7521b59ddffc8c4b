//! Version comparison as systemd (and systemd-sysupdate) orders versions: the UAPI.10 Version
//! Format Specification, as `systemd-analyze compare-versions` implements it.
//!
//! Characters other than ASCII letters, digits and `~-^.` are separators and skipped; `~` sorts
//! before everything, even the end of the string; then a string that has ended is the older;
//! `-`, `^` and `.` each make the string they start older than one they do not start; runs of
//! digits compare as numbers (leading zeros ignored; digits are newer than letters in their
//! place); runs of letters compare byte by byte (`A` < `a`), the longer run being newer.

use std::cmp::Ordering;

fn is_valid(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'~' | b'-' | b'^' | b'.')
}

/// Skips the separators at the start of `s`.
fn skip_separators(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|c| !is_valid(**c)).count();
    &s[n..]
}

/// How `a` and `b` order when one of them starts with `mark` (the one that does is older);
/// `None` when neither does, and both skipped when both do.
fn marked<'a>(mark: u8, a: &mut &'a [u8], b: &mut &'a [u8]) -> Option<Ordering> {
    let (ma, mb) = (a.first() == Some(&mark), b.first() == Some(&mark));
    match (ma, mb) {
        (false, false) => None,
        (true, true) => {
            *a = &a[1..];
            *b = &b[1..];
            None
        }
        // The string starting with the mark is the older one.
        _ => Some(mb.cmp(&ma)),
    }
}

/// Splits off the leading run of bytes satisfying `f`.
fn run(s: &[u8], f: impl Fn(&u8) -> bool) -> (&[u8], &[u8]) {
    let n = s.iter().take_while(|c| f(c)).count();
    s.split_at(n)
}

/// Compares two versions as systemd does (`systemd-analyze compare-versions A B`).
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        a = skip_separators(a);
        b = skip_separators(b);
        // `~` (pre-releases) is older than anything, even the end of the string.
        match (a.first() == Some(&b'~'), b.first() == Some(&b'~')) {
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (true, true) => {
                a = &a[1..];
                b = &b[1..];
            }
            (false, false) => {}
        }
        // At the end of one of them: the longer one is newer.
        if a.is_empty() || b.is_empty() {
            return (!a.is_empty()).cmp(&!b.is_empty());
        }
        for mark in [b'-', b'^', b'.'] {
            if let Some(o) = marked(mark, &mut a, &mut b) {
                return o;
            }
        }
        let digits_first =
            a.first().is_some_and(u8::is_ascii_digit) || b.first().is_some_and(u8::is_ascii_digit);
        let o = if digits_first {
            let (na, ra) = run(a, u8::is_ascii_digit);
            let (nb, rb) = run(b, u8::is_ascii_digit);
            a = ra;
            b = rb;
            // A run of digits is newer than none (a letter where the other has a digit).
            let (ta, tb) = (trim_zeros(na), trim_zeros(nb));
            (!na.is_empty())
                .cmp(&!nb.is_empty())
                .then(ta.len().cmp(&tb.len()))
                .then(ta.cmp(tb))
        } else {
            let (la, ra) = run(a, u8::is_ascii_alphabetic);
            let (lb, rb) = run(b, u8::is_ascii_alphabetic);
            a = ra;
            b = rb;
            la.cmp(lb)
        };
        if o != Ordering::Equal {
            return o;
        }
    }
}

fn trim_zeros(d: &[u8]) -> &[u8] {
    let n = d.iter().take_while(|c| **c == b'0').count();
    &d[n..]
}

/// The newest of `versions` (the last of equal ones).
pub fn newest<'a, I: IntoIterator<Item = &'a str>>(versions: I) -> Option<&'a str> {
    versions.into_iter().max_by(|a, b| compare(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    /// The examples of the UAPI.10 specification and of systemd's own tests, each checked
    /// against `systemd-analyze compare-versions` of systemd 252 (see the test below).
    const CASES: &[(&str, &str, Ordering)] = &[
        ("11", "11", Equal),
        ("systemd-123", "systemd-123", Equal),
        ("bar-123", "foo-123", Less),
        ("123a", "123", Greater),
        ("123.a", "123", Greater),
        ("123.a", "123.b", Less),
        ("123a", "123.a", Greater),
        ("A", "a", Less),
        ("", "0", Less),
        ("0.", "0", Greater),
        ("0.0", "0", Greater),
        ("~1", "", Less),
        ("0", "~", Greater),
        ("1_2_3", "1.3.3", Greater),
        ("1+", "1", Equal),
        ("+1", "1", Equal),
        ("1+", "1.2", Less),
        ("1+2+3", "1.3.3", Greater),
        ("123~rc1", "123", Less),
        ("123-a", "123", Greater),
        ("123^1", "123", Greater),
        ("123^1", "123.1", Less),
        ("123-a1", "123-3", Less),
        ("123.a", "123-1", Greater),
        ("1.0", "1.0-1", Less),
        ("0001", "002", Less),
        ("122.9", "123~rc1", Less),
        ("123-3.1", "123^patch1", Less),
        ("1.10", "1.9", Greater),
        ("v0.0.1", "v0.0.2", Less),
        ("1.01", "1.1", Equal),
        ("2", "10", Less),
        ("0", "a", Greater),
        ("1", "a", Greater),
        ("ab", "abb", Less),
        ("abc", "abb", Greater),
        ("5.5p1", "5.5p10", Less),
        ("6.0.rc1", "6.0", Greater),
        ("10b2", "10a1", Greater),
    ];

    #[test]
    fn versions_compare_as_systemd_documents() {
        for (a, b, o) in CASES {
            assert_eq!(compare(a, b), *o, "{a:?} vs {b:?}");
            assert_eq!(compare(b, a), o.reverse(), "{b:?} vs {a:?}");
        }
    }

    /// systemd-analyze (systemd 252 and newer) agrees on every case (the list above was not
    /// written from this implementation's answers).
    #[test]
    fn systemd_analyze_agrees() {
        let probe = std::process::Command::new("systemd-analyze")
            .args(["compare-versions", "1", "2"])
            .output();
        assert!(
            probe.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("1 < 2")),
            "systemd-analyze compare-versions is missing: install systemd 252 or newer \
             (Debian's systemd package); this test compares against it"
        );
        // And on a few hundred generated pairs of the characters that matter.
        let mut seed = 0x2545_f491_u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let alphabet = b"0019aAb.-~^_";
        let mut word = || -> String {
            let n = next() % 6;
            (0..n)
                .map(|_| alphabet[(next() as usize) % alphabet.len()] as char)
                .collect()
        };
        let generated: Vec<(String, String)> = (0..300).map(|_| (word(), word())).collect();
        let pairs = CASES
            .iter()
            .map(|(a, b, _)| (a.to_string(), b.to_string()))
            .chain(generated);
        for (a, b) in pairs {
            let (a, b) = (a.as_str(), b.as_str());
            let out = std::process::Command::new("systemd-analyze")
                .args(["compare-versions", "--", a, b])
                .output()
                .unwrap();
            // Its exit status differs between versions; its line does not: `A < B`.
            let line = String::from_utf8_lossy(&out.stdout).into_owned();
            let theirs = if line.contains(" < ") {
                Less
            } else if line.contains(" == ") {
                Equal
            } else if line.contains(" > ") {
                Greater
            } else {
                panic!("systemd-analyze said {line:?} for {a:?} {b:?}")
            };
            assert_eq!(compare(a, b), theirs, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn the_newest_is_picked() {
        assert_eq!(newest(["1.9", "1.10", "1.10~rc1"]), Some("1.10"));
        assert_eq!(newest(Vec::<&str>::new()), None);
    }
}
