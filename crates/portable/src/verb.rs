//! One portablectl verb as a command line gives it (an image argument, unit prefixes, the
//! options) resolved and run: image and extension arguments normalised, the unit prefixes worked
//! out, then the operation. The CLI, and any other front end, makes one call per verb and
//! renders the result; what portablectl prints along the way arrives as [`Event`]s.

use std::path::PathBuf;

use crate::attach::{AttachOptions, CopyMode};
use crate::detach::DetachOptions;
use crate::error::{Error, Result};
use crate::layout::Host;
use crate::manage::{self, Inspected, State};
use crate::ops::{self, Outcome, Say, Steps};
use crate::systemd::Systemd;
use crate::validate::Check;
use crate::{image, profile};

/// What a verb reports while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A line portablectl prints on stderr (the matched prefixes, each change, queued jobs).
    Line(&'a str),
    /// The profile asked for does not exist, so the units get no sandboxing drop-in (portablectl
    /// attaches silently; Realms says so).
    MissingProfile {
        /// The profile asked for.
        profile: &'a str,
        /// The profiles there are.
        available: &'a [String],
    },
}

/// Where a verb's events go.
pub type OnEvent<'a> = &'a mut dyn FnMut(Event<'_>);

/// portablectl's options, shared by every verb.
#[derive(Debug, Clone, Default)]
pub struct VerbOptions {
    /// `--profile`.
    pub profile: String,
    /// `--copy`.
    pub copy: CopyMode,
    /// `--runtime`.
    pub runtime: bool,
    /// `--force`.
    pub force: bool,
    /// `--extension`, in order (names or paths, as given).
    pub extensions: Vec<String>,
    /// `--no-reload`, `--enable`, `--now`, `--no-block`.
    pub steps: Steps,
}

impl VerbOptions {
    /// Checks what can be checked before any verb runs: the profile name and the copy mode.
    pub fn new(
        profile: &str,
        copy: &str,
        runtime: bool,
        force: bool,
        extensions: Vec<String>,
        steps: Steps,
    ) -> Result<VerbOptions> {
        profile::check_name(profile)?;
        Ok(VerbOptions {
            profile: profile.to_owned(),
            copy: copy.parse()?,
            runtime,
            force,
            extensions,
            steps,
        })
    }
}

/// The verbs, on one host.
#[derive(Debug, Clone, Copy)]
pub struct Verbs<'a> {
    /// The host (its root).
    pub host: &'a Host,
    /// Its service manager.
    pub systemd: &'a Systemd,
    /// The options.
    pub options: &'a VerbOptions,
}

impl Verbs<'_> {
    fn norm(&self, arg: &str, permit_missing: bool) -> Result<String> {
        image::normalize_arg(self.host, arg, permit_missing)
    }

    fn extensions(&self, permit_missing: bool) -> Result<Vec<String>> {
        let exts = &self.options.extensions;
        exts.iter().map(|e| self.norm(e, permit_missing)).collect()
    }

    /// `attach` (or `reattach`) IMAGE [PREFIX...].
    pub fn attach(
        &self,
        image: &str,
        prefixes: &[String],
        reattach: bool,
        on_event: OnEvent<'_>,
    ) -> Result<Outcome> {
        let path = self.norm(image, false)?;
        let say: Say<'_> = &mut |l| on_event(Event::Line(l));
        let matches = unit_matches(image, prefixes, false, say)?;
        let o = &self.options;
        let opts = AttachOptions {
            profile: o.profile.clone(),
            copy: o.copy,
            runtime: o.runtime,
            force: o.force,
            extensions: self.extensions(false)?,
            reattach: false,
        };
        let profiles = profile::list(self.host);
        if !profiles.contains(&opts.profile) {
            on_event(Event::MissingProfile {
                profile: &opts.profile,
                available: &profiles,
            });
        }
        let (host, sd, steps) = (self.host, self.systemd, &o.steps);
        let say: Say<'_> = &mut |l| on_event(Event::Line(l));
        if reattach {
            ops::reattach_verb(host, sd, &path, &matches, &opts, steps, say)
        } else {
            ops::attach_verb(host, sd, &path, &matches, &opts, steps, say)
        }
    }

    /// `detach` IMAGE [PREFIX...] (the prefixes matter only with `--enable`/`--now`).
    pub fn detach(
        &self,
        image: &str,
        prefixes: &[String],
        on_event: OnEvent<'_>,
    ) -> Result<Outcome> {
        let path = self.norm(image, true)?;
        let steps = &self.options.steps;
        let say: Say<'_> = &mut |l| on_event(Event::Line(l));
        let matches = if steps.enable || steps.now {
            unit_matches(image, prefixes, true, say)?
        } else {
            Vec::new()
        };
        let opts = DetachOptions {
            runtime: self.options.runtime,
            force: self.options.force,
            extensions: self.extensions(true)?,
            reattach: false,
        };
        ops::detach_verb(self.host, self.systemd, &path, &matches, &opts, steps, say)
    }

    /// `inspect` IMAGE [PREFIX...].
    pub fn inspect(
        &self,
        image: &str,
        prefixes: &[String],
        on_event: OnEvent<'_>,
    ) -> Result<Inspected> {
        let path = self.norm(image, false)?;
        let matches = unit_matches(image, prefixes, true, &mut |l| on_event(Event::Line(l)))?;
        let exts = self.extensions(false)?;
        manage::inspect(self.host, &path, &exts, &matches, self.options.force)
    }

    /// `is-attached` IMAGE.
    pub fn state(&self, image: &str) -> Result<State> {
        let path = self.norm(image, true)?;
        manage::state(self.host, self.systemd, &path, &self.extensions(true)?)
    }

    /// `validate` IMAGE [PREFIX...].
    pub fn validate(
        &self,
        image: &str,
        prefixes: &[String],
        on_event: OnEvent<'_>,
    ) -> Result<Vec<Check>> {
        let path = self.norm(image, false)?;
        let matches = unit_matches(image, prefixes, true, &mut |l| on_event(Event::Line(l)))?;
        crate::validate::validate(self.host, &path, &matches)
    }

    /// `read-only` IMAGE [BOOL] (default: yes).
    pub fn set_read_only(&self, image: &str, value: Option<&str>) -> Result<()> {
        let read_only = value.map(parse_bool).transpose()?.unwrap_or(true);
        manage::set_read_only(self.host, &self.norm(image, false)?, read_only)
    }

    /// `set-limit [IMAGE] LIMIT`: the quota of a subvolume image, or of the pool.
    pub fn set_limit(&self, image: Option<&str>, limit: &str) -> Result<()> {
        let limit = crate::limit::parse_limit(limit)?;
        let image = image.map(|i| self.norm(i, false)).transpose()?;
        crate::limit::set_limit(self.host, image.as_deref(), limit)
    }

    /// `remove` IMAGE...: stops at the first image that cannot be removed; returns the paths
    /// removed.
    pub fn remove(&self, images: &[String]) -> Result<Vec<PathBuf>> {
        images
            .iter()
            .map(|image| {
                let removed = manage::remove(self.host, self.systemd, image)?;
                tracing::info!("removed {}", removed.display());
                Ok(removed)
            })
            .collect()
    }
}

/// The unit prefixes a verb matches, as portablectl works them out: the prefixes given, the one
/// derived from the image argument when none are, or all units for `-` (only where `allow_all`,
/// i.e. not for attach). Says which, as portablectl does.
pub fn unit_matches(
    image: &str,
    given: &[String],
    allow_all: bool,
    say: Say<'_>,
) -> Result<Vec<String>> {
    if given.is_empty() {
        let prefix =
            crate::name::prefix_of(image).ok_or_else(|| Error::BadPrefix(image.to_owned()))?;
        say(&format!("(Matching unit files with prefix '{prefix}'.)"));
        return Ok(vec![prefix]);
    }
    if given == ["-"] {
        if !allow_all {
            return Err(Error::MatchAll);
        }
        say("(Matching all unit files.)");
        return Ok(Vec::new());
    }
    say(&format!(
        "(Matching unit files with prefixes '{}'.)",
        given.join("', '")
    ));
    Ok(given.to_vec())
}

pub use crate::boolean::parse_bool;

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(image: &str, given: &[&str], allow_all: bool) -> (Result<Vec<String>>, Vec<String>) {
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        let mut lines = Vec::new();
        let got = unit_matches(image, &given, allow_all, &mut |l| lines.push(l.to_owned()));
        (got, lines)
    }

    #[test]
    fn prefixes_derived_given_or_all() {
        let (got, lines) = matches("/var/lib/portables/foo_1.raw", &[], false);
        assert_eq!(got.unwrap(), ["foo"]);
        assert_eq!(lines, ["(Matching unit files with prefix 'foo'.)"]);
        let (got, lines) = matches("foo", &["a", "b"], false);
        assert_eq!(got.unwrap(), ["a", "b"]);
        assert_eq!(lines, ["(Matching unit files with prefixes 'a', 'b'.)"]);
        let (got, lines) = matches("foo", &["-"], true);
        assert!(got.unwrap().is_empty());
        assert_eq!(lines, ["(Matching all unit files.)"]);
        let (got, lines) = matches("foo", &["-"], false);
        assert!(matches!(got, Err(Error::MatchAll)));
        assert!(lines.is_empty());
        let (got, _) = matches("/", &[], true);
        assert!(matches!(got, Err(Error::BadPrefix(_))));
    }

    #[test]
    fn options_are_checked_up_front() {
        let ok = VerbOptions::new("strict", "mixed", false, false, vec![], Steps::default());
        assert_eq!(ok.unwrap().copy, CopyMode::Mixed);
        let bad = VerbOptions::new("a/b", "auto", false, false, vec![], Steps::default());
        assert_eq!(
            bad.unwrap_err().to_string(),
            "Unit profile name not valid: a/b"
        );
        let bad = VerbOptions::new("default", "hard", false, false, vec![], Steps::default());
        assert_eq!(
            bad.unwrap_err().to_string(),
            "Failed to parse --copy= argument: hard"
        );
        assert!(parse_bool("on").unwrap());
        assert!(!parse_bool("0").unwrap());
        assert_eq!(
            parse_bool("maybe").unwrap_err().to_string(),
            "Failed to parse boolean argument: maybe"
        );
    }
}
