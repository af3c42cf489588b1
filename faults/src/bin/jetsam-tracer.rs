//! `jetsam-tracer run --data-dir D --state-dir S -- PROGRAM [ARGS...]`: runs
//! PROGRAM under the power-loss tracer (see `jetsam_faults::power`), writes
//! its pid to `S/tracee.pid`, and exits with its exit code (128+signal if a
//! signal killed it). For manual use, `jetsam-tracer discard --data-dir D
//! --state-dir S [--keep-fraction F | --writeback-after DUR] [--seed N]`
//! power-loses a dead node's files (prints the report as JSON) and
//! `jetsam-tracer io-error --state-dir S eio|enospc|both|off` sets the
//! io-error fault. Usage errors exit 2, environment errors 4.

use jetsam_faults::power::tracer::{TracerConfig, run};
use jetsam_faults::power::{self, DiscardModel, IoErrorMode};
use std::ffi::OsString;
use std::path::PathBuf;

const USAGE: &str = "usage: jetsam-tracer run --data-dir DIR --state-dir DIR -- PROGRAM [ARGS...]
       jetsam-tracer discard --data-dir DIR --state-dir DIR [--keep-fraction F | --writeback-after DUR] [--seed N]
       jetsam-tracer io-error --state-dir DIR eio|enospc|both|off";

enum Command {
    Run(TracerConfig),
    Discard { data_dir: PathBuf, state_dir: PathBuf, model: DiscardModel, seed: u64 },
    IoError { state_dir: PathBuf, mode: Option<IoErrorMode> },
}

fn parse(args: Vec<OsString>) -> Result<Command, String> {
    let mut it = args.into_iter();
    let cmd = it.next().ok_or("missing the command")?;
    match cmd.to_str() {
        Some("run") => parse_run(it).map(Command::Run),
        Some("discard") => {
            let (mut data_dir, mut state_dir, mut model, mut seed) = (None, None, DiscardModel::All, 0);
            while let Some(arg) = it.next() {
                let value = it.next().ok_or(format!("{arg:?} needs a value"))?;
                let value = value.to_str().ok_or(format!("{arg:?}: not UTF-8"))?.to_string();
                match arg.to_str() {
                    Some("--data-dir") => data_dir = Some(PathBuf::from(value)),
                    Some("--state-dir") => state_dir = Some(PathBuf::from(value)),
                    Some("--seed") => seed = value.parse().map_err(|_| format!("--seed {value}: not a u64"))?,
                    Some("--keep-fraction") => {
                        let f: f64 = value.parse().map_err(|_| format!("--keep-fraction {value}: not a number"))?;
                        model = DiscardModel::KeepFraction(f);
                    }
                    Some("--writeback-after") => {
                        let d = jetsam_core::duration::parse_duration(&value)
                            .map_err(|e| format!("--writeback-after {value}: {e}"))?;
                        model = DiscardModel::WritebackAfter(d);
                    }
                    _ => return Err(format!("unexpected argument {arg:?}")),
                }
            }
            Ok(Command::Discard {
                data_dir: data_dir.ok_or("missing --data-dir DIR")?,
                state_dir: state_dir.ok_or("missing --state-dir DIR")?,
                model,
                seed,
            })
        }
        Some("io-error") => {
            let (flag, dir, mode) = (it.next(), it.next(), it.next());
            if flag.as_deref().and_then(|f| f.to_str()) != Some("--state-dir") || it.next().is_some() {
                return Err("io-error takes --state-dir DIR MODE".to_string());
            }
            let state_dir = PathBuf::from(dir.ok_or("missing the state dir")?);
            let mode = mode.ok_or("missing the mode")?;
            let mode = match mode.to_str() {
                Some("off") => None,
                Some(m) => Some(IoErrorMode::parse(m).ok_or(format!("unknown mode {m:?}"))?),
                None => return Err("the mode is not UTF-8".to_string()),
            };
            Ok(Command::IoError { state_dir, mode })
        }
        _ => Err(format!("unknown command {cmd:?}")),
    }
}

fn parse_run(mut it: impl Iterator<Item = OsString>) -> Result<TracerConfig, String> {
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
    let cmd = match parse(std::env::args_os().skip(1).collect()) {
        Ok(cmd) => cmd,
        Err(e) => {
            eprintln!("jetsam-tracer: failed to parse the arguments: {e}\n{USAGE}");
            std::process::exit(jetsam_core::exit::BAD_INPUT);
        }
    };
    let result = match cmd {
        Command::Run(cfg) => match run(&cfg) {
            Ok(code) => std::process::exit(code),
            Err(e) => Err((e.to_string(), e.exit_code())),
        },
        Command::Discard { data_dir, state_dir, model, seed } => power::discard(&data_dir, &state_dir, &model, seed)
            .map(|report| {
                println!("{}", serde_json::to_string_pretty(&report).expect("a report serializes"));
            })
            .map_err(|e| (e.to_string(), e.exit_code())),
        Command::IoError { state_dir, mode } => {
            power::set_io_error(&state_dir, mode).map_err(|e| (e.to_string(), e.exit_code()))
        }
    };
    if let Err((msg, code)) = result {
        eprintln!("jetsam-tracer: {msg}");
        std::process::exit(code);
    }
}
