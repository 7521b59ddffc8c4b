//! systemd's TEST-29-PORTABLE images (test/test-functions at v252.31), built from busybox-static:
//! the host tier runs the directory half of the test on them, the guest tier the raw half.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

/// TEST-29's images, as test/test-functions builds them, as directories in `t` from
/// busybox-static: minimal_0/1 (and rootdir, a copy of minimal_0), app0, and app1 whose only
/// release file is extension-release.app2 with `user.extension-release.strict=false`;
/// `host_os` is the os-release of the system they run on.
pub fn images(t: &Path, host_os: &str) {
    let pick = |key: &str| {
        host_os
            .lines()
            .find(|l| l.starts_with(&format!("{key}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let (id, version_id) = (pick("ID"), pick("VERSION_ID"));
    let busybox = fs::read("/bin/busybox").expect("read /bin/busybox (busybox-static)");
    let write = |path: &Path, text: &str, mode: u32| {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    };
    let minimal = |name: &str, marker: &str, extra: &str| {
        let d = t.join(name);
        for sub in [
            "usr/bin",
            "usr/lib/systemd/system",
            "usr/lib/extension-release.d",
            "etc",
            "var/tmp",
            "opt",
            "var/lib/app1",
            "proc",
            "sys",
            "dev",
            "run",
            "tmp",
        ] {
            fs::create_dir_all(d.join(sub)).unwrap();
        }
        fs::write(d.join("usr/bin/busybox"), &busybox).unwrap();
        fs::set_permissions(d.join("usr/bin/busybox"), fs::Permissions::from_mode(0o755)).unwrap();
        for tool in ["sh", "cat", "sleep", "grep", "test", "echo"] {
            symlink("busybox", d.join("usr/bin").join(tool)).unwrap();
        }
        symlink("usr/bin", d.join("bin")).unwrap();
        write(
            &d.join("usr/lib/os-release"),
            &format!("{host_os}MARKER={marker}\nPORTABLE_PREFIXES=app0 minimal minimal-app0\n"),
            0o644,
        );
        symlink("../usr/lib/os-release", d.join("etc/os-release")).unwrap();
        for f in ["etc/machine-id", "etc/resolv.conf", "opt/some_file"] {
            write(&d.join(f), "", 0o644);
        }
        let unit = "[Service]\nExecStartPre=cat /usr/lib/os-release\nExecStart=sleep 120\n";
        for u in ["minimal-app0.service", extra] {
            write(&d.join("usr/lib/systemd/system").join(u), unit, 0o644);
        }
    };
    minimal("minimal_0", "1", "minimal-app0-foo.service");
    minimal("minimal_1", "2", "minimal-app0-bar.service");
    minimal("rootdir", "1", "minimal-app0-foo.service");
    let app = |name: &str, release: &str, extra: &str, word: &str, file: &str| {
        let d = t.join(name);
        let rel = d
            .join("usr/lib/extension-release.d")
            .join(format!("extension-release.{release}"));
        write(&rel, &format!("{id}\n{version_id}\n{extra}"), 0o644);
        write(
            &d.join(format!("usr/lib/systemd/system/{name}.service")),
            &format!(
                "[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/opt/script{}.sh\n{}StateDirectory={name}\nRuntimeDirectory={name}\n",
                &name[3..],
                if name == "app0" {
                    "TemporaryFileSystem=/var/lib\n"
                } else {
                    ""
                }
            ),
            0o644,
        );
        write(
            &d.join(format!("opt/script{}.sh", &name[3..])),
            &format!(
                "#!/bin/sh\nset -e\ntest -e /usr/lib/os-release\necho {word} > ${{STATE_DIRECTORY}}/foo\ncat /usr/lib/extension-release.d/extension-release.{release}\n"
            ),
            0o755,
        );
        write(
            &d.join("usr/lib/systemd/system").join(file),
            "MARKER=1\n",
            0o644,
        );
        rel
    };
    app("app0", "app0", "", "bar", "some_file");
    let app2 = app(
        "app1",
        "app2",
        "SYSEXT_SCOPE=portable\nPORTABLE_PREFIXES=app1\n",
        "baz",
        "other_file",
    );
    rustix::fs::setxattr(
        &app2,
        "user.extension-release.strict",
        b"false",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("set user.extension-release.strict (the filesystem needs user xattrs)");
}
