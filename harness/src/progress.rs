//! Progress of a run: the phase, elapsed of the load duration, acked / info
//! / failed counts and faults so far. An `indicatif` bar when stdout is a
//! terminal and `CI` is unset; otherwise plain log lines (one per phase and
//! one every [`PLAIN_INTERVAL`] during the load), so CI logs stay readable.
//!
//! It only displays; it never decides anything.

use indicatif::{ProgressBar, ProgressStyle};
use jetsam_workloads::Counters;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often plain mode prints a load line.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(2);
/// How often the bar refreshes.
const BAR_INTERVAL: Duration = Duration::from_millis(100);

/// The display of one run.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    /// Prints nothing at all (explore and shrink print one line per run themselves).
    quiet: bool,
    start: Instant,
    scenario: String,
}

/// Whether to draw a bar: stdout is a terminal and `CI` is not set.
pub fn interactive() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("CI").is_none()
}

impl Progress {
    pub fn new(scenario: &str, interactive: bool) -> Progress {
        let bar = interactive.then(|| {
            let bar = ProgressBar::new(1);
            bar.set_style(
                ProgressStyle::with_template("{prefix:>10} [{bar:30}] {msg}")
                    .expect("static template")
                    .progress_chars("=> "),
            );
            bar
        });
        Progress { bar, quiet: false, start: Instant::now(), scenario: scenario.to_string() }
    }

    /// A display that prints nothing.
    pub fn quiet(scenario: &str) -> Progress {
        Progress { bar: None, quiet: true, start: Instant::now(), scenario: scenario.to_string() }
    }

    /// Announces a phase.
    pub fn phase(&self, phase: &str, detail: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(phase.to_string());
                bar.set_message(detail.to_string());
                bar.tick();
            }
            None => println!("[{:>7.1}s] {} {phase}: {detail}", self.start.elapsed().as_secs_f64(), self.scenario),
        }
    }

    /// A line that stays (warnings, results).
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    /// Updates the display during the load phase until the returned task is aborted.
    pub fn spawn_load_ticker(
        &self,
        duration: Duration,
        counters: Arc<Counters>,
        faults: impl Fn() -> u64 + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let load_start = Instant::now();
        if let Some(bar) = &this.bar {
            bar.set_length(duration.as_millis() as u64);
            bar.set_position(0);
            bar.set_prefix("load");
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(if this.bar.is_some() { BAR_INTERVAL } else { PLAIN_INTERVAL });
            tick.tick().await;
            loop {
                tick.tick().await;
                let c = counters.snapshot();
                let elapsed = load_start.elapsed().min(duration);
                let text = format!(
                    "{:.1}s/{:.0}s acked {} info {} failed {} faults {}",
                    elapsed.as_secs_f64(),
                    duration.as_secs_f64(),
                    c.acked,
                    c.info,
                    c.failed,
                    faults()
                );
                match &this.bar {
                    Some(bar) => {
                        bar.set_position(elapsed.as_millis() as u64);
                        bar.set_message(text);
                    }
                    None => this.phase("load", &text),
                }
            }
        })
    }

    /// Removes the bar before the summary is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
