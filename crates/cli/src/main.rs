//! The `realms` binary: parse the command line, run one command, render its result.

mod appimg;
mod args;
mod assets;
mod desktop;
mod doctor;
mod output;
mod portable;
mod provision;
mod realm;
mod state;
mod verbs;
mod verity;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let name = argv.first().map(|a| a.rsplit('/').next().unwrap_or(a));
    if name == Some("realms-state-generator") {
        return state::generator_main(&argv);
    }
    let cli = args::parse();
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
