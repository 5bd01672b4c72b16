use std::process::ExitCode;

use mk8s_bootstrap::balance;
use mk8s_bootstrap::cli::{self, Parsed, BALANCE_HELP, HELP, LEAVE_HELP, MAINTAIN_HELP};
use mk8s_bootstrap::leave::Leave;
use mk8s_bootstrap::run::Runner;

fn main() -> ExitCode {
    match cli::parse(std::env::args().skip(1)) {
        Ok(Parsed::Help) => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::BalanceHelp) => {
            print!("{BALANCE_HELP}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Balance(args)) => ExitCode::from(balance::run(&args)),
        Ok(Parsed::MaintainHelp) => {
            print!("{MAINTAIN_HELP}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Maintain { node, plan, repair }) => {
            let exit = mk8s_bootstrap::maintain::run(&node.node(), &plan, repair, &mut std::io::stderr());
            ExitCode::from(exit as u8)
        }
        Ok(Parsed::LeaveHelp) => {
            print!("{LEAVE_HELP}");
            ExitCode::SUCCESS
        }
        Ok(Parsed::Leave { node, args }) => {
            let node = node.node();
            let mut stderr = std::io::stderr();
            let exit = Leave::new(&node, &args, &mut stderr).run(&mut std::io::stdout());
            ExitCode::from(exit as u8)
        }
        Ok(Parsed::Version) => {
            println!("mk8s-bootstrap {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(Parsed::Run { node, plan }) => {
            let node = node.node();
            let mut stderr = std::io::stderr();
            let exit = Runner::new(&node, &plan, &mut stderr).run();
            ExitCode::from(exit as u8)
        }
        Err(e) => {
            eprintln!("mk8s-bootstrap: {e}");
            ExitCode::from(64)
        }
    }
}
