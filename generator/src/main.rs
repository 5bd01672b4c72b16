use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mk8s_gen::cli::Cli::parse();
    // Unlocked handles: each write takes the lock for itself. Holding stderr's lock for
    // the whole run would block the fleet's progress bar forever on a terminal.
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    mk8s_gen::cli::run(cli, &mut mk8s_gen::cli::Io { stdout: &mut stdout, stderr: &mut stderr })
}
