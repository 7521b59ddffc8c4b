//! `/proc/self/mountinfo`: a pure parser and the "mounts under a path" query used for cleanup.

use crate::error::Invalidity;
use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Unique mount id.
    pub id: u32,
    /// Id of the parent mount.
    pub parent_id: u32,
    /// `major:minor` of the device.
    pub device: (u32, u32),
    /// The directory of the filesystem that forms the root of this mount.
    pub root: PathBuf,
    /// Where it is mounted (relative to our root).
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,...`).
    pub mount_options: String,
    /// Optional fields such as `shared:1` or `master:2`.
    pub propagation: Vec<String>,
    /// The filesystem type (`btrfs`, `overlay`, ...).
    pub fs_type: String,
    /// The mount source (a device, or what was passed as source).
    pub source: String,
    /// Per-superblock options.
    pub super_options: String,
}

/// Parses the text of a mountinfo file; malformed lines are an error naming the line.
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountInfo>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            parse_line(line).ok_or_else(|| {
                Error::invalid(
                    "parsing",
                    "/proc/self/mountinfo",
                    Invalidity::MalformedLine {
                        number: i + 1,
                        line: line.to_string(),
                    },
                )
            })
        })
        .collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let mut fields = line.split(' ');
    let id = fields.next()?.parse().ok()?;
    let parent_id = fields.next()?.parse().ok()?;
    let (maj, min) = fields.next()?.split_once(':')?;
    let device = (maj.parse().ok()?, min.parse().ok()?);
    let root = PathBuf::from(unescape(fields.next()?));
    let mount_point = PathBuf::from(unescape(fields.next()?));
    let mount_options = fields.next()?.to_owned();
    let mut propagation = Vec::new();
    loop {
        match fields.next()? {
            "-" => break,
            opt => propagation.push(opt.to_owned()),
        }
    }
    let fs_type = unescape(fields.next()?).to_string_lossy().into_owned();
    let source = unescape(fields.next()?).to_string_lossy().into_owned();
    let super_options = fields.next().unwrap_or("").to_owned();
    Some(MountInfo {
        id,
        parent_id,
        device,
        root,
        mount_point,
        mount_options,
        propagation,
        fs_type,
        source,
        super_options,
    })
}

/// Decodes the kernel's octal escapes (`\040` for a space, `\134` for a backslash, ...).
fn unescape(field: &str) -> OsString {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    OsString::from_vec(out)
}

/// The mounts at or below `path`, ordered so that each comes before the mount it sits on
/// (children before parents, later stacked mounts before earlier ones): unmounting them in
/// this order always works.
pub fn mounts_under(path: impl AsRef<Path>) -> Result<Vec<MountInfo>> {
    let path = path.as_ref();
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let file = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(file).ctx("reading", file)?;
    Ok(select_under(parse_mountinfo(&text)?, &real))
}

/// Picks the mounts at or below `path` from `all` and orders them for unmounting.
pub(crate) fn select_under(all: Vec<MountInfo>, path: &Path) -> Vec<MountInfo> {
    let chosen: Vec<MountInfo> = all
        .into_iter()
        .filter(|m| m.mount_point.starts_with(path))
        .collect();
    let ids: HashSet<u32> = chosen.iter().map(|m| m.id).collect();
    let mut children: HashMap<u32, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, m) in chosen.iter().enumerate() {
        if ids.contains(&m.parent_id) && m.parent_id != m.id {
            children.entry(m.parent_id).or_default().push(i);
        } else {
            roots.push(i);
        }
    }
    // Post-order walk, visiting later siblings first.
    let mut order = Vec::with_capacity(chosen.len());
    let mut stack: Vec<(usize, bool)> = roots.iter().map(|&i| (i, false)).collect();
    while let Some((i, expanded)) = stack.pop() {
        if expanded {
            order.push(i);
            continue;
        }
        stack.push((i, true));
        for &c in children
            .get(&chosen[i].id)
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            stack.push((c, false));
        }
    }
    let mut slots: Vec<Option<MountInfo>> = chosen.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:40 / /work/a rw - tmpfs tmpfs rw,size=10k
31 30 0:41 / /work/a/b\\040c rw master:3 - overlay overlay rw,lowerdir=/x\\134y
32 30 0:42 / /work/a/d rw - tmpfs tmpfs rw
33 32 0:43 / /work/a/d rw - tmpfs tmpfs rw
34 22 0:44 /sub /work/ab rw - btrfs /dev/loop0 rw
";

    #[test]
    fn parses_fields_and_escapes() {
        let all = parse_mountinfo(SAMPLE).unwrap();
        assert_eq!(all.len(), 6);
        let m = &all[2];
        assert_eq!((m.id, m.parent_id, m.device), (31, 30, (0, 41)));
        assert_eq!(m.mount_point, Path::new("/work/a/b c"));
        assert_eq!(m.propagation, ["master:3"]);
        assert_eq!(
            (m.fs_type.as_str(), m.source.as_str()),
            ("overlay", "overlay")
        );
        assert_eq!(m.super_options, r"rw,lowerdir=/x\134y");
        assert_eq!(all[5].root, Path::new("/sub"));
        assert!(parse_mountinfo("1 2 garbage").is_err());
    }

    #[test]
    fn unescapes_octal_only() {
        assert_eq!(unescape(r"a\040b\134c"), OsString::from("a b\\c"));
        assert_eq!(unescape(r"a\9b\04"), OsString::from(r"a\9b\04"));
    }

    #[test]
    fn under_orders_children_and_stacks_first() {
        let all = parse_mountinfo(SAMPLE).unwrap();
        let ids: Vec<u32> = select_under(all, Path::new("/work/a"))
            .iter()
            .map(|m| m.id)
            .collect();
        // /work/ab is not under /work/a; 33 is stacked on 32; both children of 30 come before it.
        assert_eq!(ids, [33, 32, 31, 30]);
    }
}
