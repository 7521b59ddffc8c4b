//! `realms run` and `realms shell`: a command inside a running realm (started first if need
//! be), entered through the namespaces of the realm's init, with stdio passed through (or a
//! pty of the realm's), signals forwarded, and the exit codes of a shell (127, 126, 128+N).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use realms_sys::ns::{self, Credentials};
use realms_sys::root::RootDir;
use realms_sys::session;

use crate::error::ExecProblem;
use crate::plan::{RealHost, plan};
use crate::store::RealmStore;
use crate::{Error, Result, launch};
use realms_sys::event::Report;

/// An account in the realm's `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Its home directory.
    pub home: PathBuf,
    /// Its login shell.
    pub shell: PathBuf,
    /// Its primary and supplementary groups.
    pub groups: Vec<u32>,
}

/// Starts the realm if it is not running (saying so through `say`); an orphaned realm (its
/// nspawn was killed) is stopped and started afresh.
pub fn ensure_running(store: &RealmStore, name: &str, say: &dyn Report) -> Result<()> {
    store.check_exists(name)?;
    if launch::state(store, name) != launch::State::Running {
        let _lock = store.lock()?;
        launch::start_locked(store, name, say)?;
    }
    Ok(())
}

/// Whether the command gets a pseudo-terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tty {
    /// When stdin and stdout are terminals (like `machinectl shell`, `docker exec -it`).
    #[default]
    Auto,
    /// Always (`-t`).
    Always,
    /// Never (`-T`).
    Never,
}

impl Tty {
    fn wanted(self) -> bool {
        use std::os::fd::AsFd;
        match self {
            Tty::Always => true,
            Tty::Never => false,
            Tty::Auto => {
                session::is_terminal(std::io::stdin().as_fd())
                    && session::is_terminal(std::io::stdout().as_fd())
            }
        }
    }
}

/// How `realms run` runs its command.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The realm user to run as (root when `None`).
    pub user: Option<String>,
    /// Extra environment (`--env K=V`), set last.
    pub env: Vec<(String, String)>,
    /// The working directory inside the realm (default: the user's home, else `/`).
    pub cwd: Option<PathBuf>,
    /// Whether the command gets a pty.
    pub tty: Tty,
    /// Supplementary groups added to the user's (gids as the host sees them: the groups of
    /// the devices the realm's options bound, so the realm user can open them).
    pub groups: Vec<u32>,
}

/// Parses `--env` values: `KEY=VALUE`, or `KEY` alone for the host's value of KEY.
pub fn parse_env(arg: &str) -> std::result::Result<(String, String), String> {
    let (key, value) = match arg.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (arg, None),
    };
    let valid = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "'{key}' is not an environment variable name (letters, digits and _, not starting with a digit)"
        ));
    }
    match value.or_else(|| std::env::var(key).ok()) {
        Some(v) => Ok((key.to_string(), v)),
        None => Err(format!(
            "{key} is not set here; pass {key}=VALUE to give it a value"
        )),
    }
}

/// Runs `argv` in realm `name`; returns the exit code to exit with (128 + the signal number
/// when the command was killed by a signal). A command that is missing or cannot be executed
/// is [`Error::CommandNotFound`] or [`Error::NotExecutable`] (exit codes 127 and 126).
pub fn run(
    store: &RealmStore,
    name: &str,
    argv: &[OsString],
    opts: &RunOptions,
    say: &dyn Report,
) -> Result<i32> {
    let Some(program) = argv.first() else {
        return Err(Error::NoCommand {
            name: name.to_string(),
        });
    };
    if let Some(cwd) = &opts.cwd
        && !cwd.is_absolute()
    {
        return Err(Error::RelativeCwd {
            name: name.to_string(),
            cwd: cwd.clone(),
        });
    }
    ensure_running(store, name, say)?;
    let config = store.config(name)?;
    let plan = plan(store, name, &config, &RealHost)?;
    let leader = launch::leader(store, name)?;
    let user = opts.user.as_deref().unwrap_or("root");
    let account = lookup(leader, name, user, "")?;
    let pty = opts.tty.wanted();
    let env = environment(&account, &plan.environment, &opts.env, pty);
    let entered = ns::enter(leader)?;
    // From here on, paths are the realm's.
    let cwd = match &opts.cwd {
        Some(dir) if dir.is_dir() => dir.clone(),
        Some(dir) => {
            return Err(Error::NoCwd {
                name: name.to_string(),
                cwd: dir.clone(),
            });
        }
        None if account.home.is_dir() => account.home.clone(),
        None => PathBuf::from("/"),
    };
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone());
    let resolved = resolve(program, path.as_deref().unwrap_or_default())
        .map_err(|e| e.into_error(name, program))?;
    let job = session::Job {
        program: resolved,
        argv: argv.to_vec(),
        env,
        cwd,
        creds: Credentials {
            uid: account.uid,
            gid: account.gid,
            groups: account.groups.iter().chain(&opts.groups).copied().collect(),
        },
        // Not the realm's control group: moving a process between groups waits for an RCU
        // grace period (~15 ms here). The command is in the realm's PID namespace, so it ends
        // with the realm's init whichever way the realm stops.
        cgroup: None,
        cgroup_ns: Some(entered.cgroup_ns),
        pty: if pty {
            Some(session::Pty::open(account.uid)?)
        } else {
            None
        },
    };
    let status = session::run(job).map_err(|e| match e {
        realms_sys::Error::Spawn { source, .. } => Error::NotExecutable {
            name: name.to_string(),
            command: program.to_string_lossy().into_owned(),
            reason: ExecProblem::Os(source),
        },
        e => e.into(),
    })?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// The command's environment: a login's basics, the caller's terminal settings, what the
/// realm's options provide, then `--env`.
fn environment(
    account: &Account,
    realm: &[(String, String)],
    extra: &[(String, String)],
    pty: bool,
) -> Vec<(OsString, OsString)> {
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
    if pty && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "vt220".into()));
    }
    for (k, v) in realm.iter().chain(extra) {
        env.retain(|(key, _)| key != k.as_str());
        env.push((k.into(), v.into()));
    }
    env
}

/// Why a command cannot be run.
#[derive(Debug)]
enum Unrunnable {
    NotFound,
    NotExecutable(ExecProblem),
}

impl Unrunnable {
    fn into_error(self, name: &str, program: &OsString) -> Error {
        let command = program.to_string_lossy().into_owned();
        match self {
            Unrunnable::NotFound => Error::CommandNotFound {
                name: name.to_string(),
                command,
            },
            Unrunnable::NotExecutable(reason) => Error::NotExecutable {
                name: name.to_string(),
                command,
                reason,
            },
        }
    }
}

/// Finds `program` as a shell would: a path as it is, a bare name in `path`'s directories.
fn resolve(program: &OsString, path: &OsStr) -> std::result::Result<PathBuf, Unrunnable> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let check = |p: &Path| match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => Some(Err(Unrunnable::NotExecutable(ExecProblem::Directory))),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Some(Err(Unrunnable::NotExecutable(ExecProblem::NotExecutable)))
        }
        Ok(_) => Some(Ok(p.to_path_buf())),
        Err(_) => None,
    };
    if program.is_empty() {
        return Err(Unrunnable::NotFound);
    }
    if program.as_bytes().contains(&b'/') {
        return check(Path::new(program)).unwrap_or(Err(Unrunnable::NotFound));
    }
    let mut first_problem = None;
    for dir in path.as_bytes().split(|b| *b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        match check(&dir.join(program)) {
            Some(Ok(found)) => return Ok(found),
            Some(Err(problem)) => {
                first_problem.get_or_insert(problem);
            }
            None => {}
        }
    }
    Err(first_problem.unwrap_or(Unrunnable::NotFound))
}

/// `realms shell NAME [--root]`: a login shell as the realm user `user` (or root), on a pty
/// when stdin and stdout are terminals.
pub fn shell(store: &RealmStore, name: &str, as_root: bool, say: &dyn Report) -> Result<i32> {
    ensure_running(store, name, say)?;
    let user = if as_root { "root" } else { "user" };
    let leader = launch::leader(store, name)?;
    let hint = if as_root {
        ""
    } else {
        "; use `realms shell --root`"
    };
    let account = lookup(leader, name, user, hint)?;
    let argv: Vec<OsString> = vec![account.shell.into(), "-l".into()];
    let opts = RunOptions {
        user: Some(user.to_string()),
        ..RunOptions::default()
    };
    run(store, name, &argv, &opts, say)
}

/// Looks up `user` (a name or a numeric uid) in the container's passwd and group files, read
/// inside the container's root so that no symlink can lead out of it. `hint` follows the
/// error of a missing user (realm `name`).
fn lookup(leader: u32, name: &str, user: &str, hint: &'static str) -> Result<Account> {
    let root = RootDir::open(format!("/proc/{leader}/root"))?;
    let passwd = root.read_capped_to_string("etc/passwd", realms_sys::untrusted::TEXT_CAP)?;
    let group = root
        .read_capped_to_string("etc/group", realms_sys::untrusted::TEXT_CAP)
        .unwrap_or_default();
    parse_account(&passwd, &group, user).ok_or_else(|| Error::NoSuchUser {
        name: name.to_string(),
        user: user.to_string(),
        hint,
    })
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

    #[test]
    fn env_arguments_need_a_name_and_a_value() {
        assert_eq!(parse_env("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert_eq!(parse_env("_X1="), Ok(("_X1".into(), String::new())));
        assert!(parse_env("1A=x").unwrap_err().contains("1A"));
        assert!(parse_env("=x").is_err());
        assert!(parse_env("A-B=x").is_err());
        assert!(
            parse_env("REALMS_SURELY_UNSET_VAR")
                .unwrap_err()
                .contains("not set")
        );
        let path = std::env::var("PATH").unwrap();
        assert_eq!(parse_env("PATH"), Ok(("PATH".into(), path)));
    }

    #[test]
    fn environment_puts_options_and_env_last() {
        let account = parse_account("user:x:1000:1000::/home/user:/bin/bash", "", "user").unwrap();
        let realm = [("DISPLAY".to_string(), ":0".to_string())];
        let extra = [
            ("PATH".to_string(), "/bin".to_string()),
            ("DISPLAY".to_string(), ":1".to_string()),
        ];
        let env = environment(&account, &realm, &extra, true);
        let get = |k: &str| {
            let all: Vec<_> = env.iter().filter(|(key, _)| key == k).collect();
            assert!(all.len() <= 1, "{k} is set twice");
            all.first().map(|(_, v)| v.to_string_lossy().into_owned())
        };
        assert_eq!(get("PATH").as_deref(), Some("/bin"));
        assert_eq!(get("DISPLAY").as_deref(), Some(":1"));
        assert_eq!(get("HOME").as_deref(), Some("/home/user"));
        assert!(get("TERM").is_some(), "a pty gets a TERM");
    }

    #[test]
    fn commands_resolve_like_a_shell_finds_them() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let file = |p: &Path, mode: u32| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        file(&a.join("tool"), 0o644);
        file(&b.join("tool"), 0o755);
        file(&a.join("plain"), 0o644);
        std::fs::create_dir(b.join("dir")).unwrap();
        let path = OsString::from(format!("{}:{}", a.display(), b.display()));
        let find = |p: &str| resolve(&OsString::from(p), &path);
        // The first executable match wins over an earlier file that is not executable.
        assert_eq!(find("tool").unwrap(), b.join("tool"));
        assert!(matches!(
            find("plain"),
            Err(Unrunnable::NotExecutable(ExecProblem::NotExecutable))
        ));
        assert!(matches!(
            find("dir"),
            Err(Unrunnable::NotExecutable(ExecProblem::Directory))
        ));
        assert!(matches!(find("missing"), Err(Unrunnable::NotFound)));
        assert!(matches!(find(""), Err(Unrunnable::NotFound)));
        let abs = b.join("tool");
        assert_eq!(find(abs.to_str().unwrap()).unwrap(), abs);
        assert!(matches!(
            find(a.join("plain").to_str().unwrap()),
            Err(Unrunnable::NotExecutable(_))
        ));
        assert!(matches!(find("/no/such/file"), Err(Unrunnable::NotFound)));
    }

    #[test]
    fn errors_carry_a_shell_exit_code() {
        let nf = Unrunnable::NotFound.into_error("r", &OsString::from("x"));
        assert_eq!(nf.exit_code(), 127);
        assert!(nf.to_string().contains("command not found"), "{nf}");
        let ne =
            Unrunnable::NotExecutable(ExecProblem::Directory).into_error("r", &OsString::from("x"));
        assert_eq!(ne.exit_code(), 126);
        assert_eq!(Error::NoCommand { name: "r".into() }.exit_code(), 1);
    }
}
