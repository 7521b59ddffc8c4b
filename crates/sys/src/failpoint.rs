//! Failpoints: named steps of mutating operations where a crash test kills the process with
//! SIGKILL, to prove that every step leaves the old state or the new one. Compiled in only with
//! the `failpoints` feature (built for tests); otherwise [`hit`] is an empty inline function.
//!
//! Triggering uses the `fail` crate's `FAILPOINTS` variable: `FAILPOINTS='image-commit=return'`
//! kills at the first pass of `image-commit`, `'image-commit=2*off->return'` at the third.
//! `REALMS_FAILPOINT_TRACE=FILE` appends the name of every failpoint passed, one per line, so a
//! test learns which points a command passes, in order, before it kills at each in turn.
//! Names are plain words joined by dashes, starting with the crate's subject (`portable-`, `image-`,
//! `realm-`...).

/// Marks a step named `name`; with the `failpoints` feature, may record it or kill the process.
#[inline]
pub fn hit(name: &'static str) {
    #[cfg(feature = "failpoints")]
    imp::hit(name);
    #[cfg(not(feature = "failpoints"))]
    let _ = name;
}

/// Whether failpoints are compiled in.
pub const ENABLED: bool = cfg!(feature = "failpoints");

#[cfg(feature = "failpoints")]
mod imp {
    use std::io::Write;
    use std::sync::OnceLock;

    pub(super) fn hit(name: &'static str) {
        static SCENARIO: OnceLock<()> = OnceLock::new();
        SCENARIO.get_or_init(|| {
            // Reads FAILPOINTS once; kept for the life of the process.
            std::mem::forget(fail::FailScenario::setup());
        });
        let trace = std::env::var_os("REALMS_FAILPOINT_TRACE");
        if let Some(mut f) = trace.and_then(|path| {
            std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(path)
                .ok()
        }) {
            let _ = writeln!(f, "{name}");
        }
        fail::fail_point!(name, |_| {
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::KILL,
            );
        });
    }
}
