use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // No arguments at all: a new user wants the help, not an error (exit 2: usage).
    if std::env::args_os().len() <= 1 {
        use clap::CommandFactory;
        let _ = mk8s_gen::cli::Cli::command().write_long_help(&mut std::io::stderr());
        return ExitCode::from(mk8s_gen::cli::EXIT_USAGE_IO);
    }
    let cli = mk8s_gen::cli::Cli::parse();
    // Unlocked handles: each write takes the lock for itself. Holding stderr's lock for
    // the whole run would block the fleet's progress bar forever on a terminal.
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    mk8s_gen::cli::run(cli, &mut mk8s_gen::cli::Io { stdout: &mut stdout, stderr: &mut stderr })
}
