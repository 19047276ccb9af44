//! The `edgebind` binary: everything lives in the library; see `edgebind --help`.

fn main() {
    std::process::exit(edgebind::cli::main());
}
