//! `jetsam suite` (not built yet).

#[derive(Debug, clap::Args)]
pub struct SuiteArgs {}

pub fn execute(_args: SuiteArgs) -> i32 {
    eprintln!("jetsam suite: not built yet");
    jetsam_core::exit::ENVIRONMENT
}
