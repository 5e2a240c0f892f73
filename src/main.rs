//! The `rbuild` binary: parse arguments, run one library call, print the error chain once.

use std::process::ExitCode;

fn main() -> ExitCode {
    match rbuild::cli::run(std::env::args_os().collect()) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {}", rbuild::cli::render_error(&err));
            }
            ExitCode::from(rbuild::cli::exit_code(&err))
        }
    }
}
