//! Security profiles: `DIR/NAME/<unit type>.conf` looked up where systemd keeps them, plus the
//! four profiles systemd ships (default, nonetwork, strict, trusted), embedded so Realms can
//! install them on a host whose systemd lacks them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::{Host, PROFILE_DIRS};

/// The profiles systemd 252 ships, as `(name, service.conf)`; they are systemd's config facts.
pub const BUILTIN: [(&str, &str); 4] = [
    ("default", include_str!("../profiles/default/service.conf")),
    (
        "nonetwork",
        include_str!("../profiles/nonetwork/service.conf"),
    ),
    ("strict", include_str!("../profiles/strict/service.conf")),
    ("trusted", include_str!("../profiles/trusted/service.conf")),
];

/// Where Realms installs its copies when no profile directory has them: the lowest-priority
/// directory, so anything systemd or the administrator provides still wins.
pub const INSTALL_DIR: &str = "/usr/local/lib/systemd/portable/profile";
/// The fallback when `/usr/local` is read-only (an immutable `/usr`).
pub const INSTALL_FALLBACK_DIR: &str = "/etc/systemd/portable/profile";

/// Whether `name` can name a profile (it becomes a directory name).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && name.len() <= 255
}

/// Refuses a profile name that cannot name a profile directory (as portablectl does).
pub fn check_name(name: &str) -> Result<()> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(Error::BadProfileName(name.to_owned()))
    }
}

/// The drop-in of profile `name` for unit `unit` (`.../NAME/service.conf` for a service), if any.
pub fn find(host: &Host, name: &str, unit: &str) -> Option<PathBuf> {
    let suffix = unit.rsplit_once('.').map_or(unit, |(_, s)| s);
    PROFILE_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name).join(format!("{suffix}.conf")))
        .find(|p| host.dir().symlink_metadata(p).ok().flatten().is_some())
}

/// Every profile name in the profile directories (and the built-in ones), sorted.
pub fn list(host: &Host) -> Vec<String> {
    let mut names: BTreeSet<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
    for dir in PROFILE_DIRS {
        if let Ok(entries) = host.dir().read_dir(dir) {
            for (name, ty) in entries {
                let is_dir = ty == realms_sys::root::FileType::Directory
                    || host
                        .dir()
                        .metadata(Path::new(dir).join(&name))
                        .ok()
                        .flatten()
                        .is_some_and(|m| m.is_dir());
                if is_dir {
                    names.insert(name.to_string_lossy().into_owned());
                }
            }
        }
    }
    names.into_iter().collect()
}

/// Makes sure built-in profile `name` exists in a profile directory: if no directory has it,
/// installs Realms' copy; returns where it was installed (`None` if it was there already, or if
/// `name` is not a built-in profile).
pub fn ensure_installed(host: &Host, name: &str) -> Result<Option<PathBuf>> {
    let Some((_, text)) = BUILTIN.iter().find(|(n, _)| *n == name) else {
        return Ok(None);
    };
    if find(host, name, "x.service").is_some() {
        return Ok(None);
    }
    let mut last_err = None;
    for dir in [INSTALL_DIR, INSTALL_FALLBACK_DIR] {
        let path = Path::new(dir).join(name).join("service.conf");
        let parent = path.parent().expect("a profile file has a directory");
        let result = host
            .dir()
            .create_dir_all(parent, 0o755)
            .and_then(|()| host.dir().write_atomic(&path, text.as_bytes(), 0o644));
        match result {
            Ok(()) => return Ok(Some(path)),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.map_or_else(
        || Error::ProfileInstall {
            name: name.to_owned(),
        },
        Error::from,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_systemd_252_profiles() {
        let (_, default) = BUILTIN[0];
        assert!(default.starts_with("# The \"default\" security profile"));
        assert!(default.contains("RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6\n"));
        assert!(BUILTIN[1].1.contains("PrivateNetwork=yes\n"));
        assert!(BUILTIN[2].1.contains("TasksMax=4\n"));
        assert!(BUILTIN[3].1.contains("BindPaths=/run\n"));
    }

    #[test]
    fn installs_when_missing_and_finds_etc_first() {
        let tmp = tempfile::tempdir().unwrap();
        let host = Host::open(tmp.path()).unwrap();
        assert_eq!(find(&host, "default", "foo.service"), None);
        let installed = ensure_installed(&host, "default").unwrap().unwrap();
        assert_eq!(
            installed,
            Path::new(INSTALL_DIR).join("default/service.conf")
        );
        assert_eq!(find(&host, "default", "foo.service"), Some(installed));
        assert_eq!(ensure_installed(&host, "default").unwrap(), None);
        assert_eq!(find(&host, "default", "foo.socket"), None);
        let mine = tmp.path().join("etc/systemd/portable/profile/mine");
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(mine.join("service.conf"), "[Service]\n").unwrap();
        assert_eq!(
            find(&host, "mine", "a.service"),
            Some(PathBuf::from(
                "/etc/systemd/portable/profile/mine/service.conf"
            ))
        );
        assert!(list(&host).contains(&"mine".to_string()));
        assert!(is_valid_name("strict") && !is_valid_name("../x"));
    }
}
