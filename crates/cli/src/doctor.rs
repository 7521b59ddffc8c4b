//! `realms doctor [--fix [--force]]`: the findings of the realm store, the host and the
//! portable services, as text or JSON; exits non-zero while anything is left to fix.

use std::fmt;
use std::process::ExitCode;

use clap::Args;
use realms_sys::doctor::{Finding, Options, Outcome};
use serde::Serialize;

use crate::output::Ctx;

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Repair what is found (never deleting a home or an image without --force).
    #[arg(long)]
    fix: bool,
    /// With --fix, also apply the fixes that delete user data.
    #[arg(long, requires = "fix")]
    force: bool,
}

#[derive(Serialize)]
struct Report {
    findings: Vec<Finding>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.findings.is_empty() {
            return writeln!(f, "[+] Nothing to fix");
        }
        for x in &self.findings {
            let state = match &x.outcome {
                Outcome::Found if x.needs_force => "--fix --force".to_string(),
                Outcome::Found => "--fix".to_string(),
                Outcome::Fixed => "fixed".to_string(),
                Outcome::NeedsForce => "not fixed: needs --force".to_string(),
                Outcome::Failed(e) => format!("fix failed: {e}"),
            };
            let mark = if x.outcome == Outcome::Fixed {
                '+'
            } else {
                '!'
            };
            let kind = serde_json::to_value(x.kind).unwrap_or_default();
            writeln!(
                f,
                "[{mark}] {}: {} ({})\n    {state}: {}",
                x.path.display(),
                x.problem,
                kind.as_str().unwrap_or_default(),
                x.fix
            )?;
        }
        Ok(())
    }
}

pub fn run(args: DoctorArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let opts = Options {
        fix: args.fix,
        force: args.force,
    };
    let store = crate::realm::store(ctx)?;
    let mut findings = realms_realm::doctor::run(&store, opts, ctx)?;
    let host = realms_portable::Host::open(&ctx.root)?;
    let systemd = realms_portable::Systemd::detect(&host);
    findings.extend(realms_portable::doctor::run(&host, &systemd, opts)?);
    let open = findings.iter().any(Finding::is_open);
    ctx.emit(&Report { findings })?;
    Ok(if open {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
