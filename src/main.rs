//! The `pcsync` binary: everything lives in the library; see `pcsync::cli`.

fn main() -> std::process::ExitCode {
    pcsync::main()
}
