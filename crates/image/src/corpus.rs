//! The hostile tarball corpus (issue 10), each case built from its description here rather than
//! kept as a binary blob: traversal, absolute and escaping symlinks, writes through symlinks,
//! hardlinks out, device nodes, setuid files, FIFOs, huge and sparse entries, truncated and
//! corrupt archives, non-UTF-8 names and a world-writable `.`. The unit tests of
//! the unpacker (`unpack`), provisioning's tests and the host tier's `appimg import` runs all use it.

/// What unpacking a case as an OS tree (`unpack::Policy::os_tree`) must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Refused, the error containing this text (which names the entry or says what is wrong).
    Refused(&'static str),
    /// Unpacked, leaving out the entries the policy skips.
    Unpacked,
}

/// One case: a name, the tar bytes, and what an OS-tree import must do with it.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's name.
    pub name: &'static str,
    /// The archive's bytes.
    pub tar: Vec<u8>,
    /// What unpacking it must do.
    pub expect: Expect,
}

/// A tar header for `path` written byte for byte (the tar crate refuses to write `..`).
pub fn raw_header(
    path: &[u8],
    kind: tar::EntryType,
    size: u64,
    mode: u32,
    link: &str,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path);
    h.as_gnu_mut().unwrap().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    h
}

/// A tar of `entries`: (path, type, contents or link target, mode), with an os-release and a
/// /usr first so that an accepted tree is an OS tree.
pub fn os_tar(entries: &[(&[u8], tar::EntryType, &str, u32)]) -> Vec<u8> {
    use tar::EntryType::*;
    let mut all: Vec<(&[u8], tar::EntryType, &str, u32)> = vec![
        (b"usr", Directory, "", 0o755),
        (b"usr/lib", Directory, "", 0o755),
        (b"usr/lib/os-release", Regular, "ID=corpus\n", 0o644),
    ];
    all.extend_from_slice(entries);
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data, mode) in all {
        let (size, link, body) = match kind {
            Regular => (data.len() as u64, "", data.as_bytes()),
            _ => (0, data, &b""[..]),
        };
        b.append(&raw_header(path, kind, size, mode, link), body)
            .unwrap();
    }
    b.into_inner().unwrap()
}

/// A tar whose one regular entry says it holds `size` bytes (of which none follow).
fn huge_entry(size: u64) -> Vec<u8> {
    let mut tar = os_tar(&[]);
    tar.truncate(tar.len() - 1024);
    let h = raw_header(b"usr/huge", tar::EntryType::Regular, size, 0o644, "");
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// A GNU sparse entry of apparent size `size` holding one byte of data at its end.
fn sparse_entry(size: u64) -> Vec<u8> {
    let mut tar = os_tar(&[]);
    tar.truncate(tar.len() - 1024);
    let mut h = raw_header(b"usr/sparse", tar::EntryType::GNUSparse, 512, 0o644, "");
    // Octal where it fits, else GNU's base-256 (a leading 0x80, then big-endian).
    let octal = |field: &mut [u8], v: u64| {
        let s = format!("{v:0width$o}", width = field.len() - 1);
        if s.len() < field.len() {
            field[..s.len()].copy_from_slice(s.as_bytes());
        } else {
            field.fill(0);
            field[0] = 0x80;
            let n = field.len();
            field[n - 8..].copy_from_slice(&v.to_be_bytes());
        }
    };
    let gnu = h.as_gnu_mut().unwrap();
    octal(&mut gnu.sparse[0].offset, size - 512);
    octal(&mut gnu.sparse[0].numbytes, 512);
    octal(&mut gnu.realsize, size);
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&[b'x'; 512]);
    tar.extend_from_slice(&[0u8; 1024]);
    tar
}

/// Every case.
pub fn cases() -> Vec<Case> {
    use Expect::*;
    use tar::EntryType::*;
    let case = |name, tar, expect| Case { name, tar, expect };
    let good = os_tar(&[
        (b"etc", Directory, "", 0o755),
        (b"etc/hostname", Regular, "x\n", 0o644),
    ]);
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 1024 - 512 + 1);
    let mut corrupt = good.clone();
    // The last header's checksum field.
    let last_header = good.len() - 1024 - 1024;
    corrupt[last_header + 148] ^= 0x11;
    vec![
        case(
            "traversal",
            os_tar(&[(b"../evil", Regular, "x", 0o644)]),
            Refused("'..'"),
        ),
        case(
            "deep-traversal",
            os_tar(&[(b"usr/../../evil", Regular, "x", 0o644)]),
            Refused("'..'"),
        ),
        case(
            "absolute-path",
            os_tar(&[(b"/etc/evil", Regular, "x", 0o644)]),
            Refused("absolute path"),
        ),
        case(
            "relative-escaping-symlink",
            os_tar(&[(b"etc/link", Symlink, "../../x", 0o777)]),
            Refused("outside the image"),
        ),
        case(
            "symlink-then-write",
            os_tar(&[
                (b"d", Symlink, "/etc", 0o777),
                (b"d/passwd", Regular, "x", 0o644),
            ]),
            Refused("written through the symlink 'd'"),
        ),
        case(
            "symlink-replaces-dir-then-write",
            os_tar(&[
                (b"usr/lib", Symlink, "/", 0o777),
                (b"usr/lib/x", Regular, "x", 0o644),
            ]),
            Refused("replaces a directory"),
        ),
        case(
            "hardlink-out",
            os_tar(&[(b"h", Link, "../../etc/passwd", 0o644)]),
            Refused("hardlink"),
        ),
        case(
            "hardlink-absolute",
            os_tar(&[(b"h", Link, "/etc/passwd", 0o644)]),
            Refused("hardlink"),
        ),
        case(
            "hardlink-to-dir",
            os_tar(&[(b"h", Link, "usr", 0o644)]),
            Refused("not a file unpacked before"),
        ),
        case(
            "hardlink-through-symlink",
            os_tar(&[
                (b"s", Symlink, "/etc", 0o777),
                (b"h", Link, "s/passwd", 0o644),
            ]),
            Refused("written through the symlink 's'"),
        ),
        case(
            "device-nodes-left-out",
            os_tar(&[
                (b"dev/mem", Char, "", 0o666),
                (b"dev/sda", Block, "", 0o666),
            ]),
            Unpacked,
        ),
        case(
            "setuid-kept-in-the-private-store",
            os_tar(&[(b"usr/bin-su", Regular, "x", 0o4755)]),
            Unpacked,
        ),
        case(
            "fifo-kept",
            os_tar(&[(b"run-initctl", Fifo, "", 0o600)]),
            Unpacked,
        ),
        case(
            "absolute-symlink-means-the-tree",
            os_tar(&[(b"etc-localtime", Symlink, "/usr/share/zoneinfo/UTC", 0o777)]),
            Unpacked,
        ),
        case(
            "world-writable-dot",
            os_tar(&[
                (b".", Directory, "", 0o777),
                (b"./etc", Directory, "", 0o755),
            ]),
            Unpacked,
        ),
        case(
            "non-utf8-name",
            os_tar(&[(b"usr/caf\xe9", Regular, "x", 0o644)]),
            Unpacked,
        ),
        case("huge-entry", huge_entry(1 << 40), Refused("usr/huge")),
        case("sparse-1tib", sparse_entry(1 << 40), Refused("usr/sparse")),
        case("sparse-small-keeps-holes", sparse_entry(64 << 20), Unpacked),
        case("truncated", truncated, Refused("etc/hostname")),
        case("corrupt-checksum", corrupt, Refused("after entry")),
        case(
            "not-a-tar",
            b"this is not a tar archive at all, just text".repeat(20),
            Refused("corrupt"),
        ),
    ]
}
