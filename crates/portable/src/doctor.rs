//! The portable-service side of `realms doctor`: units attached (persistently or for this
//! boot) from an image that is gone, found by the marker line of their drop-ins; the fix
//! detaches them the way `realms portable detach --force` does.

use std::path::Path;

use realms_sys::doctor::{Finding, Kind, Options};

use crate::detach::{DetachOptions, detach, scan};
use crate::error::Result;
use crate::layout::{Host, attached_dir};
use crate::systemd::Systemd;

/// Checks both attach directories of `host`, and with `opts.fix` detaches the units of images
/// that are gone. Returns every finding with its outcome.
pub fn run(host: &Host, systemd: &Systemd, opts: Options) -> Result<Vec<Finding>> {
    let mut out = Vec::new();
    for runtime in [false, true] {
        let where_ = attached_dir(runtime);
        let mut gone: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for found in scan(host, where_, None)? {
            let Some(image) = found.images.first() else {
                continue;
            };
            if host.exists(image) {
                continue;
            }
            match gone.iter_mut().find(|(images, _)| *images == found.images) {
                Some((_, units)) => units.push(found.unit),
                None => gone.push((found.images.clone(), vec![found.unit])),
            }
        }
        for (images, units) in gone {
            let image = &images[0];
            let mut finding = Finding::new(
                Kind::OrphanedPortable,
                host.root()
                    .join(
                        Path::new(where_)
                            .strip_prefix("/")
                            .unwrap_or(Path::new(where_)),
                    )
                    .join(&units[0]),
                format!(
                    "{} attached from image {image}, which is gone",
                    units.join(", ")
                ),
                format!(
                    "detaches {} (`realms portable detach --force{} {image}`)",
                    if units.len() == 1 { "it" } else { "them" },
                    if runtime { " --runtime" } else { "" }
                ),
            );
            if opts.should_fix(&mut finding) {
                let detach_opts = DetachOptions {
                    runtime,
                    force: true,
                    extensions: images[1..].to_vec(),
                    reattach: false,
                };
                let result = detach(host, systemd, image, &detach_opts).map(drop);
                Options::record(&mut finding, result);
            }
            out.push(finding);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use realms_sys::doctor::Outcome;

    use super::*;

    /// Attaches a one-unit directory image under a temporary root, then deletes the image.
    fn attached_then_deleted() -> (tempfile::TempDir, Host) {
        let root = tempfile::tempdir().unwrap();
        let image = root.path().join("var/lib/portables/gone-svc");
        fs::create_dir_all(image.join("usr/lib/systemd/system")).unwrap();
        fs::create_dir_all(image.join("etc")).unwrap();
        fs::write(
            image.join("usr/lib/os-release"),
            "ID=debian\nPORTABLE_PREFIXES=gone-svc\n",
        )
        .unwrap();
        fs::write(
            image.join("usr/lib/systemd/system/gone-svc.service"),
            "[Service]\nExecStart=/bin/true\n",
        )
        .unwrap();
        let host = Host::open(root.path()).unwrap();
        let systemd = Systemd::detect(&host);
        let opts = crate::AttachOptions {
            profile: "default".into(),
            ..crate::AttachOptions::default()
        };
        crate::attach(&host, &systemd, "gone-svc", &[], &opts).unwrap();
        (root, host)
    }

    #[test]
    fn units_of_a_deleted_image_are_found_and_detached() {
        let (root, host) = attached_then_deleted();
        let systemd = Systemd::detect(&host);
        assert_eq!(run(&host, &systemd, Options::default()).unwrap(), []);
        fs::remove_dir_all(root.path().join("var/lib/portables/gone-svc")).unwrap();
        let found = run(&host, &systemd, Options::default()).unwrap();
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0].kind, Kind::OrphanedPortable);
        assert!(
            found[0]
                .path
                .ends_with("etc/systemd/system.attached/gone-svc.service")
        );
        assert!(found[0].problem.contains("/var/lib/portables/gone-svc"));
        let fixed = run(
            &host,
            &systemd,
            Options {
                fix: true,
                force: false,
            },
        )
        .unwrap();
        assert_eq!(fixed[0].outcome, Outcome::Fixed, "{fixed:#?}");
        assert!(
            !root
                .path()
                .join("etc/systemd/system.attached/gone-svc.service")
                .exists()
        );
        assert_eq!(run(&host, &systemd, Options::default()).unwrap(), []);
    }
}
