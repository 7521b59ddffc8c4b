//! Elastic size of the encrypted image: the policy (when to grow or shrink, and to what) and the
//! steps, each ordered so that a kill at any point leaves the file system no larger than every
//! layer below it.
//!
//! Grow: extend the file → `LOOP_SET_CAPACITY` → `cryptsetup resize` → `btrfs filesystem
//! resize max`. Shrink: `btrfs filesystem resize` down (halving the distance on ENOSPC, as homed
//! does) → `cryptsetup resize --size` → truncate the file to what btrfs really has → loop capacity.
//! Every step works from the sizes measured now, so re-running a killed resize completes it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use realms_sys::cmd::Cmd;
use realms_sys::event::{Event, Report};
use realms_sys::failpoint::hit;

use crate::entries::{ENCRYPTED, IMAGE};
use crate::error::{Error, Result};
use realms_sys::IoContext;

/// Sizes are multiples of this.
pub const STEP: u64 = 16 << 20;
/// The smallest image (btrfs refuses much less; the LUKS2 header takes 16 MiB).
pub const MIN_IMAGE: u64 = 320 << 20;
/// A shrink never leaves less free than this inside.
pub const MARGIN: u64 = 128 << 20;
/// The file recording an unfinished resize, in the state partition.
pub const PENDING: &str = "resize.pending";
/// The file recording the last resize, in the state partition.
pub const LAST: &str = "resize.last";

/// The thresholds of `--auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    /// Grow when free space inside falls under this percentage of the image.
    pub grow_below: u8,
    /// Shrink when free space inside rises over this percentage of the image.
    pub shrink_above: u8,
    /// After a resize, free space inside is this percentage of the image.
    pub target_free: u8,
    /// Space always left free in the partition for the unencrypted side, in bytes.
    pub reserve: u64,
}

impl Default for Policy {
    /// Grow under 10 % free to 25 % free, shrink over 50 % free; keep 1 GiB for /home and the rest.
    fn default() -> Self {
        Policy {
            grow_below: 10,
            shrink_above: 50,
            target_free: 25,
            reserve: 1 << 30,
        }
    }
}

/// The layers under the encrypted file system as they are now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stack {
    /// The image file.
    pub image: PathBuf,
    /// Its size in bytes.
    pub image_size: u64,
    /// The loop device it is attached to.
    pub loop_device: PathBuf,
    /// The device-mapper name of the dm-crypt mapping, if encrypted.
    pub dm_name: Option<String>,
    /// Bytes of the image before the file system (the LUKS2 header; 0 without encryption).
    pub offset: u64,
    /// Where the file system is mounted.
    pub mount: PathBuf,
    /// The file system's device size, as btrfs sees it.
    pub fs_size: u64,
    /// Bytes used inside.
    pub used: u64,
    /// Bytes free inside.
    pub free: u64,
    /// Bytes free in the state partition.
    pub partition_free: u64,
}

fn round_up(n: u64) -> u64 {
    n.div_ceil(STEP).saturating_mul(STEP)
}

fn round_down(n: u64) -> u64 {
    n / STEP * STEP
}

fn statvfs(path: &Path) -> Result<(u64, u64, u64)> {
    let st = rustix::fs::statvfs(path).ctx("measuring free space of", path)?;
    let total = st.f_blocks.saturating_mul(st.f_frsize);
    let free = st.f_bavail.saturating_mul(st.f_bsize);
    let used = st
        .f_blocks
        .saturating_sub(st.f_bfree)
        .saturating_mul(st.f_frsize);
    Ok((total, used, free))
}

/// The source device of the mount at `mount` (from /proc/self/mountinfo).
fn mount_source(mount: &Path) -> Result<Option<PathBuf>> {
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").ctx("reading", "/proc/self/mountinfo")?;
    let want = mount.to_string_lossy();
    let mut found = None;
    for line in info.lines() {
        let mut fields = line.split(' ');
        if fields.nth(4) != Some(&*want) {
            continue;
        }
        let rest = line.split(" - ").nth(1).unwrap_or("");
        found = rest.split(' ').nth(1).map(PathBuf::from);
    }
    Ok(found)
}

fn read_sys(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .ctx("reading", path)?
        .trim()
        .to_string())
}

/// The btrfs device size of the file system at `mount`.
fn btrfs_size(mount: &Path) -> Result<u64> {
    let text = Cmd::new("btrfs")
        .args(["filesystem", "show", "--raw"])
        .arg(mount)
        .output_string()?;
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("devid")).then(|| {
                let words: Vec<&str> = w.collect();
                words
                    .iter()
                    .position(|x| *x == "size")
                    .and_then(|i| words.get(i + 1))
                    .and_then(|s| s.parse().ok())
            })?
        })
        .ok_or_else(|| Error::NoDeviceSize {
            mount: mount.to_path_buf(),
        })
}

/// Measures the layers under `state/encrypted` (the state partition mounted at `state`).
pub fn stack(state: &Path) -> Result<Stack> {
    let mount = state.join(ENCRYPTED);
    let image = state.join(IMAGE);
    let source = mount_source(&mount)?.ok_or(Error::NotMounted {
        path: mount.clone(),
    })?;
    let dev = std::fs::canonicalize(&source).ctx("resolving", &source)?;
    let name = dev
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sys = PathBuf::from("/sys/class/block").join(&name);
    let (loop_name, dm_name) = if name.starts_with("dm-") {
        let slaves = sys.join("slaves");
        let slave = std::fs::read_dir(&slaves)
            .ctx("listing", &slaves)?
            .flatten()
            .next()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .unwrap_or_default();
        (slave, Some(read_sys(&sys.join("dm/name"))?))
    } else {
        (name.clone(), None)
    };
    let loop_sys = PathBuf::from("/sys/class/block").join(&loop_name);
    let backing = read_sys(&loop_sys.join("loop/backing_file")).map_err(|_| Error::NotOnLoop {
        mount: mount.clone(),
        device: loop_name.clone(),
    })?;
    let backing = PathBuf::from(backing.trim_end_matches(" (deleted)"));
    let image_size = std::fs::metadata(&image).ctx("measuring", &image)?.len();
    let sectors = |p: &Path| -> Result<u64> {
        let s = read_sys(&p.join("size"))?;
        s.parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(512))
            .ok_or(Error::BadSectorCount {
                path: p.join("size"),
                value: s,
            })
    };
    let offset = match dm_name {
        Some(_) => sectors(&loop_sys)?.saturating_sub(sectors(&sys)?),
        None => 0,
    };
    if std::fs::canonicalize(&backing).ok() != std::fs::canonicalize(&image).ok() {
        return Err(Error::WrongBacking {
            mount,
            backing,
            image,
        });
    }
    let (_, used, free) = statvfs(&mount)?;
    let (_, _, partition_free) = statvfs(state)?;
    Ok(Stack {
        image,
        image_size,
        loop_device: PathBuf::from("/dev").join(&loop_name),
        dm_name,
        offset,
        fs_size: btrfs_size(&mount)?,
        used,
        free,
        partition_free,
        mount,
    })
}

/// What `--auto` decides for `stack`: the new image size, or `None` to leave it.
pub fn decide(stack: &Stack, policy: &Policy) -> Option<u64> {
    let size = stack.image_size;
    let pct = |p: u8| size / 100 * u64::from(p);
    let room = stack.partition_free.saturating_sub(policy.reserve);
    if stack.free < pct(policy.grow_below) {
        // Free space to reach target_free of the new size: used / (1 - t).
        let want = target_for(stack, policy);
        let grow = want.saturating_sub(size).min(round_down(room));
        return (grow >= STEP).then(|| size + grow);
    }
    if stack.free > pct(policy.shrink_above) {
        let want = target_for(stack, policy);
        return (want + STEP <= size).then_some(want);
    }
    None
}

/// The image size at which `target_free` percent of it is free, at least the floor.
fn target_for(stack: &Stack, policy: &Policy) -> u64 {
    let used = stack.used.saturating_add(stack.offset);
    let keep = 100u64.saturating_sub(u64::from(policy.target_free)).max(1);
    round_up(used.saturating_mul(100) / keep).max(floor(stack))
}

/// The smallest image `stack` may shrink to: used + margin, at least [`MIN_IMAGE`].
pub fn floor(stack: &Stack) -> u64 {
    round_up(stack.used + MARGIN + stack.offset).max(MIN_IMAGE)
}

/// What one resize did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// The image size before.
    pub from: u64,
    /// The image size after.
    pub to: u64,
    /// How long it took, in milliseconds.
    pub millis: u128,
    /// Whether an interrupted resize was found and completed.
    pub completed_interrupted: bool,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from == self.to {
            write!(f, "encrypted image stays at {} MiB", self.to >> 20)
        } else {
            write!(
                f,
                "encrypted image resized from {} MiB to {} MiB in {} ms",
                self.from >> 20,
                self.to >> 20,
                self.millis
            )
        }
    }
}

/// Resizes the image under `state` to `target` bytes (rounded to [`STEP`], clamped to the floor
/// and to the partition's room), growing or shrinking.
pub fn resize(state: &Path, target: u64, policy: &Policy, report: &dyn Report) -> Result<Outcome> {
    let started = Instant::now();
    let pending = state.join(PENDING);
    let completed_interrupted = pending.exists();
    if completed_interrupted {
        report.report(Event::note("completing an interrupted resize"));
    }
    let s = stack(state)?;
    let from = s.image_size;
    let room = round_down(s.partition_free.saturating_sub(policy.reserve));
    let target = round_up(target).max(floor(&s));
    let target = target.min(from.saturating_add(room).max(from));
    let record = serde_json::json!({ "from": from, "to": target });
    realms_sys::atomic::write_file(&pending, record.to_string().as_bytes(), 0o644)?;
    hit("state-resize-pending");
    // The fs must fit the device: a grow makes the lower layers larger first, a shrink last.
    if target >= from || s.fs_size + s.offset < s.image_size {
        grow_layers(&s, target.max(s.image_size), report)?;
    }
    let to = if target < from {
        shrink(&s, target, report)?
    } else {
        target
    };
    let millis = started.elapsed().as_millis();
    let last = serde_json::json!({
        "from": from, "to": to, "millis": millis,
        "time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    });
    realms_sys::atomic::write_file(state.join(LAST), last.to_string().as_bytes(), 0o644)?;
    hit("state-resize-last");
    std::fs::remove_file(&pending).ctx("removing", &pending)?;
    // The timer's run also keeps the generator's list in step with the open image.
    crate::entries::refresh_list(state)?;
    Ok(Outcome {
        from,
        to,
        millis,
        completed_interrupted,
    })
}

/// Grow: file, loop, dm-crypt, btrfs.
fn grow_layers(s: &Stack, size: u64, report: &dyn Report) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&s.image)
        .ctx("opening", &s.image)?;
    if file.metadata().ctx("measuring", &s.image)?.len() < size {
        file.set_len(size).ctx("extending", &s.image)?;
    }
    drop(file);
    hit("state-grow-file");
    realms_sys::loopdev::set_capacity_of(&s.loop_device)?;
    hit("state-grow-loop");
    if let Some(dm) = &s.dm_name {
        Cmd::new("cryptsetup").args(["resize", dm]).run()?;
        hit("state-grow-crypt");
    }
    Cmd::new("btrfs")
        .args(["filesystem", "resize", "max"])
        .arg(&s.mount)
        .run()?;
    hit("state-grow-fs");
    report.report(Event::progress(format!(
        "grew the encrypted image to {} MiB",
        size >> 20
    )));
    Ok(())
}

/// Shrink: btrfs (bisecting on ENOSPC), dm-crypt, file, loop. Returns the new image size.
fn shrink(s: &Stack, target: u64, report: &dyn Report) -> Result<u64> {
    let current = btrfs_size(&s.mount)?;
    let mut want = target.saturating_sub(s.offset);
    let mut done = current;
    for _ in 0..8 {
        if want >= current {
            break;
        }
        let out = Cmd::new("btrfs")
            .args(["filesystem", "resize", &want.to_string()])
            .arg(&s.mount)
            .run();
        match out {
            Ok(()) => {
                done = want;
                break;
            }
            Err(e) if e.to_string().contains("No space left") => {
                let next = round_up(want + (current - want) / 2);
                report.report(Event::note(format!(
                    "btrfs cannot shrink to {} MiB yet; trying {} MiB",
                    want >> 20,
                    next >> 20
                )));
                want = next;
            }
            Err(e) => return Err(e.into()),
        }
    }
    hit("state-shrink-fs");
    // From here on, what btrfs really has decides; never cut below it.
    let fs = btrfs_size(&s.mount)?.max(done);
    if let Some(dm) = &s.dm_name {
        Cmd::new("cryptsetup")
            .args(["resize", dm, "--size", &(fs / 512).to_string()])
            .run()?;
        hit("state-shrink-crypt");
    }
    let size = fs + s.offset;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&s.image)
        .ctx("opening", &s.image)?;
    file.set_len(size).ctx("truncating", &s.image)?;
    drop(file);
    hit("state-shrink-file");
    realms_sys::loopdev::set_capacity_of(&s.loop_device)?;
    hit("state-shrink-loop");
    report.report(Event::progress(format!(
        "shrank the encrypted image to {} MiB",
        size >> 20
    )));
    Ok(size)
}

/// `realms state resize --auto`: decide and resize, or do nothing.
pub fn auto(state: &Path, policy: &Policy, report: &dyn Report) -> Result<Outcome> {
    let s = stack(state)?;
    match decide(&s, policy) {
        Some(size) => resize(state, size, policy, report),
        None if state.join(PENDING).exists() => resize(state, s.image_size, policy, report),
        None => Ok(Outcome {
            from: s.image_size,
            to: s.image_size,
            millis: 0,
            completed_interrupted: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(size: u64, used: u64, partition_free: u64) -> Stack {
        Stack {
            image: "/state/encrypted.img".into(),
            image_size: size,
            loop_device: "/dev/loop0".into(),
            dm_name: Some("state-encrypted".into()),
            offset: 16 << 20,
            mount: "/state/encrypted".into(),
            fs_size: size - (16 << 20),
            used,
            free: size - (16 << 20) - used,
            partition_free,
        }
    }

    const G: u64 = 1 << 30;

    #[test]
    fn grows_when_nearly_full_and_the_partition_has_room() {
        let p = Policy::default();
        let s = stack(4 * G, 4 * G - (16 << 20) - (100 << 20), 20 * G);
        let to = decide(&s, &p).unwrap();
        assert!(to > 4 * G);
        // Afterwards about target_free percent is free.
        let free = to - s.used - s.offset;
        assert!(
            free * 100 / to >= u64::from(p.target_free),
            "{free} of {to}"
        );
        assert_eq!(to % STEP, 0);
    }

    #[test]
    fn growth_keeps_the_reserve_for_the_unencrypted_side() {
        let p = Policy::default();
        let s = stack(4 * G, 4 * G - (16 << 20) - (100 << 20), G + 10 * STEP);
        assert_eq!(decide(&s, &p), Some(4 * G + 10 * STEP));
        let s = stack(4 * G, 4 * G - (16 << 20) - (100 << 20), G);
        assert_eq!(decide(&s, &p), None);
    }

    #[test]
    fn shrinks_when_mostly_empty_never_below_used_plus_margin() {
        let p = Policy::default();
        let s = stack(10 * G, G, 0);
        let to = decide(&s, &p).unwrap();
        assert!(to < 10 * G && to >= floor(&s));
        assert!(to >= s.used + s.offset + MARGIN);
        let tiny = stack(2 * G, 1 << 20, 0);
        assert_eq!(decide(&tiny, &p), Some(MIN_IMAGE));
    }

    #[test]
    fn leaves_a_balanced_image_alone() {
        let s = stack(4 * G, 2 * G, 10 * G);
        assert_eq!(decide(&s, &Policy::default()), None);
    }
}
