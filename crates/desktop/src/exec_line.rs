//! The `Exec=` value of a desktop entry: split into arguments by the specification's quoting
//! rules, and written back with the realm launcher in front.

use crate::error::ExecProblem;

/// One argument of an `Exec=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// An unquoted argument as written (it may hold field codes such as `%f` or `%%`).
    Plain(String),
    /// A quoted argument, its quotes and escapes removed.
    Quoted(String),
}

/// Characters that force an argument to be quoted.
const RESERVED: &[char] = &[
    ' ', '\t', '\n', '"', '\'', '\\', '>', '<', '~', '|', '&', ';', '$', '*', '?', '#', '(', ')',
    '`',
];

/// Field codes the specification deprecates (removed), and `%k` (the entry's own path, which
/// means nothing once it is published elsewhere).
const DROPPED_CODES: &[&str] = &["%d", "%D", "%n", "%N", "%v", "%m", "%k"];

/// Splits an `Exec=` value (already string-unescaped) into arguments.
pub fn split(exec: &str) -> Result<Vec<Arg>, ExecProblem> {
    let mut args = Vec::new();
    let mut chars = exec.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '"' {
            chars.next();
            let mut arg = String::new();
            loop {
                match chars.next() {
                    None => return Err(ExecProblem::Unclosed),
                    Some('"') => break,
                    Some('\\') => match chars.next() {
                        Some(c @ ('"' | '`' | '$' | '\\')) => arg.push(c),
                        _ => {
                            return Err(ExecProblem::BadEscape);
                        }
                    },
                    Some(c) => arg.push(c),
                }
            }
            if chars.peek().is_some_and(|c| *c != ' ') {
                return Err(ExecProblem::NoSpaceAfterQuote);
            }
            args.push(Arg::Quoted(arg));
        } else {
            let mut arg = String::new();
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                if RESERVED.contains(&c) {
                    return Err(ExecProblem::Reserved(c));
                }
                arg.push(c);
                chars.next();
            }
            args.push(Arg::Plain(arg));
        }
    }
    if args.is_empty() {
        return Err(ExecProblem::Empty);
    }
    Ok(args)
}

/// Drops the deprecated field codes and `%k`; checks that the rest are valid.
pub fn clean_codes(args: Vec<Arg>) -> Result<Vec<Arg>, ExecProblem> {
    let mut out = Vec::new();
    for arg in args {
        let Arg::Plain(text) = arg else {
            out.push(arg);
            continue;
        };
        let mut kept = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                kept.push(c);
                continue;
            }
            let code = chars.next().ok_or(ExecProblem::TrailingPercent)?;
            let both = format!("%{code}");
            if DROPPED_CODES.contains(&both.as_str()) {
                continue;
            }
            if !"fFuUic%".contains(code) {
                return Err(ExecProblem::UnknownCode(both));
            }
            kept.push_str(&both);
        }
        if !kept.is_empty() {
            out.push(Arg::Plain(kept));
        }
    }
    if out.is_empty() {
        return Err(ExecProblem::OnlyCodes);
    }
    Ok(out)
}

/// The program an `Exec=` line runs (its first argument, without `%%` escapes).
pub fn program(args: &[Arg]) -> String {
    match &args[0] {
        Arg::Plain(p) => p.replace("%%", "%"),
        Arg::Quoted(p) => p.clone(),
    }
}

/// Quotes one literal argument if it needs it (`%` is doubled: it is not a field code).
pub fn quote(literal: &str) -> String {
    let text = literal.replace('%', "%%");
    if !text.is_empty() && !text.contains(RESERVED) {
        return text;
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        if matches!(c, '"' | '`' | '$' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Writes arguments back as an `Exec=` value (before string escaping).
pub fn join(args: &[Arg]) -> String {
    args.iter()
        .map(|a| match a {
            Arg::Plain(p) => p.clone(),
            Arg::Quoted(q) => {
                let mut out = String::from("\"");
                for c in q.chars() {
                    if matches!(c, '"' | '`' | '$' | '\\') {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
                out
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> Arg {
        Arg::Plain(s.into())
    }

    #[test]
    fn splits_plain_and_quoted_arguments() {
        assert_eq!(
            split("firefox  %u").unwrap(),
            vec![plain("firefox"), plain("%u")]
        );
        assert_eq!(
            split(r#""/opt/My App/run" --title "a \"b\" \$c \\d" %F"#).unwrap(),
            vec![
                Arg::Quoted("/opt/My App/run".into()),
                plain("--title"),
                Arg::Quoted(r#"a "b" $c \d"#.into()),
                plain("%F"),
            ]
        );
    }

    #[test]
    fn bad_exec_lines_are_refused() {
        for bad in [
            "",
            "   ",
            "a \"b",
            "a;b",
            "a \"b\"c",
            "sh -c 'x'",
            r#"a "\q""#,
        ] {
            assert!(split(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn deprecated_codes_and_k_are_dropped_and_unknown_ones_refused() {
        let args = split("app %k --x=%d %f %%").unwrap();
        assert_eq!(
            clean_codes(args).unwrap(),
            vec![plain("app"), plain("--x="), plain("%f"), plain("%%")]
        );
        assert!(clean_codes(split("app %z").unwrap()).is_err());
        assert!(clean_codes(split("%k").unwrap()).is_err());
    }

    #[test]
    fn quoting_round_trips() {
        for literal in [
            "plain",
            "with space",
            "a\"b",
            "$HOME",
            "100%",
            "back\\slash",
            "",
        ] {
            let line = format!("prog {}", quote(literal));
            let args = split(&line).unwrap();
            let back = match &args[1] {
                Arg::Plain(p) => p.replace("%%", "%"),
                Arg::Quoted(q) => q.replace("%%", "%"),
            };
            assert_eq!(back, literal, "{line}");
        }
        let args = split(r#""/opt/a b/run" %U"#).unwrap();
        assert_eq!(split(&join(&args)).unwrap(), args);
        assert_eq!(program(&args), "/opt/a b/run");
    }
}
