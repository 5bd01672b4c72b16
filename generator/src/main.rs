use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mk8s_gen::cli::Cli::parse();
    let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
    mk8s_gen::cli::run(cli, &mut mk8s_gen::cli::Io { stdout: &mut stdout, stderr: &mut stderr })
}
