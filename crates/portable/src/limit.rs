//! `set-limit`: the disk quota of one image or of the image pool, as portablectl 252 sets it —
//! a btrfs quota-group limit on a subvolume image (or on `/var/lib/portables`); other image
//! kinds have no quota.

use crate::error::{Error, Result};
use crate::image::{Image, ImageKind};
use crate::layout::Host;

/// The pool whose limit `set-limit LIMIT` sets.
pub const POOL: &str = "/var/lib/portables";

/// Parses a limit as portablectl does: `-`, `none` or `infinity` for none, else a size with an
/// optional 1024-based suffix (`B`, `K`, `M`, `G`, `T`, `P`, `E`), fractions allowed (`1.5G`).
pub fn parse_limit(s: &str) -> Result<Option<u64>> {
    if matches!(s, "-" | "none" | "infinity") {
        return Ok(None);
    }
    let bad = || Error::BadLimit(s.to_owned());
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let shift = match suffix.trim() {
        "" | "B" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        "P" => 50,
        "E" => 60,
        _ => return Err(bad()),
    };
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || !frac.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let unit: u64 = 1 << shift;
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let mut bytes = whole.checked_mul(unit).ok_or_else(bad)?;
    if !frac.is_empty() {
        // Fractions of the unit, truncated to whole bytes, as systemd's parse_size.
        let digits = &frac[..frac.len().min(18)];
        let num: u128 = digits.parse().map_err(|_| bad())?;
        let den = 10u128.pow(digits.len() as u32);
        let part = u64::try_from(num * u128::from(unit) / den).map_err(|_| bad())?;
        bytes = bytes.checked_add(part).ok_or_else(bad)?;
    }
    Ok(Some(bytes))
}

/// Sets the quota limit of `image` (a name or in-root path), or of the pool without one.
pub fn set_limit(host: &Host, image: Option<&str>, limit: Option<u64>) -> Result<()> {
    let target = match image {
        Some(name) => {
            let image = Image::find(host, name)?;
            if image.is_vendor() {
                return Err(Error::VendorImage(image.path.display().to_string()));
            }
            if image.kind != ImageKind::Subvolume {
                return Err(Error::NoQuota(image.path.display().to_string()));
            }
            host.host_path(&image.path)?
        }
        None => {
            let pool = host.host_path(std::path::Path::new(POOL))?;
            if !realms_sys::btrfs::is_btrfs(&pool).unwrap_or(false) {
                return Err(Error::NoQuota(POOL.to_owned()));
            }
            pool
        }
    };
    let value = limit.map_or_else(|| "none".to_owned(), |b| b.to_string());
    realms_sys::cmd::Cmd::new("btrfs")
        .args(["qgroup", "limit"])
        .arg(&value)
        .arg(&target)
        .run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_portablectl_parses_them() {
        assert_eq!(parse_limit("none").unwrap(), None);
        assert_eq!(parse_limit("-").unwrap(), None);
        assert_eq!(parse_limit("infinity").unwrap(), None);
        assert_eq!(parse_limit("4096").unwrap(), Some(4096));
        assert_eq!(parse_limit("10M").unwrap(), Some(10 << 20));
        assert_eq!(parse_limit("1.5G").unwrap(), Some(3 << 29));
        assert_eq!(parse_limit("2K").unwrap(), Some(2048));
        for bad in ["", "x", "1Q", "1.2.3M", "99999999999E", ".5M"] {
            assert!(parse_limit(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn directory_images_have_no_quota() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("var/lib/portables/foo/usr")).unwrap();
        let host = Host::open(tmp.path()).unwrap();
        let err = set_limit(&host, Some("foo"), Some(1 << 20)).unwrap_err();
        assert!(
            matches!(err, Error::NoQuota(ref p) if p == "/var/lib/portables/foo"),
            "{err}"
        );
    }
}
