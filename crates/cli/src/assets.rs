//! Man pages (clap_mangen) and shell completions (clap_complete) generated from the command
//! line's own definition, for the Debian package: `realms generate-assets DIR` (hidden) writes
//! `DIR/man/realms.1`, one `realms-SUB.1` per subcommand, and `DIR/completions/{realms.bash,
//! _realms,realms.fish}`. They are built with the package, never written by hand.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

/// The pages and scripts, as (path under DIR, content).
pub fn render() -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
    let cmd = crate::args::command();
    let mut out = Vec::new();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    out.push((PathBuf::from("man/realms.1"), page));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("realms-{}", sub.get_name());
        let sub = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("realms {}", sub.get_name()))
            .version(env!("CARGO_PKG_VERSION"));
        let mut page = Vec::new();
        clap_mangen::Man::new(sub).render(&mut page)?;
        out.push((PathBuf::from(format!("man/{name}.1")), page));
    }
    for (shell, file) in [
        (Shell::Bash, "realms.bash"),
        (Shell::Zsh, "_realms"),
        (Shell::Fish, "realms.fish"),
    ] {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "realms", &mut script);
        out.push((Path::new("completions").join(file), script));
    }
    Ok(out)
}

/// Writes everything [`render`] makes under `dir`.
pub fn generate(dir: &Path) -> anyhow::Result<()> {
    for (rel, content) in render()? {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every visible subcommand has its page, and every completion script offers it.
    #[test]
    fn every_subcommand_has_a_man_page_and_completions() {
        let assets = render().unwrap();
        let text = |rel: &str| {
            let (_, c) = assets
                .iter()
                .find(|(p, _)| p == Path::new(rel))
                .unwrap_or_else(|| panic!("{rel} is not generated"));
            String::from_utf8(c.clone()).unwrap()
        };
        let cmd = crate::args::command();
        let subs: Vec<String> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .collect();
        assert!(subs.len() > 20, "{subs:?}");
        assert!(subs.contains(&"doctor".to_string()) && subs.contains(&"status".to_string()));
        let main = text("man/realms.1");
        for sub in &subs {
            let page = text(&format!("man/realms-{sub}.1"));
            assert!(
                page.contains(&format!(".TH realms-{sub} 1")),
                "{sub}: {page}"
            );
            assert!(
                main.contains(&format!("realms\\-{}(1)", sub.replace('-', "\\-"))),
                "{sub} not in realms.1"
            );
            for script in ["completions/realms.bash", "completions/_realms"] {
                assert!(text(script).contains(sub.as_str()), "{sub} not in {script}");
            }
            assert!(
                text("completions/realms.fish").contains(&format!("-a \"{sub}\"")),
                "{sub} not in realms.fish"
            );
        }
        assert!(!subs.contains(&"generate-assets".to_string()));
    }
}
