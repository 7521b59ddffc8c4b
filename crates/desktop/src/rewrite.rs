//! Turning a realm's desktop entry into the host's: a whitelist of keys (locale variants
//! kept), `Exec=` through the realm launcher, `TryExec=` checked in the realm, the icon copied
//! out, `StartupWMClass=` kept or added, the realm's label and colour on it.

use std::path::Path;

use crate::entry::{self, DesktopEntry, Group, escape, split_list, unescape};
use crate::error::{EntryProblem, ExecProblem};
use crate::exec_line::{self, Arg};
use crate::{Error, Result, SkipReason};

/// Keys of `[Desktop Entry]` that are published; every other key is dropped.
const MAIN_KEYS: &[&str] = &[
    "Type",
    "Version",
    "Name",
    "GenericName",
    "NoDisplay",
    "Comment",
    "Icon",
    "OnlyShowIn",
    "NotShowIn",
    "Exec",
    "Terminal",
    "Actions",
    "MimeType",
    "Categories",
    "Keywords",
    "StartupNotify",
    "StartupWMClass",
    "PrefersNonDefaultGPU",
    "SingleMainWindow",
];

/// Keys that keep their locale variants (`Name[de]=`).
const LOCALISED: &[&str] = &["Name", "GenericName", "Comment", "Keywords"];

/// Keys of a `[Desktop Action ID]` group that are published.
const ACTION_KEYS: &[&str] = &["Name", "Icon", "Exec"];

/// What a rewrite needs to know about the realm the entry comes from.
pub struct Context<'a> {
    /// The realm's name.
    pub realm: &'a str,
    /// Its label, shown after each name (`Firefox (work)`).
    pub label: &'a str,
    /// Its colour (`#rrggbb`), published as `X-Realms-Color`.
    pub color: &'a str,
    /// The launcher's literal arguments, put in front of the entry's own command
    /// (`/usr/bin/realms launch work --`).
    pub launcher: &'a [String],
    /// True when a program (a name looked up in the realm's PATH, or an absolute path) exists
    /// and is executable in the realm.
    pub has_program: &'a dyn Fn(&str) -> bool,
    /// Maps an `Icon=` value to the value published (after copying the icon out), or `None`
    /// to keep it as it is (a name the host's theme may have).
    pub icon: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// Rewrites `entry` (desktop file id `id`, read from `path` in the realm) for the host.
/// Entries that are not published (hidden, not applications, their `TryExec=` missing) are
/// [`Error::Skipped`]; a broken `Exec=` is [`Error::BadEntry`].
pub fn rewrite(entry: &DesktopEntry, id: &str, path: &Path, cx: &Context) -> Result<DesktopEntry> {
    let skip = |reason: SkipReason| Error::Skipped {
        path: path.to_path_buf(),
        reason,
    };
    let bad = |problem: ExecProblem| Error::BadEntry {
        path: path.to_path_buf(),
        line: 0,
        problem: EntryProblem::Exec(problem),
    };
    let main = entry.main();
    if main.get("Type") != Some("Application") {
        return Err(skip(SkipReason::NotApplication));
    }
    if main.flag("Hidden") {
        return Err(skip(SkipReason::Hidden));
    }
    if let Some(try_exec) = main.get("TryExec")
        && !(cx.has_program)(&unescape(try_exec))
    {
        return Err(skip(SkipReason::TryExecMissing(try_exec.to_string())));
    }
    let exec = main.get("Exec").ok_or_else(|| skip(SkipReason::NoExec))?;
    let mut out = Group {
        name: "Desktop Entry".into(),
        items: main
            .items
            .iter()
            .filter(|i| MAIN_KEYS.contains(&i.key.as_str()))
            .filter(|i| i.locale.is_none() || LOCALISED.contains(&i.key.as_str()))
            .cloned()
            .collect(),
    };
    let cwd = main.get("Path").map(unescape);
    out.set("Exec", launch_line(exec, cx, cwd.as_deref()).map_err(&bad)?);
    for item in out.items.iter_mut().filter(|i| i.key == "Name") {
        item.value = format!("{} ({})", item.value, escape(cx.label));
    }
    if out.get("StartupWMClass").is_none() {
        out.set("StartupWMClass", id.trim_end_matches(".desktop"));
    }
    if let Some(icon) = main.get("Icon")
        && let Some(published) = (cx.icon)(&unescape(icon))
    {
        out.set("Icon", escape(&published));
    }
    out.set("X-Realms-Realm", cx.realm);
    out.set("X-Realms-Color", cx.color);

    let mut groups = vec![out];
    let mut kept_actions = Vec::new();
    for action in split_list(main.get("Actions").unwrap_or_default()) {
        let Some(group) = entry
            .groups
            .iter()
            .find(|g| g.name == format!("Desktop Action {action}"))
        else {
            continue;
        };
        let Some(exec) = group.get("Exec") else {
            continue;
        };
        let mut g = Group {
            name: group.name.clone(),
            items: group
                .items
                .iter()
                .filter(|i| ACTION_KEYS.contains(&i.key.as_str()))
                .filter(|i| i.locale.is_none() || i.key == "Name")
                .cloned()
                .collect(),
        };
        g.set("Exec", launch_line(exec, cx, cwd.as_deref()).map_err(&bad)?);
        if let Some(icon) = group.get("Icon")
            && let Some(published) = (cx.icon)(&unescape(icon))
        {
            g.set("Icon", escape(&published));
        }
        groups.push(g);
        kept_actions.push(action);
    }
    if kept_actions.is_empty() {
        groups[0].remove("Actions");
    } else {
        let list: String = kept_actions.iter().map(|a| format!("{a};")).collect();
        groups[0].set("Actions", list);
    }
    Ok(DesktopEntry { groups })
}

/// The `Exec=` value that runs `exec` (an entry's escaped value) through the launcher.
fn launch_line(
    exec: &str,
    cx: &Context,
    cwd: Option<&str>,
) -> std::result::Result<String, ExecProblem> {
    let args = exec_line::clean_codes(exec_line::split(&unescape(exec))?)?;
    let mut line: Vec<Arg> = Vec::new();
    let mut launcher = cx.launcher.iter();
    // The launcher ends with "NAME --"; a working directory goes before the realm's name.
    let head: Vec<&String> = launcher
        .by_ref()
        .take(cx.launcher.len().saturating_sub(2))
        .collect();
    line.extend(head.iter().map(|a| Arg::Plain(exec_line::quote(a))));
    if let Some(dir) = cwd {
        line.push(Arg::Plain("--cwd".into()));
        line.push(Arg::Plain(exec_line::quote(dir)));
    }
    line.extend(launcher.map(|a| Arg::Plain(exec_line::quote(a))));
    line.extend(args);
    Ok(entry::escape(&exec_line::join(&line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite_text(text: &str, programs: &[&str]) -> Result<String> {
        let e = DesktopEntry::parse(text.as_bytes(), Path::new("/t.desktop")).unwrap();
        let launcher: Vec<String> = ["/usr/bin/realms", "launch", "work", "--"]
            .map(String::from)
            .to_vec();
        let has = |p: &str| programs.contains(&p);
        let icon = |i: &str| (i == "editor").then(|| "realms-work-editor".to_string());
        let cx = Context {
            realm: "work",
            label: "work",
            color: "#3465a4",
            launcher: &launcher,
            has_program: &has,
            icon: &icon,
        };
        rewrite(
            &e,
            "org.example.Editor.desktop",
            Path::new("/t.desktop"),
            &cx,
        )
        .map(|e| e.to_text())
    }

    const EDITOR: &str = "[Desktop Entry]\nType=Application\nName=Editor\nName[de]=Bearbeiter\nExec=editor --new %F\nTryExec=editor\nIcon=editor\nX-Unknown=1\nDBusActivatable=true\nActions=win;gone;\n\n[Desktop Action win]\nName=New Window\nExec=editor --window\n\n[Desktop Action other]\nName=x\nExec=y\n";

    #[test]
    fn exec_runs_in_the_realm_and_keys_are_whitelisted() {
        let out = rewrite_text(EDITOR, &["editor"]).unwrap();
        assert!(
            out.contains("Exec=/usr/bin/realms launch work -- editor --new %F\n"),
            "{out}"
        );
        assert!(out.contains("Name=Editor (work)\n"), "{out}");
        assert!(out.contains("Name[de]=Bearbeiter (work)\n"), "{out}");
        assert!(out.contains("Icon=realms-work-editor\n"), "{out}");
        assert!(out.contains("StartupWMClass=org.example.Editor\n"), "{out}");
        assert!(
            out.contains("X-Realms-Realm=work\nX-Realms-Color=#3465a4\n"),
            "{out}"
        );
        assert!(out.contains("Actions=win;\n"), "{out}");
        assert!(
            out.contains("[Desktop Action win]\nName=New Window\nExec=/usr/bin/realms launch work -- editor --window\n"),
            "{out}"
        );
        for gone in [
            "X-Unknown",
            "DBusActivatable",
            "TryExec",
            "Desktop Action other",
        ] {
            assert!(!out.contains(gone), "{gone} kept in {out}");
        }
    }

    #[test]
    fn entries_that_are_not_for_the_menu_are_skipped() {
        let err = rewrite_text(EDITOR, &[]).unwrap_err().to_string();
        assert!(err.contains("TryExec=editor is not installed"), "{err}");
        for (text, why) in [
            (
                "[Desktop Entry]\nType=Link\nName=x\nURL=http://x\n",
                "not an application",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=x\nExec=x\nHidden=true\n",
                "Hidden",
            ),
            (
                "[Desktop Entry]\nType=Application\nName=x\nDBusActivatable=true\n",
                "no Exec",
            ),
        ] {
            let err = rewrite_text(text, &[]).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let err = rewrite_text("[Desktop Entry]\nType=Application\nName=x\nExec=a;b\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("quoted"), "{err}");
    }

    #[test]
    fn kept_wm_class_no_display_path_and_quoting() {
        let text = "[Desktop Entry]\nType=Application\nName=My App\nExec=\"/opt/my app/run\" %u\nPath=/opt/my app\nStartupWMClass=MyApp\nNoDisplay=true\nIcon=unknown-theme-icon\n";
        let out = rewrite_text(text, &[]).unwrap();
        assert!(
            out.contains(
                "Exec=/usr/bin/realms launch --cwd \"/opt/my app\" work -- \"/opt/my app/run\" %u\n"
            ),
            "{out}"
        );
        assert!(out.contains("StartupWMClass=MyApp\n"), "{out}");
        assert!(out.contains("NoDisplay=true\n"), "{out}");
        assert!(out.contains("Icon=unknown-theme-icon\n"), "{out}");
        assert!(!out.contains("Path="), "{out}");
    }
}
