//! Table-driven tests of os-release parsing, lookup and extension matching.

use std::collections::HashMap;
use std::io;

use super::*;
use crate::error::Problem;

fn parse(text: &str) -> OsRelease {
    OsRelease::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn values_table() {
    let rows: &[(&str, &str)] = &[
        ("A=foo", "foo"),
        ("A=foo\n", "foo"),
        ("A=\"foo bar\"", "foo bar"),
        ("A='foo bar'", "foo bar"),
        ("A='a\\b\"c'", "a\\b\"c"),
        ("A=\"a\\\"b\\\\c\\`d\\$e\"", "a\"b\\c`d$e"),
        ("A=\"a\\nb\"", "a\\nb"),
        ("A=\"line\\\ncontinued\"", "linecontinued"),
        ("A=foo\\ bar", "foo bar"),
        ("A=a\\\nb", "ab"),
        ("A=", ""),
        ("A=\"\"", ""),
        ("A=foo   ", "foo"),
        ("A=\"foo \"  ", "foo "),
        ("A=  foo", "foo"),
        ("A=foo bar", "foo bar"),
        ("A=\"foo\"bar'baz'", "foobarbaz"),
        ("A=\"multi\nline\"", "multi\nline"),
        ("A=foo\r\n", "foo"),
        ("\u{feff}A=bom", "bom"),
        ("  A = spaced", "spaced"),
        ("A=ünïcödé", "ünïcödé"),
    ];
    for (text, want) in rows {
        assert_eq!(parse(text).get("A"), Some(*want), "{text:?}");
    }
}

#[test]
fn comments_blank_lines_order_and_repeats() {
    let text = "# comment\n\n; other\nNAME=\"Debian GNU/Linux\"\n   \nID=debian\n  # indented\nID=ubuntu\nVERSION_ID=\"12\"\n";
    let r = parse(text);
    let keys: Vec<&str> = r.entries().map(|(k, _)| k).collect();
    assert_eq!(keys, ["NAME", "ID", "ID", "VERSION_ID"]);
    assert_eq!(r.id(), Some("ubuntu"), "the last assignment wins");
    assert_eq!(r.name(), Some("Debian GNU/Linux"));
    assert_eq!(r.version_id(), Some("12"));
    assert!(r.pretty_name().is_none());
}

#[test]
fn errors_name_the_line() {
    let rows: &[(&str, usize, Problem)] = &[
        (
            "A=1\nnot an assignment\n",
            2,
            Problem::MissingEquals("not an assignment".into()),
        ),
        ("A=1\n\n=foo\n", 3, Problem::MissingKey("=foo".into())),
        ("1A=foo", 1, Problem::BadKey("1A".into())),
        ("A-B=foo", 1, Problem::BadKey("A-B".into())),
        (
            "A=1\nB=\"open\nC=2\n",
            2,
            Problem::UnterminatedQuote("double"),
        ),
        ("B='open", 1, Problem::UnterminatedQuote("single")),
    ];
    for (text, line, problem) in rows {
        match OsRelease::parse(text) {
            Err(Error::Syntax {
                line: l,
                problem: p,
                ..
            }) => {
                assert_eq!((l, &p), (*line, problem), "{text:?}")
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let e = OsRelease::parse("oops")
        .unwrap_err()
        .in_file("/etc/os-release");
    assert_eq!(
        e.to_string(),
        "/etc/os-release: line 1: 'oops' is not an assignment (missing '=')"
    );
}

#[test]
fn accessors() {
    let r = parse(
        "ID=fedora\nID_LIKE=\"rhel  centos\"\nPORTABLE_PREFIXES=\"foo bar\tbaz\"\nSYSEXT_LEVEL=2\nARCHITECTURE=x86-64\nIMAGE_ID=img\nIMAGE_VERSION=3\nBUILD_ID=b\nVARIANT_ID=v\nVERSION=\"38 (x)\"\nVERSION_CODENAME=c\nPORTABLE_PRETTY_NAME=\"Foo\"\n",
    );
    assert_eq!(r.id_like(), ["rhel", "centos"]);
    assert_eq!(r.portable_prefixes(), ["foo", "bar", "baz"]);
    assert_eq!(r.sysext_level(), Some("2"));
    assert_eq!(r.architecture(), Some("x86-64"));
    assert_eq!(
        (r.image_id(), r.image_version(), r.build_id()),
        (Some("img"), Some("3"), Some("b"))
    );
    assert_eq!(
        (r.variant_id(), r.version(), r.version_codename()),
        (Some("v"), Some("38 (x)"), Some("c"))
    );
    assert_eq!(r.portable_pretty_name(), Some("Foo"));
    assert!(parse("").portable_prefixes().is_empty());
    assert!(parse("ID=").id().is_none(), "empty values count as unset");
}

#[test]
fn to_text_round_trips() {
    let mut r = OsRelease::from_entries([
        ("ID", "debian"),
        ("PRETTY_NAME", "Debian \"GNU\"/Linux $x `y` \\z"),
        ("EMPTY", ""),
        ("MULTI", "a\nb"),
    ]);
    r.set("VERSION_ID", "12");
    r.set("ID", "foo");
    let text = r.to_text();
    assert!(
        text.starts_with("ID=foo\nPRETTY_NAME=\"Debian \\\"GNU\\\"/Linux \\$x \\`y\\` \\\\z\"\n")
    );
    assert_eq!(OsRelease::parse(&text).unwrap(), r);
}

fn reader(files: &[(&str, &str)]) -> impl Fn(&str) -> io::Result<Option<String>> {
    let map: HashMap<String, String> = files
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |p: &str| Ok(map.get(p).cloned())
}

#[test]
fn load_prefers_etc() {
    let both = reader(&[
        ("/etc/os-release", "ID=etc\n"),
        ("/usr/lib/os-release", "ID=usr\n"),
    ]);
    let r = load(both).unwrap();
    assert_eq!((r.id(), r.path()), (Some("etc"), Some("/etc/os-release")));
    let usr = reader(&[("/usr/lib/os-release", "ID=usr\n")]);
    assert_eq!(load(usr).unwrap().path(), Some("/usr/lib/os-release"));
    assert!(matches!(load(reader(&[])), Err(Error::OsReleaseMissing)));
    let broken = reader(&[("/etc/os-release", "ID=x\nbad line\n")]);
    let e = load(broken).unwrap_err();
    assert_eq!(
        e.to_string(),
        "/etc/os-release: line 2: 'bad line' is not an assignment (missing '=')"
    );
    let failing = |_: &str| -> io::Result<Option<String>> { Err(io::Error::other("boom")) };
    assert_eq!(
        load(failing).unwrap_err().to_string(),
        "reading /etc/os-release: boom"
    );
}

#[test]
fn load_this_machine() {
    let read = |p: &str| match std::fs::read_to_string(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    };
    let r = load(read).expect("this machine's os-release parses");
    assert!(r.id().is_some(), "{r:?}");
}

#[test]
fn extension_paths() {
    assert_eq!(
        extension_release_path(ExtensionKind::Sysext, "app").unwrap(),
        "/usr/lib/extension-release.d/extension-release.app"
    );
    assert_eq!(
        extension_release_path(ExtensionKind::Confext, "app").unwrap(),
        "/etc/extension-release.d/extension-release.app"
    );
    for bad in ["", "a/b", ".hidden", "a\nb"] {
        assert!(
            extension_release_path(ExtensionKind::Sysext, bad).is_err(),
            "{bad:?}"
        );
    }
    assert_eq!(strip_image_version("app0_1.0"), "app0");
    assert_eq!(strip_image_version("app0"), "app0");
    let read = reader(&[(
        "/usr/lib/extension-release.d/extension-release.app0",
        "ID=_any\n",
    )]);
    let r = load_extension_release(&read, ExtensionKind::Sysext, "app0_1.0").unwrap();
    assert_eq!(r.id(), Some("_any"));
    let e = load_extension_release(&read, ExtensionKind::Sysext, "other").unwrap_err();
    assert!(matches!(e, Error::ExtensionReleaseMissing { .. }), "{e:?}");
}

#[test]
fn extension_matching_table() {
    let host = parse("ID=debian\nID_LIKE=ubuntu\nVERSION_ID=12\nSYSEXT_LEVEL=1.0\n");
    let rolling = parse("ID=arch\n");
    let no_level = parse("ID=debian\nVERSION_ID=12\n");
    let check = |host, scope, ext: &str| {
        ExtensionCheck {
            kind: ExtensionKind::Sysext,
            scope,
            host,
            architecture: Some("x86-64"),
        }
        .check("ext", &parse(ext))
    };
    use Scope::*;
    let rows: &[(&OsRelease, Scope, &str, bool)] = &[
        (&host, System, "ID=debian\nSYSEXT_LEVEL=1.0\n", true),
        (&host, System, "ID=debian\nSYSEXT_LEVEL=2\n", false),
        (&host, System, "ID=debian\nVERSION_ID=11\n", false),
        (&host, System, "ID=debian\nVERSION_ID=12\n", true),
        (&host, System, "ID=debian\n", false),
        (&host, System, "ID=ubuntu\nVERSION_ID=12\n", true),
        (&host, System, "ID=fedora\nVERSION_ID=12\n", false),
        (&host, System, "ID=_any\n", true),
        (&host, System, "VERSION_ID=12\n", false),
        (&host, System, "", false),
        (&host, Portable, "ID=_any\n", true),
        (&host, Initrd, "ID=_any\n", false),
        (&host, Initrd, "ID=_any\nSYSEXT_SCOPE=initrd\n", true),
        (&host, Portable, "ID=_any\nSYSEXT_SCOPE=system\n", false),
        (&host, System, "ID=_any\nARCHITECTURE=arm64\n", false),
        (&host, System, "ID=_any\nARCHITECTURE=x86-64\n", true),
        (&host, System, "ID=_any\nARCHITECTURE=_any\n", true),
        (&rolling, System, "ID=arch\n", true),
        (&rolling, System, "ID=arch\nVERSION_ID=1\n", true),
        (
            &no_level,
            System,
            "ID=debian\nSYSEXT_LEVEL=1.0\nVERSION_ID=12\n",
            true,
        ),
        (&no_level, System, "ID=debian\nSYSEXT_LEVEL=1.0\n", false),
    ];
    for (host, scope, ext, ok) in rows {
        let got = check(host, *scope, ext);
        assert_eq!(
            got.is_ok(),
            *ok,
            "{ext:?} in {scope:?} on {host:?}: {got:?}"
        );
    }
    let e = check(&host, System, "ID=fedora\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "extension 'ext' does not match the host: ID=fedora but the host has ID=debian"
    );
    let confext = ExtensionCheck {
        kind: ExtensionKind::Confext,
        scope: System,
        host: &parse("ID=debian\nVERSION_ID=12\nCONFEXT_LEVEL=3\n"),
        architecture: None,
    };
    assert!(
        confext
            .check(
                "c",
                &parse("ID=debian\nCONFEXT_LEVEL=3\nARCHITECTURE=s390x\n")
            )
            .is_ok()
    );
    assert!(
        confext
            .check("c", &parse("ID=debian\nCONFEXT_LEVEL=4\n"))
            .is_err()
    );
    assert!(systemd_architecture().is_some());
}
