//! Raw and GPT images offline: `RootImage=` with dm-verity sidecars, `.roothash.p7s` checked
//! against the keyring, and raw extensions matched by release name as portablectl 252 does.

use super::*;

/// Raw images on the host (loop devices work here; only dm-verity does not): a bare squashfs and
/// a GPT image with root + root-verity partitions made by systemd-repart, checked in userspace
/// against its `.roothash` before it is read, and refused once a data block is corrupted.
#[test]
fn raw_and_gpt_verity_images_attach_with_root_image() {
    realms_tests::require::tool("mksquashfs", "squashfs-tools");
    realms_tests::require::tool("systemd-repart", "systemd");
    let root = Root::new("portable-raw", true);
    let portables = root.at("var/lib/portables");
    let tree = portable_image();
    run(Command::new("mksquashfs")
        .arg(tree)
        .arg(portables.join("foo-test_1.raw"))
        .args(["-noappend", "-quiet", "-all-root"]));
    let defs = root.at("repart.d");
    fs::create_dir_all(&defs).unwrap();
    fs::write(
        defs.join("10-root.conf"),
        format!("[Partition]\nType=root\nFormat=squashfs\nCopyFiles={}:/\nVerity=data\nVerityMatchKey=root\n", tree.display()),
    )
    .unwrap();
    fs::write(
        defs.join("20-verity.conf"),
        "[Partition]\nType=root-verity\nVerity=hash\nVerityMatchKey=root\n",
    )
    .unwrap();
    let gpt = portables.join("foo-test_2.raw");
    let out = run(Command::new("systemd-repart")
        .args([
            "--empty=create",
            "--size=auto",
            "--dry-run=no",
            "--json=short",
        ])
        .arg(format!("--definitions={}", defs.display()))
        .arg(&gpt));
    let parts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let roothash = parts
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| p["roothash"].as_str())
        .unwrap();
    fs::write(portables.join("foo-test_2.roothash"), roothash).unwrap();

    for (image, file) in [
        ("foo-test_1", "foo-test_1.raw"),
        ("foo-test_2", "foo-test_2.raw"),
    ] {
        let out = root.ok(&format!("attach --runtime {image}"));
        assert!(
            out.contains("Copied /run/systemd/system.attached/foo-test.service.\n"),
            "{out}"
        );
        let conf = fs::read_to_string(
            root.at("run/systemd/system.attached/foo-test.service.d/20-portable.conf"),
        )
        .unwrap();
        assert!(
            conf.contains(&format!(
                "\nRootImage=/var/lib/portables/{file}\nEnvironment=PORTABLE={file}\n"
            )),
            "{conf}"
        );
        assert_eq!(
            link(&root.at(&format!("run/portables/{file}"))),
            format!("/var/lib/portables/{file}")
        );
        assert_eq!(
            fs::read(root.at("run/systemd/system.attached/foo-test.service")).unwrap(),
            fs::read(tree.join("usr/lib/systemd/system/foo-test.service")).unwrap()
        );
        root.ok(&format!("detach --runtime {image}"));
    }
    let list = root.ok("list");
    assert!(
        list.lines().any(|l| l.starts_with("foo-test_2 raw ")),
        "{list}"
    );
    // Nothing stays mounted, no loop device stays bound to the images.
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains("realms-portable-"),
        "a raw image stayed mounted"
    );

    // A corrupted data block is found before anything is read from the image.
    let parts = parts.as_array().unwrap();
    let data_offset = parts[0]["offset"].as_u64().unwrap();
    let f = fs::OpenOptions::new().write(true).open(&gpt).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"corrupt", data_offset + 8192).unwrap();
    drop(f);
    let out = root.fails("inspect foo-test_2");
    assert!(
        out.contains("Failed to inspect image metadata: ") && out.contains("verification"),
        "{out}"
    );
}

/// A `.roothash.p7s` beside a raw image (systemd's detached PKCS#7 over the hex root hash) is
/// checked against the certificates in the root's /etc/realms/verity-certs.d; without that
/// keyring attach says the signature was not checked, and a signer outside it is refused.
#[test]
fn roothash_p7s_is_checked_against_the_keyring_or_reported_unchecked() {
    realms_tests::require::tool("mksquashfs", "squashfs-tools");
    realms_tests::require::tool("openssl", "openssl");
    let root = Root::new("portable-p7s", true);
    let portables = root.at("var/lib/portables");
    let image = portables.join("foo-test_3.raw");
    run(Command::new("mksquashfs")
        .arg(portable_image())
        .arg(&image)
        .args(["-noappend", "-quiet", "-all-root"]));
    let out = run(Command::new(realms_tests::realms_bin())
        .args(["verity", "format"])
        .arg(&image)
        .arg(portables.join("foo-test_3.verity"))
        .arg(format!(
            "--root-hash-file={}",
            portables.join("foo-test_3.roothash").display()
        )));
    assert!(out.status.success());
    let keys = root.at("keys");
    fs::create_dir_all(&keys).unwrap();
    for name in ["signer", "stranger"] {
        run(Command::new("openssl")
            .args([
                "req", "-x509", "-nodes", "-days", "2", "-newkey", "rsa:2048",
            ])
            .args(["-subj", &format!("/CN=realms-p7s-{name}")])
            .arg("-keyout")
            .arg(keys.join(format!("{name}.key")))
            .arg("-out")
            .arg(keys.join(format!("{name}.pem"))));
    }
    run(Command::new("openssl")
        .args([
            "smime", "-sign", "-binary", "-noattr", "-nocerts", "-outform", "DER",
        ])
        .arg("-in")
        .arg(portables.join("foo-test_3.roothash"))
        .arg("-inkey")
        .arg(keys.join("signer.key"))
        .arg("-signer")
        .arg(keys.join("signer.pem"))
        .arg("-out")
        .arg(portables.join("foo-test_3.roothash.p7s")));

    let out = root.ok("attach --runtime foo-test_3");
    assert!(
        out.contains("foo-test_3: root hash signature ")
            && out.contains("foo-test_3.roothash.p7s not checked: no keyring"),
        "{out}"
    );
    root.ok("detach --runtime foo-test_3");

    let keyring = root.at("etc/realms/verity-certs.d");
    fs::create_dir_all(&keyring).unwrap();
    fs::copy(keys.join("stranger.pem"), keyring.join("stranger.pem")).unwrap();
    let out = root.fails("attach --runtime foo-test_3");
    assert!(
        out.contains("is not a valid signature of root hash")
            && out.contains("signer certificate not found"),
        "{out}"
    );
    assert!(
        !root
            .at("run/systemd/system.attached/foo-test.service")
            .exists()
    );

    fs::copy(keys.join("signer.pem"), keyring.join("signer.pem")).unwrap();
    let out = root.ok("attach --runtime foo-test_3");
    assert!(
        out.contains("foo-test_3: root hash signed by CN=realms-p7s-signer."),
        "{out}"
    );
    root.ok("detach --runtime foo-test_3");
}

/// A squashfs extension image `name`.raw whose only release file is extension-release.`release`
/// (with `user.extension-release.strict=false` if `relaxed`), holding `unit`.
fn raw_extension(root: &Root, name: &str, release: &str, relaxed: bool, unit: &str) {
    let tree = root.at(&format!("build-{name}"));
    let rel = tree.join(format!(
        "usr/lib/extension-release.d/extension-release.{release}"
    ));
    fs::create_dir_all(rel.parent().unwrap()).unwrap();
    fs::write(&rel, "ID=foo\nVERSION_ID=1\n").unwrap();
    if relaxed {
        rustix::fs::setxattr(
            &rel,
            "user.extension-release.strict",
            b"false",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
    }
    let units = tree.join("usr/lib/systemd/system");
    fs::create_dir_all(&units).unwrap();
    fs::write(
        units.join(unit),
        "[Service]\nExecStart=/usr/bin/busybox true\n",
    )
    .unwrap();
    run(Command::new("mksquashfs")
        .arg(&tree)
        .arg(root.at(&format!("var/lib/portables/{name}.raw")))
        .args(["-noappend", "-quiet", "-all-root"]));
}

#[test]
fn raw_extensions_match_release_names_as_portablectl_252() {
    realms_tests::require::tool("mksquashfs", "squashfs-tools");
    let root = Root::new("portable-rawext", true);
    run(Command::new("mksquashfs")
        .arg(portable_image())
        .arg(root.at("var/lib/portables/foo-test_1.raw"))
        .args(["-noappend", "-quiet", "-all-root"]));
    let conf = |unit: &str| {
        fs::read_to_string(root.at(&format!(
            "run/systemd/system.attached/{unit}.service.d/20-portable.conf"
        )))
        .unwrap()
    };
    // versioned_extension_name_refused_without_force: app0_1.0.raw has extension-release.app0.
    raw_extension(&root, "app0_1.0", "app0", false, "app0.service");
    let ext = "--runtime --extension /var/lib/portables/app0_1.0.raw foo-test_1 app0";
    let refused = root.fails(&format!("attach {ext}"));
    assert!(
        refused.contains("lacks extension-release data, refusing."),
        "{refused}"
    );
    assert!(!root.at("run/systemd/system.attached").exists());
    // With --force it attaches, and PID 1 is told to relax its own check, or the unit fails.
    root.ok(&format!("attach --force {ext}"));
    assert!(
        conf("app0").ends_with(
            "ExtensionImages=/var/lib/portables/app0_1.0.raw:x-systemd.relax-extension-release-check\n"
        ),
        "{}",
        conf("app0")
    );
    root.ok(&format!("detach --force {ext}"));
    // extension_release_strict_xattr_honoured_for_raw_images: app1.raw has only
    // extension-release.app2, marked user.extension-release.strict=false (TEST-29's app1).
    raw_extension(&root, "app1", "app2", true, "app1.service");
    let app1 = "--runtime --extension /var/lib/portables/app1.raw foo-test_1 app1";
    root.ok(&format!("attach {app1}"));
    assert!(
        conf("app1").ends_with("ExtensionImages=/var/lib/portables/app1.raw\n"),
        "{}",
        conf("app1")
    );
    let cat = root.ok(&format!("inspect --cat {app1}"));
    assert!(
        cat.contains("-- Extension Release: /var/lib/portables/app1.raw --\nID=foo\n"),
        "{cat}"
    );
    root.ok(&format!("detach {app1}"));
    // The same file without the xattr is refused.
    raw_extension(&root, "app3", "app9", false, "app3.service");
    let refused =
        root.fails("attach --runtime --extension /var/lib/portables/app3.raw foo-test_1 app3");
    assert!(
        refused.contains("lacks extension-release data, refusing."),
        "{refused}"
    );
}
