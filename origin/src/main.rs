//! The `pushwire` binary: parses arguments and hands over to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    pushwire_origin::cli::main()
}
