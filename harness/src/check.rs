//! `jetsam check` (not built yet).

#[derive(Debug, clap::Args)]
pub struct CheckArgs {}

pub fn execute(_args: CheckArgs) -> i32 {
    eprintln!("jetsam check: not built yet");
    jetsam_core::exit::ENVIRONMENT
}
