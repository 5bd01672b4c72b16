use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mk8s_ctl::cli::Cli::parse();
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    mk8s_ctl::cli::run(cli, &mut mk8s_gen::cli::Io { stdout: &mut stdout, stderr: &mut stderr })
}
