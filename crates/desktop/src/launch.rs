//! `realms launch REALM -- CMD...`: what published desktop entries run. Starts the realm if
//! need be, maps the host paths of files handed over ("Open with") to the realm's paths, and
//! runs the command as the realm user with the realm's session environment (its display and
//! sound sockets). Without a terminal it is detached from the caller's session, its input is
//! `/dev/null` and its output goes to `/run/realms/realm-NAME.apps.log`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use realms_realm::RealmStore;
use realms_realm::exec::{self, RunOptions, Tty};
use realms_sys::IoContext;
use realms_sys::event::{Event, Report};

use crate::{Result, session, x11};

/// How `realms launch` runs its command.
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    /// The working directory in the realm (an entry's `Path=`).
    pub cwd: Option<PathBuf>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// The caller's X display (`DISPLAY`): the realm gets its own cookie for it.
    pub display: Option<String>,
    /// The caller's X cookie file (`XAUTHORITY`), to ask the X server for the realm's cookie.
    pub xauthority: Option<PathBuf>,
}

impl LaunchOptions {
    /// The caller's display session, from its environment.
    pub fn from_env() -> LaunchOptions {
        LaunchOptions {
            display: std::env::var("DISPLAY").ok().filter(|d| !d.is_empty()),
            xauthority: std::env::var_os("XAUTHORITY").map(PathBuf::from),
            ..LaunchOptions::default()
        }
    }
}

/// Where the output of apps launched in realm `name` goes.
pub fn log_file(store: &RealmStore, name: &str) -> PathBuf {
    store.run_dir().join(format!("realm-{name}.apps.log"))
}

/// Runs `argv` in realm `name` as the realm user; returns its exit code.
pub fn launch(
    store: &RealmStore,
    name: &str,
    argv: &[OsString],
    opts: &LaunchOptions,
    say: &dyn Report,
) -> Result<i32> {
    crate::reap::reap(store, say)?;
    exec::ensure_running(store, name, say)?;
    let argv: Vec<OsString> = argv
        .iter()
        .map(|a| match a.to_str() {
            Some(s) => OsString::from(realm_path(store, name, s)),
            None => a.clone(),
        })
        .collect();
    let mut env = session_env(store, name, opts, say)?;
    env.extend(opts.env.iter().cloned());
    use std::os::fd::AsFd;
    let interactive = realms_sys::session::is_terminal(std::io::stdin().as_fd());
    if !interactive {
        detach(&log_file(store, name))?;
    }
    let run = RunOptions {
        user: Some("user".into()),
        env,
        cwd: opts.cwd.clone(),
        tty: if interactive { Tty::Auto } else { Tty::Never },
        groups: device_groups(&store.config(name)?),
    };
    Ok(exec::run(store, name, &argv, &run, say)?)
}

/// The environment the realm's options and the caller's session give the app: its session
/// directory (the sockets the realm's options bound) and its own X cookie for the caller's
/// display (use-x11).
fn session_env(
    store: &RealmStore,
    name: &str,
    opts: &LaunchOptions,
    say: &dyn Report,
) -> Result<Vec<(String, String)>> {
    let config = store.config(name)?;
    let mut cookie = None;
    let mut display_env = Vec::new();
    if config.use_x11()
        && let Some(display) = &opts.display
    {
        match x11::display_number(display) {
            None => say.report(Event::warning(format!(
                "use-x11: DISPLAY={display} is not a local display; the app gets no X11"
            ))),
            Some(n) if !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() => {
                say.report(Event::warning(format!(
                    "use-x11: there is no X server at {display} (/tmp/.X11-unix/X{n}); the app gets no X11"
                )))
            }
            Some(n) => {
                cookie = Some(x11::realm_cookie(store, name, n, opts.xauthority.as_deref())?);
                display_env.push(("DISPLAY".to_string(), format!(":{n}")));
            }
        }
    }
    let leader = realms_realm::launch::leader(store, name)?;
    let mut env = session::setup(leader, realms_realm::store::REALM_UID, cookie.as_deref())?;
    env.extend(display_env);
    Ok(env)
}

/// The groups of the devices the realm's options bind (use-gpu: the render node, use-kvm:
/// /dev/kvm), as the host sees them: the realm user gets them, so the devices work for it and
/// not only for root, whatever gid the realm's own `render` or `kvm` group has.
fn device_groups(config: &realms_realm::config::RealmConfig) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    [
        (config.use_gpu(), "/dev/dri/renderD128"),
        (config.use_kvm(), "/dev/kvm"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .filter_map(|(_, dev)| std::fs::metadata(dev).ok())
    .map(|m| m.gid())
    .filter(|gid| *gid != 0)
    .collect()
}

/// A new session, input from `/dev/null`, output appended to `log`.
fn detach(log: &Path) -> Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .ctx("opening", log)?;
    let null = std::fs::File::open("/dev/null").ctx("opening", Path::new("/dev/null"))?;
    rustix::stdio::dup2_stdin(&null).ctx("redirecting the input of", log)?;
    rustix::stdio::dup2_stdout(&out).ctx("redirecting the output to", log)?;
    rustix::stdio::dup2_stderr(&out).ctx("redirecting the output to", log)?;
    // Already a session leader (started by a service manager): keep it.
    let _ = rustix::process::setsid();
    Ok(())
}

/// The realm's path for a host path (or `file://` URI) handed to an app: files in the realm's
/// home and in the Shared directory are visible in the realm at `/home/user/...`; anything else
/// is passed as it is.
pub fn realm_path(store: &RealmStore, name: &str, arg: &str) -> String {
    let (scheme, path) = match arg.strip_prefix("file://") {
        Some(rest) => ("file://", rest),
        None => ("", arg),
    };
    if !path.starts_with('/') {
        return arg.to_string();
    }
    let realm_dir = store.realm_dir(name);
    let homes = [
        (realm_dir.join("home"), "/home/user".to_string()),
        (store.dir().join("Shared"), "/home/user/Shared".to_string()),
        (
            store.root().join(format!("realms/realm-{name}/home")),
            "/home/user".to_string(),
        ),
        (
            store.root().join("realms/Shared"),
            "/home/user/Shared".to_string(),
        ),
    ];
    for (host, inside) in homes {
        if let Ok(rest) = Path::new(path).strip_prefix(&host) {
            let mapped = Path::new(&inside).join(rest);
            return format!("{scheme}{}", mapped.display());
        }
    }
    arg.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_in_the_realm_home_and_shared_are_mapped_others_passed_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let store = RealmStore::open(dir.path()).unwrap();
        let home = store.realm_dir("work").join("home");
        let shared = store.dir().join("Shared");
        let m = |a: &str| realm_path(&store, "work", a);
        assert_eq!(
            m(&format!("{}/doc.txt", home.display())),
            "/home/user/doc.txt"
        );
        assert_eq!(
            m(&format!("file://{}/a b.pdf", shared.display())),
            "file:///home/user/Shared/a b.pdf"
        );
        assert_eq!(m("/etc/hosts"), "/etc/hosts");
        assert_eq!(m("--new-window"), "--new-window");
        assert_eq!(m("https://example.org/"), "https://example.org/");
        let other = store.realm_dir("other").join("home/x");
        assert_eq!(m(&other.display().to_string()), other.display().to_string());
    }
}
