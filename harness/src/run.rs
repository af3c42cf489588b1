//! `jetsam run` (not built yet).

#[derive(Debug, clap::Args)]
pub struct RunArgs {}

pub fn execute(_args: RunArgs) -> i32 {
    eprintln!("jetsam run: not built yet");
    jetsam_core::exit::ENVIRONMENT
}
