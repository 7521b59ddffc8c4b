//! Table-driven tests of escaping, unit names from paths, hashing and mangling.

use super::*;

#[test]
fn escape_table() {
    let rows: &[(&[u8], &str)] = &[
        (b"", ""),
        (b"foo-bar", "foo\\x2dbar"),
        (b".hidden", "\\x2ehidden"),
        (b"a.b", "a.b"),
        (b"/abs", "-abs"),
        (b"x:y_z", "x:y_z"),
        (
            "Hallöchen, Meister".as_bytes(),
            "Hall\\xc3\\xb6chen\\x2c\\x20Meister",
        ),
        (
            b"ab+-c.a/bc@foo.service",
            "ab\\x2b\\x2dc.a-bc\\x40foo.service",
        ),
        (b"\xff\x00", "\\xff\\x00"),
    ];
    for (input, want) in rows {
        assert_eq!(escape(input), *want, "{input:?}");
        if !input.contains(&b'/') {
            assert_eq!(unescape(want).unwrap(), *input, "{want:?}");
        }
    }
}

#[test]
fn unescape_errors_name_offset() {
    let err = unescape("ab\\xzz").unwrap_err();
    assert!(matches!(err, Error::BadEscape { offset: 2, .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "'ab\\xzz' has an invalid escape at byte 2: '\\' must be followed by 'x' and two hex digits"
    );
    assert!(unescape("a\\").is_err());
    assert!(unescape("a\\X41").is_err());
    assert_eq!(unescape("a\\x2Fb").unwrap(), b"a/b");
    assert!(matches!(unescape_str("\\xff"), Err(Error::NotUtf8 { .. })));
    assert_eq!(unescape_str("a-b\\x20c").unwrap(), "a/b c");
}

#[test]
fn simplify_table() {
    let rows: &[(&str, &str)] = &[
        ("", ""),
        ("/", "/"),
        ("///", "/"),
        ("/./", "/"),
        (".", "."),
        ("./", "."),
        ("./a", "a"),
        ("a/./b/", "a/b"),
        ("//var///lib//", "/var/lib"),
        ("/a/../b", "/a/../b"),
        ("/foo/./bar", "/foo/bar"),
    ];
    for (input, want) in rows {
        assert_eq!(
            simplify_path(input.as_bytes()),
            want.as_bytes(),
            "{input:?}"
        );
    }
}

#[test]
fn path_rules() {
    assert!(is_normalized_path(b"/"));
    assert!(is_normalized_path(b"/a/b"));
    assert!(is_normalized_path(b"a/b/"));
    for bad in ["", "//", "/a//b", "/a/./b", "/a/..", ".", "..", "/a\0b"] {
        assert!(!is_normalized_path(bad.as_bytes()), "{bad:?}");
    }
    let long_comp = format!("/{}", "x".repeat(256));
    assert!(!is_valid_path(long_comp.as_bytes()));
    assert!(is_valid_path(format!("/{}", "x".repeat(255)).as_bytes()));
    assert!(is_valid_path("/a".repeat(2047).as_bytes()));
    assert!(!is_valid_path("/a".repeat(2048).as_bytes()));
}

#[test]
fn escape_path_errors_say_which_rule() {
    let e = escape_path("/a/../b").unwrap_err();
    assert_eq!(
        e.to_string(),
        "'/a/../b' is not a normalized file system path"
    );
    assert!(matches!(
        escape_path("a/.."),
        Err(Error::RelativePath { .. })
    ));
    assert!(matches!(escape_path("."), Err(Error::RelativePath { .. })));
    let long = format!("/{}", "x".repeat(300));
    assert!(matches!(escape_path(&long), Err(Error::InvalidPath { .. })));
    // Raw input over PATH_MAX is fine when it simplifies to something short.
    assert_eq!(escape_path(format!("{}a", "/".repeat(5000))).unwrap(), "a");
}

#[test]
fn unescape_path_table() {
    let ok: &[(&str, &[u8])] = &[
        ("var-lib-my\\x2dapp", b"/var/lib/my-app"),
        ("\\x2estate", b"/.state"),
        ("foo-.bar", b"/foo/.bar"),
        ("foo\\x2Dbar", b"/foo-bar"),
        ("a\\x2fb", b"/a/b"),
        ("-", b"/"),
        ("\\xff", b"/\xff"),
    ];
    for (input, want) in ok {
        assert_eq!(unescape_path(input).unwrap(), *want, "{input:?}");
    }
    for bad in [
        "--", "-foo", "foo-", "foo--bar", ".-bar", "foo-..", "", "a\\xzz", "\\x2e",
    ] {
        assert!(unescape_path(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn from_path_table() {
    let rows: &[(&str, UnitType, &str)] = &[
        ("/waldo", UnitType::Mount, "waldo.mount"),
        ("/waldo/quuix/", UnitType::Mount, "waldo-quuix.mount"),
        ("", UnitType::Mount, "-.mount"),
        ("///", UnitType::Mount, "-.mount"),
        ("/foo/./bar", UnitType::Mount, "foo-bar.mount"),
        (
            "/tmp//waldi/foobar/",
            UnitType::Mount,
            "tmp-waldi-foobar.mount",
        ),
        (
            "/dev/disk/by-uuid/4d21b016-b534-45c2-a9fb-5c16e091fd2d",
            UnitType::Device,
            "dev-disk-by\\x2duuid-4d21b016\\x2db534\\x2d45c2\\x2da9fb\\x2d5c16e091fd2d.device",
        ),
    ];
    for (path, t, want) in rows {
        assert_eq!(from_path(path, *t).unwrap(), *want, "{path:?}");
    }
    assert!(from_path("/foo/../bar", UnitType::Mount).is_err());
    assert_eq!(to_path("home-lennart.mount").unwrap(), b"/home/lennart");
    for bad in [
        "home-lennart-.mount",
        "-home-lennart.mount",
        "home-..-lennart.mount",
        "",
        "home/foo",
    ] {
        assert!(to_path(bad).is_err(), "{bad:?}");
    }
}

/// Hashed names, checked against upstream's test and systemd-escape --mangle 252.
#[test]
fn long_names_are_hashed() {
    let rows: &[(String, UnitType, &str)] = &[
        (
            format!("/waldo{}", "a".repeat(246)),
            UnitType::Mount,
            "7736d9ed33c2ec55",
        ),
        (
            format!("/waldo{}", "a".repeat(249)),
            UnitType::Mount,
            "4f205433e948cad8",
        ),
        (
            format!("/waldo{}", "a".repeat(245)),
            UnitType::Mount,
            "ddfdcade2a98068b",
        ),
        (
            format!("/dev/{}", "y".repeat(250)),
            UnitType::Device,
            "e60f628a3ac987d2",
        ),
        (
            format!("/a/{}/c-d", "b".repeat(255)),
            UnitType::Mount,
            "6084430d7cab1b1a",
        ),
    ];
    for (path, t, hash) in rows {
        let name = from_path(path, *t).unwrap();
        assert_eq!(name.len(), 255, "{name}");
        let full = format!("{}.{t}", escape_path(path).unwrap());
        let keep = 255 - t.as_str().len() - 1 - 16 - 1;
        assert_eq!(name, format!("{}_{hash}.{t}", &full[..keep]));
        assert!(is_hashed(&name));
        assert!(matches!(to_path(&name), Err(Error::HashedUnitName { .. })));
        assert_eq!(mangle(path).unwrap(), name);
    }
    // 255 bytes exactly is not hashed.
    let name = from_path(format!("/waldo{}", "a".repeat(244)), UnitType::Mount).unwrap();
    assert_eq!(name.len(), 255);
    assert!(!is_hashed(&name));
}

#[test]
fn is_hashed_table() {
    let a = "a".repeat(227);
    assert!(is_hashed(&format!("waldo{a}_7736d9ed33c2ec55.mount")));
    assert!(!is_hashed(&format!("waldo{a}_7736D9ED33C2EC55.mount")));
    assert!(!is_hashed(&format!("waldo{a}!7736d9ed33c2ec55.mount")));
    assert!(!is_hashed(&format!("waldo{a}_7736d9gd33c2ec55.mount")));
    assert!(!is_hashed("foo@bar.service"));
    assert!(!is_hashed(""));
}

#[test]
fn from_path_instance_table() {
    let rows: &[(&str, &str, &str)] = &[
        ("waldo", "/waldo", "waldo@waldo.mount"),
        ("waldo", "/waldo////quuix////", "waldo@waldo-quuix.mount"),
        ("waldo", "/", "waldo@-.mount"),
        ("waldo", "", "waldo@-.mount"),
        ("wa--ldo", "/--", "wa--ldo@\\x2d\\x2d.mount"),
        (
            "systemd-fsck",
            "/dev/disk/by-partlabel/state",
            "systemd-fsck@dev-disk-by\\x2dpartlabel-state.mount",
        ),
    ];
    for (prefix, path, want) in rows {
        assert_eq!(
            from_path_instance(prefix, path, UnitType::Mount).unwrap(),
            *want
        );
    }
    assert!(from_path_instance("waldo", "..", UnitType::Mount).is_err());
    assert!(from_path_instance("wal@do", "/x", UnitType::Mount).is_err());
    let long = format!("/{}", "x".repeat(250));
    assert!(from_path_instance("waldo", &long, UnitType::Mount).is_err());
}

#[test]
fn mangle_table() {
    let rows: &[(&str, &str)] = &[
        ("foo.service", "foo.service"),
        ("/home", "home.mount"),
        ("/dev/sda", "dev-sda.device"),
        ("üxknürz.service", "\\xc3\\xbcxkn\\xc3\\xbcrz.service"),
        ("foobar-meh...waldi.service", "foobar-meh...waldi.service"),
        (
            "_____####----.....service",
            "_____\\x23\\x23\\x23\\x23----.....service",
        ),
        ("foo bar.socket", "foo\\x20bar.socket"),
    ];
    for (input, want) in rows {
        assert_eq!(mangle(input).unwrap(), *want, "{input:?}");
        assert_eq!(
            mangle(want).unwrap(),
            *want,
            "mangling is idempotent for {want:?}"
        );
    }
    assert!(matches!(mangle(""), Err(Error::Mangle { .. })));
    assert!(mangle("z".repeat(300)).is_err());
}

#[test]
fn mangle_with_globs() {
    let globs = MangleOptions {
        allow_globs: true,
        ..MangleOptions::default()
    };
    assert_eq!(mangle_with("foo", globs).unwrap(), "foo.service");
    assert_eq!(mangle_with("foo*", globs).unwrap(), "foo*");
    assert_eq!(mangle_with("ü*", globs).unwrap(), "\\xc3\\xbc*");
    assert_eq!(mangle_with("foo.service", globs).unwrap(), "foo.service");
    let socket = MangleOptions {
        default_type: UnitType::Socket,
        ..MangleOptions::default()
    };
    assert_eq!(mangle_with("foo", socket).unwrap(), "foo.socket");
}

#[test]
fn templates_and_instances() {
    assert_eq!(
        with_template("getty@.service", &escape("tty/1")).unwrap(),
        "getty@tty-1.service"
    );
    assert!(with_template("foo@bar.service", "x").is_err());
    assert!(with_template("foo@.service", "").is_err());
    assert!(with_template("foo@.service", &"a".repeat(300)).is_err());
    assert_eq!(instance_of("foo@a-b.service").unwrap(), "a-b");
    assert_eq!(instance_of("foo@bar@.service").unwrap(), "bar@");
    assert!(instance_of("foo@.service").is_err());
    assert!(instance_of("foo.service").is_err());
    assert_eq!(with_suffix("x", UnitType::Automount), "x.automount");
}
