//! The `jetsam` command line. Each subcommand's arguments live beside its
//! implementation; this module only dispatches and maps outcomes to the exit
//! codes of [`jetsam_core::exit`].

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "jetsam", version, about = "Jepsen-style durability harness: was every acknowledged write kept?")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work on an adapter target (docs/adapter-protocol.md).
    Adapter(crate::adapter_check::AdapterArgs),
    /// Check a run folder (or any history + recovered state) and write report.json.
    Check(crate::check::CheckArgs),
    /// Rewrite a run folder's history and read-backs in the compact form (history.bin, recovered/<view>.bin).
    Compact(crate::compact::CompactArgs),
    /// Search for a failing run: draw fault schedules from the scenario's [explore] palette and run them.
    Explore(crate::explore::ExploreArgs),
    /// Run one scenario for every combination of settings (--set KEY=V1,V2) and compare the cells.
    Matrix(crate::matrix::MatrixArgs),
    /// Join the suite.jsonl of every shard of a suite (`jetsam suite --shard I/N --out DIR`) into one result.
    Merge(crate::merge::MergeArgs),
    /// Write report.html of a run folder (offline, from its report.json, events and history).
    Report(crate::report_page::ReportArgs),
    /// Run one scenario: start a cluster, load it, inject faults, heal, read back, check.
    Run(crate::run::RunArgs),
    /// Cut a failing run's scenario down to the smallest one that still fails.
    Shrink(crate::shrink::ShrinkArgs),
    /// Run every scenario in a folder and compare each verdict with its `expect`.
    Suite(crate::suite::SuiteArgs),
}

/// Parses the command line, runs the subcommand and returns the exit code.
pub fn main_with_args() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Adapter(args) => crate::adapter_check::execute(args),
        Command::Check(args) => crate::check::execute(args),
        Command::Compact(args) => crate::compact::execute(args),
        Command::Explore(args) => crate::explore::execute(args),
        Command::Matrix(args) => crate::matrix::execute(args),
        Command::Merge(args) => crate::merge::execute(args),
        Command::Report(args) => crate::report_page::execute(args),
        Command::Run(args) => crate::run::execute(args),
        Command::Shrink(args) => crate::shrink::execute(args),
        Command::Suite(args) => crate::suite::execute(args),
    }
}
