fn main() {
    std::process::exit(jetsam_harness::cli::main_with_args());
}
