//! `jetsam-tracer run --data-dir D --state-dir S -- PROGRAM [ARGS...]`: runs
//! PROGRAM under the power-loss tracer (see `jetsam_faults::power`), writes
//! its pid to `S/tracee.pid`, and exits with its exit code (128+signal if a
//! signal killed it). Usage errors exit 2, environment errors 4.

use jetsam_faults::power::tracer::{TracerConfig, run};
use std::ffi::OsString;
use std::path::PathBuf;

const USAGE: &str = "usage: jetsam-tracer run --data-dir DIR --state-dir DIR -- PROGRAM [ARGS...]";

fn parse(args: Vec<OsString>) -> Result<TracerConfig, String> {
    let mut it = args.into_iter();
    match it.next() {
        Some(cmd) if cmd == "run" => {}
        Some(cmd) => return Err(format!("unknown command {cmd:?}")),
        None => return Err("missing the command".to_string()),
    }
    let (mut data_dir, mut state_dir) = (None, None);
    loop {
        let Some(arg) = it.next() else { return Err("missing `-- PROGRAM`".to_string()) };
        match arg.to_str() {
            Some("--") => break,
            Some("--data-dir") => data_dir = it.next().map(PathBuf::from),
            Some("--state-dir") => state_dir = it.next().map(PathBuf::from),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let data_dir = data_dir.ok_or("missing --data-dir DIR")?;
    let state_dir = state_dir.ok_or("missing --state-dir DIR")?;
    let program = it.next().ok_or("missing PROGRAM after --")?;
    Ok(TracerConfig { data_dir, state_dir, program, args: it.collect() })
}

fn main() {
    let cfg = match parse(std::env::args_os().skip(1).collect()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("jetsam-tracer: failed to parse the arguments: {e}\n{USAGE}");
            std::process::exit(jetsam_core::exit::BAD_INPUT);
        }
    };
    match run(&cfg) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("jetsam-tracer: {e}");
            std::process::exit(e.exit_code());
        }
    }
}
