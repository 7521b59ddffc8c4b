//! `realms run` and `realms shell`: a command inside a running realm (started first if need
//! be), entered through the namespaces of the realm's init, with stdio passed through.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use realms_sys::ns::{self, Credentials};
use realms_sys::root::RootDir;

use crate::plan::{RealHost, plan};
use crate::store::RealmStore;
use crate::{Error, Result, launch};

/// An account in the realm's `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub shell: PathBuf,
    pub groups: Vec<u32>,
}

/// Starts the realm if it is not running (saying so through `say`).
pub fn ensure_running(store: &RealmStore, name: &str, say: &dyn Fn(&str)) -> Result<()> {
    store.check_exists(name)?;
    if !launch::is_running(store, name) {
        let _lock = store.lock()?;
        launch::start_locked(store, name, say)?;
    }
    Ok(())
}

/// Runs `argv` in realm `name` as `user` (root when `None`); returns the exit code to exit with
/// (128 + the signal number when the command was killed by a signal).
pub fn run(
    store: &RealmStore,
    name: &str,
    user: Option<&str>,
    argv: &[OsString],
    say: &dyn Fn(&str),
) -> Result<i32> {
    if argv.is_empty() {
        return Err(Error::realm(
            name,
            "no command given; use `realms run NAME -- COMMAND [ARGS...]`",
        ));
    }
    ensure_running(store, name, say)?;
    let config = store.config(name)?;
    let plan = plan(store, name, &config, &RealHost)?;
    let leader = launch::leader(store, name)?;
    let account = lookup(leader, user.unwrap_or("root")).map_err(|m| Error::realm(name, m))?;
    let mut env: Vec<(OsString, OsString)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOME".into(), account.home.clone().into()),
        ("USER".into(), account.name.clone().into()),
        ("LOGNAME".into(), account.name.clone().into()),
        ("SHELL".into(), account.shell.clone().into()),
        ("container".into(), "systemd-nspawn".into()),
    ];
    for key in ["TERM", "LANG", "COLORTERM"] {
        if let Some(v) = std::env::var_os(key) {
            env.push((key.into(), v));
        }
    }
    env.extend(plan.environment.iter().map(|(k, v)| (k.into(), v.into())));
    let creds = Credentials {
        uid: account.uid,
        gid: account.gid,
        groups: account.groups.clone(),
    };
    ns::enter(leader)?;
    let cwd = if account.home.is_dir() {
        account.home.as_path()
    } else {
        Path::new("/")
    };
    let status = ns::run_as(argv, &env, cwd, &creds)?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// `realms shell NAME [--root]`: a login shell as the realm user `user` (or root).
pub fn shell(store: &RealmStore, name: &str, as_root: bool, say: &dyn Fn(&str)) -> Result<i32> {
    ensure_running(store, name, say)?;
    let user = if as_root { "root" } else { "user" };
    let leader = launch::leader(store, name)?;
    let account = lookup(leader, user).map_err(|m| {
        Error::realm(
            name,
            format!(
                "{m}{}",
                if as_root {
                    ""
                } else {
                    "; use `realms shell --root`"
                }
            ),
        )
    })?;
    let argv: Vec<OsString> = vec![account.shell.into(), "-l".into()];
    run(store, name, Some(user), &argv, say)
}

/// Looks up `user` (a name or a numeric uid) in the container's passwd and group files, read
/// inside the container's root so that no symlink can lead out of it.
fn lookup(leader: u32, user: &str) -> std::result::Result<Account, String> {
    let root = RootDir::open(format!("/proc/{leader}/root")).map_err(|e| e.to_string())?;
    let passwd = root
        .read_to_string("etc/passwd")
        .map_err(|e| e.to_string())?;
    let group = root.read_to_string("etc/group").unwrap_or_default();
    parse_account(&passwd, &group, user)
        .ok_or_else(|| format!("there is no user '{user}' in the realm's /etc/passwd"))
}

/// Finds `user` in passwd(5) text and its supplementary groups in group(5) text.
pub fn parse_account(passwd: &str, group: &str, user: &str) -> Option<Account> {
    let fields = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| {
            f.len() >= 7 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user))
        })?;
    let name = fields[0].to_string();
    let uid = fields[2].parse().ok()?;
    let gid = fields[3].parse().ok()?;
    let mut groups = vec![gid];
    for g in group.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
        if g.len() >= 4
            && g[3].split(',').any(|m| m == name)
            && let Ok(id) = g[2].parse()
            && !groups.contains(&id)
        {
            groups.push(id);
        }
    }
    let shell = if fields[6].is_empty() {
        "/bin/sh"
    } else {
        fields[6]
    };
    Some(Account {
        name,
        uid,
        gid,
        home: fields[5].into(),
        shell: shell.into(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_and_groups() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\nbad\n";
        let group = "root:x:0:\naudio:x:29:user\nvideo:x:44:other,user\nuser:x:1000:\n";
        let a = parse_account(passwd, group, "user").unwrap();
        assert_eq!(
            (a.uid, a.gid, a.groups.clone()),
            (1000, 1000, vec![1000, 29, 44])
        );
        assert_eq!(a.home, PathBuf::from("/home/user"));
        assert_eq!(parse_account(passwd, group, "0").unwrap().name, "root");
        assert!(parse_account(passwd, group, "nobody").is_none());
    }
}
