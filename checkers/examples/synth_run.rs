//! Writes a synthetic run folder for benchmarking `jetsam check`
//! (scripts/bench-check.sh): ACKED acknowledged publishes by 16 pipelined
//! clients (4 in flight each), about 1 in 1000 failed and 1 in 1000
//! indeterminate (half of those written), NODES nodes (default five), three
//! power losses that each lose 100 consecutive acknowledged writes
//! everywhere, and the last node missing 1000 writes the others hold
//! (divergent).
//!
//! Usage: `cargo run --release -p jetsam-checkers --example synth_run -- OUT_DIR [ACKED] [--nodes N] [--compact]`
//! (ACKED defaults to 10,000,000). `--compact` writes `history.bin` and
//! `recovered/<node>.bin` (format version 2) instead of the JSON lines.
//! Prints the answers the check must give.

use jetsam_core::compact::{CompactId, HistoryEncoder, RecoveredEncoder};
use jetsam_core::history::{OpId, OpType};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

const CLIENTS: u64 = 16;
const IN_FLIGHT: u64 = 4;
const LOSS_RUN: u64 = 100;

/// The history file in either form.
enum HistoryOut {
    Lines(BufWriter<File>),
    Compact(HistoryEncoder<BufWriter<File>>),
}

impl HistoryOut {
    fn op(
        &mut self,
        t: u64,
        kind: OpType,
        i: u64,
        seq: Option<u64>,
        node: Option<&str>,
        error: Option<&str>,
    ) -> std::io::Result<()> {
        let (client, counter) = (i % CLIENTS, i / CLIENTS);
        match self {
            HistoryOut::Compact(e) => e.push_parts(t, kind, OpId { client: client as u32, counter }, seq, node, error),
            HistoryOut::Lines(w) => {
                let kind = match kind {
                    OpType::Invoke => "invoke",
                    OpType::Ok => "ok",
                    OpType::Fail => "fail",
                    OpType::Info => "info",
                };
                write!(w, r#"{{"t_ns":{t},"client":{client},"type":"{kind}","id":"{client}-{counter}""#)?;
                if let Some(seq) = seq {
                    write!(w, r#","seq":{seq}"#)?;
                }
                if let Some(node) = node {
                    write!(w, r#","node":"{node}""#)?;
                }
                if let Some(error) = error {
                    write!(w, r#","error":"{error}""#)?;
                }
                writeln!(w, "}}")
            }
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            HistoryOut::Lines(mut w) => w.flush(),
            HistoryOut::Compact(e) => e.finish()?.flush(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Ok,
    Fail,
    InfoWritten,
    InfoLost,
}

fn fate(i: u64) -> Fate {
    match i % 1000 {
        17 => Fate::Fail,
        503 => Fate::InfoWritten,
        907 => Fate::InfoLost,
        _ => Fate::Ok,
    }
}

fn main() -> std::io::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let compact = args.iter().any(|a| a == "--compact");
    args.retain(|a| a != "--compact");
    let mut nodes = 5usize;
    if let Some(i) = args.iter().position(|a| a == "--nodes") {
        nodes = args.get(i + 1).and_then(|n| n.parse().ok()).filter(|n| (2..=64).contains(n)).unwrap_or_else(|| {
            eprintln!("--nodes takes a number from 2 to 64");
            std::process::exit(jetsam_core::exit::BAD_INPUT);
        });
        args.drain(i..i + 2);
    }
    let Some(out) = args.first() else {
        eprintln!("usage: synth_run OUT_DIR [ACKED] [--nodes N] [--compact]");
        std::process::exit(jetsam_core::exit::BAD_INPUT);
    };
    let acked_target: u64 = args.get(1).map_or(10_000_000, |s| s.parse().expect("ACKED is a number"));
    let out = Path::new(out);
    std::fs::create_dir_all(out.join("recovered"))?;
    std::fs::create_dir_all(out.join("nodes"))?;

    // Writes needed so that ACKED of them are acknowledged (997 of 1000 are).
    let total = acked_target * 1000 / 997 + 1;
    let file = |name: &str| -> std::io::Result<BufWriter<std::fs::File>> {
        Ok(BufWriter::with_capacity(1 << 20, std::fs::File::create(out.join(name))?))
    };
    let mut history = if compact {
        HistoryOut::Compact(HistoryEncoder::new(file("history.bin")?)?)
    } else {
        HistoryOut::Lines(file("history.jsonl")?)
    };
    // seq -> write index, for every write that reached the stream.
    let mut stream: Vec<u64> = Vec::with_capacity(total as usize);
    let mut ack_count = 0u64;
    let node_names: Vec<String> = (1..=nodes).map(|n| format!("n{n}")).collect();
    let complete = |i: u64, t: u64, h: &mut HistoryOut, stream: &mut Vec<u64>, acks: &mut u64| match fate(i) {
        Fate::Ok => {
            stream.push(i);
            *acks += 1;
            let node = &node_names[((i / 100_000) % nodes as u64) as usize];
            h.op(t, OpType::Ok, i, Some(stream.len() as u64), Some(node), None)
        }
        Fate::Fail => h.op(t, OpType::Fail, i, None, None, Some("no responders")),
        Fate::InfoWritten | Fate::InfoLost => {
            if fate(i) == Fate::InfoWritten {
                stream.push(i);
            }
            h.op(t, OpType::Info, i, None, None, Some("timeout"))
        }
    };
    let lag = CLIENTS * IN_FLIGHT;
    let mut t = 0u64;
    for i in 0..total {
        t += 1_000;
        history.op(t, OpType::Invoke, i, None, None, None)?;
        if i >= lag {
            complete(i - lag, t, &mut history, &mut stream, &mut ack_count)?;
        }
    }
    for i in total.saturating_sub(lag)..total {
        t += 1_000;
        complete(i, t, &mut history, &mut stream, &mut ack_count)?;
    }
    history.finish()?;

    // Losses: at 30%, 60% and 90% of the stream, the 100 writes starting at
    // an acknowledged one are gone from every node.
    let mut lost_everywhere = vec![false; stream.len()];
    let mut lost_acked = 0u64;
    let mut events = file("events.jsonl")?;
    for pct in [30, 60, 90] {
        let start = stream.len() * pct / 100;
        for (pos, lost) in lost_everywhere.iter_mut().enumerate().skip(start).take(LOSS_RUN as usize) {
            *lost = true;
            lost_acked += u64::from(fate(stream[pos]) == Fate::Ok);
        }
        // The power loss comes right after the lost writes were acknowledged.
        let t_loss = 2_000 * (stream[start + LOSS_RUN as usize] + lag + 1);
        let all = node_names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(",");
        writeln!(events, r#"{{"t_ns":{t_loss},"kind":"power-loss","nodes":[{all}]}}"#)?;
        writeln!(events, r#"{{"t_ns":{},"kind":"restart","nodes":[{all}]}}"#, t_loss + 1_000)?;
    }
    events.flush()?;
    // The last node additionally misses 1000 writes at 50%.
    let n5_gap = stream.len() / 2..stream.len() / 2 + 1000;
    let n5_missing_acked = n5_gap.clone().filter(|pos| fate(stream[*pos]) == Fate::Ok).count() as u64;

    for n in 1..=nodes {
        let keep = |pos: usize| !(lost_everywhere[pos] || (n == nodes && n5_gap.contains(&pos)));
        if compact {
            let mut e = RecoveredEncoder::new(file(&format!("recovered/n{n}.bin"))?)?;
            for (pos, i) in stream.iter().enumerate().filter(|(pos, _)| keep(*pos)) {
                let id = OpId { client: (i % CLIENTS) as u32, counter: i / CLIENTS };
                e.push_id(pos as u64 + 1, CompactId::Op(id))?;
            }
            e.finish()?.flush()?;
        } else {
            let mut f = file(&format!("recovered/n{n}.jsonl"))?;
            for (pos, i) in stream.iter().enumerate().filter(|(pos, _)| keep(*pos)) {
                writeln!(f, r#"{{"seq":{},"id":"{}-{}"}}"#, pos + 1, i % CLIENTS, i / CLIENTS)?;
            }
            f.flush()?;
        }
        std::fs::write(out.join(format!("nodes/n{n}.log")), "synthetic run: no node was started\n")?;
    }
    std::fs::write(
        out.join("scenario.resolved.toml"),
        format!(
            "format_version = 1\nname = \"synthetic\"\ndescription = \"written by checkers/examples/synth_run.rs\"\nnodes = {nodes}\nduration = \"60s\"\nseed = 1\n\n[stream]\nreplicas = {nodes}\nconsistency = \"strong\"\nsync = \"always\"\n"
        ),
    )?;
    println!("wrote {} ({} writes, {} acknowledged)", out.display(), total, ack_count);
    println!(
        "expected: verdict fail, lost {lost_acked}, loss windows 3, n{nodes} lost {}",
        lost_acked + n5_missing_acked
    );
    Ok(())
}
