//! The `realms` binary: parse the command line, run one command, render its result.

mod appimg;
mod args;
mod assets;
mod desktop;
mod doctor;
mod fast;
mod output;
mod portable;
mod provision;
mod realm;
mod state;
mod verbs;
mod verity;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Arguments need not be UTF-8 (a file name given to a command in a realm).
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let name = argv
        .first()
        .and_then(|a| std::path::Path::new(a).file_name());
    if name.is_some_and(|n| n == "realms-state-generator") {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string_lossy().into()).collect();
        return state::generator_main(&argv);
    }
    let cli = fast::parse_run(argv.get(1..).unwrap_or_default()).unwrap_or_else(args::parse);
    output::init_logging(cli.global.verbose);
    let ctx = output::Ctx::new(cli.global.root.clone(), cli.global.json, cli.global.quiet);
    match args::dispatch(cli.command, &ctx) {
        Ok(code) => code,
        Err(err) => {
            output::print_error(&err);
            ExitCode::FAILURE
        }
    }
}
