//! Writes a synthetic run folder for benchmarking `jetsam check`
//! (scripts/bench-check.sh): ACKED acknowledged publishes by 16 pipelined
//! clients (4 in flight each), about 1 in 1000 failed and 1 in 1000
//! indeterminate (half of those written), five nodes, three power losses
//! that each lose 100 consecutive acknowledged writes everywhere, and node
//! n5 missing 1000 writes the others hold (divergent).
//!
//! Usage: `cargo run --release -p jetsam-checkers --example synth_run -- OUT_DIR [ACKED]`
//! (ACKED defaults to 10,000,000). Prints the answers the check must give.

use std::io::{BufWriter, Write};
use std::path::Path;

const CLIENTS: u64 = 16;
const IN_FLIGHT: u64 = 4;
const NODES: usize = 5;
const LOSS_RUN: u64 = 100;

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
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1) else {
        eprintln!("usage: synth_run OUT_DIR [ACKED]");
        std::process::exit(jetsam_core::exit::BAD_INPUT);
    };
    let acked_target: u64 = args.get(2).map_or(10_000_000, |s| s.parse().expect("ACKED is a number"));
    let out = Path::new(out);
    std::fs::create_dir_all(out.join("recovered"))?;
    std::fs::create_dir_all(out.join("nodes"))?;

    // Writes needed so that ACKED of them are acknowledged (997 of 1000 are).
    let total = acked_target * 1000 / 997 + 1;
    let file = |name: &str| -> std::io::Result<BufWriter<std::fs::File>> {
        Ok(BufWriter::with_capacity(1 << 20, std::fs::File::create(out.join(name))?))
    };
    let mut history = file("history.jsonl")?;
    // seq -> write index, for every write that reached the stream.
    let mut stream: Vec<u64> = Vec::with_capacity(total as usize);
    let mut ack_count = 0u64;
    let complete = |i: u64, t: u64, h: &mut BufWriter<std::fs::File>, stream: &mut Vec<u64>, acks: &mut u64| {
        let (client, counter) = (i % CLIENTS, i / CLIENTS);
        match fate(i) {
            Fate::Ok => {
                stream.push(i);
                *acks += 1;
                let node = 1 + (i / 100_000) % NODES as u64;
                writeln!(
                    h,
                    r#"{{"t_ns":{t},"client":{client},"type":"ok","id":"{client}-{counter}","seq":{},"node":"n{node}"}}"#,
                    stream.len()
                )
            }
            Fate::Fail => writeln!(
                h,
                r#"{{"t_ns":{t},"client":{client},"type":"fail","id":"{client}-{counter}","error":"no responders"}}"#
            ),
            Fate::InfoWritten | Fate::InfoLost => {
                if fate(i) == Fate::InfoWritten {
                    stream.push(i);
                }
                writeln!(
                    h,
                    r#"{{"t_ns":{t},"client":{client},"type":"info","id":"{client}-{counter}","error":"timeout"}}"#
                )
            }
        }
    };
    let lag = CLIENTS * IN_FLIGHT;
    let mut t = 0u64;
    for i in 0..total {
        t += 1_000;
        let (client, counter) = (i % CLIENTS, i / CLIENTS);
        writeln!(history, r#"{{"t_ns":{t},"client":{client},"type":"invoke","id":"{client}-{counter}"}}"#)?;
        if i >= lag {
            complete(i - lag, t, &mut history, &mut stream, &mut ack_count)?;
        }
    }
    for i in total.saturating_sub(lag)..total {
        t += 1_000;
        complete(i, t, &mut history, &mut stream, &mut ack_count)?;
    }
    history.flush()?;

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
        writeln!(events, r#"{{"t_ns":{t_loss},"kind":"power-loss","nodes":["n1","n2","n3","n4","n5"]}}"#)?;
        writeln!(events, r#"{{"t_ns":{},"kind":"restart","nodes":["n1","n2","n3","n4","n5"]}}"#, t_loss + 1_000)?;
    }
    events.flush()?;
    // n5 additionally misses 1000 writes at 50%.
    let n5_gap = stream.len() / 2..stream.len() / 2 + 1000;
    let n5_missing_acked = n5_gap.clone().filter(|pos| fate(stream[*pos]) == Fate::Ok).count() as u64;

    for n in 1..=NODES {
        let mut f = file(&format!("recovered/n{n}.jsonl"))?;
        for (pos, i) in stream.iter().enumerate() {
            if lost_everywhere[pos] || (n == NODES && n5_gap.contains(&pos)) {
                continue;
            }
            writeln!(f, r#"{{"seq":{},"id":"{}-{}"}}"#, pos + 1, i % CLIENTS, i / CLIENTS)?;
        }
        f.flush()?;
        std::fs::write(out.join(format!("nodes/n{n}.log")), "synthetic run: no node was started\n")?;
    }
    std::fs::write(
        out.join("scenario.resolved.toml"),
        "format_version = 1\nname = \"synthetic\"\ndescription = \"written by checkers/examples/synth_run.rs\"\nnodes = 5\nduration = \"60s\"\nseed = 1\n\n[stream]\nreplicas = 5\nconsistency = \"strong\"\nsync = \"always\"\n",
    )?;
    println!("wrote {} ({} writes, {} acknowledged)", out.display(), total, ack_count);
    println!("expected: verdict fail, lost {lost_acked}, loss windows 3, n5 lost {}", lost_acked + n5_missing_acked);
    Ok(())
}
