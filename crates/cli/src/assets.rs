//! Man pages (clap_mangen) and shell completions (clap_complete) generated from the command
//! line's own definition, for the Debian package: `realms generate-assets DIR` (hidden) writes
//! `DIR/man/realms.1`, one `realms-SUB.1` per subcommand, and `DIR/completions/{realms.bash,
//! _realms,realms.fish}`. They are built with the package, never written by hand.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

/// The pages and scripts of the command line `cmd`, as (path under DIR, content).
pub fn render(cmd: clap::Command) -> anyhow::Result<Vec<(PathBuf, Vec<u8>)>> {
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

/// Writes everything [`render`] makes of `cmd` under `dir`.
pub fn generate(dir: &Path, cmd: clap::Command) -> anyhow::Result<()> {
    for (rel, content) in render(cmd)? {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
