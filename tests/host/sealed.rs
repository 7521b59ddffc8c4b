//! Block and sealed images on the host tier (no device-mapper here): building them, realms on
//! a plain block image and on a sealed image through the userspace-verified path, and every
//! refusal (unsigned, untrusted, tampered, older version).

use std::fs;

use realms_tests::realms::{TestRoot, name};

fn key(t: &TestRoot) -> String {
    t.ok(&["appimg", "key", "generate", "builder"]);
    t.path()
        .join("etc/realms/private/builder.key")
        .to_string_lossy()
        .into_owned()
}

fn base(t: &TestRoot) -> String {
    t.path()
        .join("storage/appimg/base.appimg")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn realms_run_on_block_images_of_every_format() {
    let t = TestRoot::btrfs();
    for format in ["erofs", "squashfs", "ext4"] {
        let img = format!("blk{format}");
        let out = t.said(&[
            "appimg", "build", &img, "--from", "base", "--format", format,
        ]);
        assert!(
            out.contains(&format!("Built block appimg '{img}' version 1 ({format})")),
            "{out}"
        );
        let r = name("k");
        let out = t.said(&["new", &r, "--appimg", &img]);
        assert!(out.contains("a block image"), "{out}");
        t.ok(&["config", &r, "use-network", "false"]);
        let out = t.ok(&[
            "run",
            &r,
            "--",
            "sh",
            "-c",
            "echo changed > /etc/motd; cat /etc/motd; cat /etc/debian_version",
        ]);
        assert!(out.starts_with("changed\n12"), "{out}");
        t.ok(&["stop", &r]);
    }
    let list = t.ok(&["appimg", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("blkerofs") && l.contains("block")),
        "{list}"
    );
}

#[test]
fn a_realm_starts_on_a_sealed_image_verified_in_userspace() {
    let t = TestRoot::btrfs();
    let key = key(&t);
    let out = t.said(&[
        "appimg",
        "build",
        "sealed",
        "--from",
        &base(&t),
        "--format",
        "erofs",
        "--seal",
        "--key",
        &key,
    ]);
    assert!(
        out.contains("Built sealed appimg 'sealed' version 1"),
        "{out}"
    );
    let dir = t.path().join("storage/appimg/sealed.appimg");
    for f in [
        "image.raw",
        "image.verity",
        "image.roothash",
        "image.meta",
        "image.sig",
    ] {
        assert!(dir.join(f).exists(), "{f} is missing");
    }
    let verify = t.ok(&["appimg", "verify", "sealed"]);
    assert!(verify.contains("signature good (key 'builder'"), "{verify}");
    // systemd's sidecar holds the root hash that the signed metadata names.
    let roothash = fs::read_to_string(dir.join("image.roothash")).unwrap();
    assert!(
        fs::read_to_string(dir.join("image.meta"))
            .unwrap()
            .contains(roothash.trim())
    );

    let r = name("v");
    t.ok(&["new", &r, "--appimg", "sealed"]);
    t.ok(&["config", &r, "use-network", "false"]);
    let out = t.realms(&["start", &r]);
    // A warning: on stderr, where `realms` puts every `[!]` line.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("no device-mapper") && said.contains("no protection against tampering"),
        "{said}"
    );
    assert!(
        t.ok(&["run", &r, "--", "cat", "/etc/os-release"])
            .contains("ID=debian")
    );
    t.ok(&["stop", &r]);

    // A flipped byte in the data is caught at the next start, naming the block.
    let raw = dir.join("image.raw");
    let mut bytes = fs::read(&raw).unwrap();
    bytes[3 * 4096 + 17] ^= 0x5a;
    fs::write(&raw, &bytes).unwrap();
    let err = t.fails(&["start", &r]);
    assert!(
        err.contains("tampered") && err.contains("data block 3 "),
        "{err}"
    );
    let err = t.fails(&["appimg", "verify", "sealed"]);
    assert!(err.contains("data block 3 "), "{err}");
}

#[test]
fn unsigned_untrusted_and_tampered_images_are_refused_before_anything_is_mounted() {
    let t = TestRoot::btrfs();
    let key = key(&t);
    t.ok(&[
        "appimg", "build", "sealed", "--from", "base", "--format", "squashfs", "--seal", "--key",
        &key,
    ]);
    let dir = t.path().join("storage/appimg/sealed.appimg");

    let trusted = t.path().join("etc/realms/keys.d/builder.pub");
    let aside = t.path().join("builder.pub");
    fs::rename(&trusted, &aside).unwrap();
    let err = t.fails(&["new", &name("x"), "--appimg", "sealed"]);
    assert!(err.contains("not trusted"), "{err}");
    fs::rename(&aside, &trusted).unwrap();

    let meta = dir.join("image.meta");
    let text = fs::read_to_string(&meta).unwrap();
    fs::write(&meta, text.replace("version = \"1\"", "version = \"9\"")).unwrap();
    let err = t.fails(&["new", &name("x"), "--appimg", "sealed"]);
    assert!(
        err.contains("bad signature") && err.contains("does not match"),
        "{err}"
    );
    fs::write(&meta, text).unwrap();

    fs::rename(dir.join("image.sig"), t.path().join("image.sig")).unwrap();
    let err = t.fails(&["new", &name("x"), "--appimg", "sealed"]);
    assert!(err.contains("not signed"), "{err}");
    fs::rename(t.path().join("image.sig"), dir.join("image.sig")).unwrap();
    t.ok(&["new", &name("x"), "--appimg", "sealed"]);
}

#[test]
fn older_versions_are_refused_unless_allowed_and_updates_reseal() {
    let t = TestRoot::btrfs();
    let key = key(&t);
    let build = |version: &str, extra: &[&str]| {
        let mut args = vec![
            "appimg",
            "build",
            "sealed",
            "--from",
            "base",
            "--format",
            "erofs",
            "--seal",
            "--key",
            &key,
            "--version",
            version,
        ];
        args.extend_from_slice(extra);
        t.realms(&args)
    };
    assert!(build("2", &[]).status.success());
    let out = build("1", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("older than the installed 2")
            && err.contains("--allow-downgrade"),
        "{err}"
    );
    assert!(build("1", &["--allow-downgrade"]).status.success());
    assert!(t.ok(&["appimg", "verify", "sealed"]).contains("version 1"));

    let before =
        fs::read_to_string(t.path().join("storage/appimg/sealed.appimg/image.meta")).unwrap();
    t.ok(&[
        "update-appimg",
        "sealed",
        "--",
        "sh",
        "-c",
        "echo v2 > /etc/v",
    ]);
    let verify = t.ok(&["appimg", "verify", "sealed"]);
    assert!(verify.contains("version 2"), "{verify}");
    let after =
        fs::read_to_string(t.path().join("storage/appimg/sealed.appimg/image.meta")).unwrap();
    let salt = |m: &str| {
        m.lines()
            .find(|l| l.starts_with("salt"))
            .unwrap()
            .to_string()
    };
    assert_ne!(salt(&before), salt(&after), "a reseal uses a fresh salt");
    let r = name("w");
    t.ok(&["new", &r, "--appimg", "sealed"]);
    t.ok(&["config", &r, "use-network", "false"]);
    assert_eq!(t.ok(&["run", &r, "--", "cat", "/etc/v"]).trim(), "v2");
    assert!(
        t.path()
            .join("storage/appimg/sealed.appimg.prev/image.sig")
            .exists()
    );
}
