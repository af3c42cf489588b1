fn main() {
    eprintln!("jetsam-node: not built yet");
    std::process::exit(4);
}
