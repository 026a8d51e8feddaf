//! The `authlab` command.

fn main() -> std::process::ExitCode {
    authlab::cli::main()
}
