//! `jetsam-node`: one process per node of the reference replicated stream
//! (docs/node.md). Parses the command line, recovers the data dir (stopping
//! with a non-zero exit on corruption, or with `--repair` wiping a damaged
//! log to catch up without voting), binds its listeners, starts the
//! event loop and the socket tasks on one thread (a current-thread tokio
//! runtime), and turns SIGTERM/SIGINT into a
//! clean shutdown (final fsync, exit 0).
//!
//! `jetsam-node read-offline --data-dir DIR` instead prints what a stopped
//! node's data dir holds without starting it ([`jetsam_node::offline`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use jetsam_core::exit;
use jetsam_node::core::{Core, Event, Options};
use jetsam_node::storage::{self, Recovered, Storage, StorageError};
use jetsam_node::terms::check_log_terms;
use jetsam_node::{Bugs, KNOWN_BUGS, SyncPolicy, net, offline};

/// Bound of the event loop's input queue (client requests and peer messages).
const EVENT_QUEUE_MAX: usize = 16_384;

#[derive(Debug, Parser)]
#[command(
    name = "jetsam-node",
    version,
    about = "jetsam's reference replicated stream node (docs/node.md)",
    after_help = "To print what a stopped node's data dir holds without starting it: \
                  jetsam-node read-offline --data-dir DIR [--stream NAME] (see read-offline --help)"
)]
struct Args {
    /// This node's name (e.g. n1); unique in the cluster.
    #[arg(long)]
    name: String,
    /// Directory of this node's log segments and term/vote file (created if missing).
    #[arg(long)]
    data_dir: PathBuf,
    /// Address clients connect to (docs/node-protocol.md).
    #[arg(long)]
    client_addr: SocketAddr,
    /// Address this node accepts peer connections on.
    #[arg(long)]
    peer_addr: SocketAddr,
    /// Another node and the address to dial it at (possibly a proxy): NAME=HOST:PORT. Repeat per peer.
    #[arg(long = "peer", value_name = "NAME=ADDR")]
    peers: Vec<String>,
    /// "always" (fsync before a record counts, group commit) or an interval such as 2m, 10s, 1s.
    #[arg(long, default_value = "2m")]
    sync: SyncPolicy,
    /// Switch on a deliberate bug (repeatable): ack-before-write, ack-before-fsync, trust-corrupt-log, skip-dir-fsync.
    #[arg(long = "bug", value_name = "NAME")]
    bugs: Vec<String>,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Shortest election timeout in milliseconds (the actual one is random in [min, 2*min)).
    #[arg(long, default_value_t = 500)]
    election_timeout_ms: u64,
    /// A publish not committed within this many milliseconds is answered as a timeout (indefinite).
    #[arg(long, default_value_t = 10_000)]
    pending_timeout_ms: u64,
    /// On a damaged log, wipe it (keeping the term/vote file) and rejoin as a non-voting member until caught up.
    #[arg(long)]
    repair: bool,
}

/// `jetsam-node read-offline`: the arguments after the word.
#[derive(Debug, Parser)]
#[command(
    name = "jetsam-node read-offline",
    bin_name = "jetsam-node read-offline",
    about = "Print the stream messages a stopped node's data dir holds, without starting the node or writing \
             anything. stdout: one {\"seq\":..,\"id\":..} per message; stderr: notes, the damage where reading \
             stopped, and a last line {\"read_offline\":{...}}. Exit 0: complete; 1: stopped at damage (the \
             messages before it were printed); 2: usage; 4: the data dir could not be read (docs/node.md)"
)]
struct ReadOfflineArgs {
    /// The node's data dir (the one given to --data-dir).
    #[arg(long)]
    data_dir: PathBuf,
    /// The stream to read; an error if the log holds another one (default: whichever it holds).
    #[arg(long)]
    stream: Option<String>,
}

/// Runs `read-offline` and returns its exit code.
fn read_offline(argv: impl Iterator<Item = std::ffi::OsString>) -> i32 {
    let args = ReadOfflineArgs::try_parse_from(argv).unwrap_or_else(|e| e.exit());
    let read = match offline::read_offline(&args.data_dir, args.stream.as_deref()) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::ENVIRONMENT;
        }
    };
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    let mut out = std::io::BufWriter::new(stdout.lock());
    match offline::write_read(&read, &mut out, &mut stderr.lock()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: failed to write the messages: {e}; check that stdout is open");
            exit::ENVIRONMENT
        }
    }
}

fn usage(message: String) -> ! {
    eprintln!("error: {message}\n\nFor more information, try '--help'.");
    std::process::exit(exit::BAD_INPUT);
}

/// Exits with the environment code after logging `message` (fail-stop).
fn stop(message: impl std::fmt::Display) -> ! {
    tracing::error!("{message}");
    std::process::exit(exit::ENVIRONMENT);
}

/// Opens the data dir. Damage stops the node, unless `repair` is set: then
/// the log is wiped ([`storage::repair`]) and opened again, empty and marked
/// as catching up. A damaged term/vote file stops the node either way.
fn recover(args: &Args, bugs: Bugs) -> (Storage, Recovered) {
    let open = || Storage::open(&args.data_dir, bugs.trust_corrupt_log, bugs.ack_before_write);
    let damage = match open() {
        Ok((storage, recovered)) if !args.repair => return (storage, recovered),
        // Core::new runs this check too; with --repair it runs first, so a
        // log damaged in a way the CRCs cannot see is repaired as well.
        Ok((storage, recovered)) => match check_log_terms(&recovered.records) {
            Ok(()) => return (storage, recovered),
            Err(e) => e,
        },
        Err(StorageError::Corrupt { file, offset, detail }) if args.repair => {
            format!("corrupt data in {} at offset {offset}: {detail}", file.display())
        }
        Err(e) => stop(e),
    };
    tracing::warn!("recovery found damage: {damage}; --repair: wiping the log and rejoining as a non-voting member");
    match storage::repair(&args.data_dir, &damage) {
        Ok(r) => tracing::warn!(
            removed = ?r.removed,
            term_before = r.old.term,
            term_after = r.new.term,
            "--repair: removed {} segment file(s); term moved on by one with no vote, so this node never votes \
             twice in a term; catching up from the leader before voting again",
            r.removed.len()
        ),
        Err(e) => stop(e),
    }
    match open() {
        Ok((storage, recovered)) => {
            assert!(recovered.catching_up && recovered.records.is_empty(), "a repaired log opens empty and marked");
            (storage, recovered)
        }
        Err(e) => stop(e),
    }
}

fn main() {
    if std::env::args_os().nth(1).is_some_and(|a| a == "read-offline") {
        std::process::exit(read_offline(std::env::args_os().skip(1)));
    }
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    // A panic anywhere (an invariant broke) stops the whole process: a node
    // whose event loop died must not keep its sockets open looking alive.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        stop(format_args!("stopping after a panic (an invariant broke): {info}"));
    }));

    let mut bugs = Bugs::default();
    for name in &args.bugs {
        if let Err(e) = bugs.enable(name) {
            usage(e);
        }
    }
    if args.repair && bugs.trust_corrupt_log {
        usage(
            "--repair and --bug trust-corrupt-log are alternatives (repair wipes a damaged log, the bug keeps \
               its undamaged prefix and votes); pass one of them"
                .into(),
        );
    }
    let mut peer_addrs: BTreeMap<String, SocketAddr> = BTreeMap::new();
    for spec in &args.peers {
        let Some((name, addr)) = spec.split_once('=') else {
            usage(format!("--peer {spec:?} must be NAME=HOST:PORT"));
        };
        let addr: SocketAddr = addr.parse().unwrap_or_else(|e| usage(format!("--peer {spec:?}: bad address: {e}")));
        if name.is_empty() || name == args.name || peer_addrs.insert(name.to_string(), addr).is_some() {
            usage(format!("--peer {spec:?}: peer names must be non-empty, unique and differ from --name"));
        }
    }
    if args.heartbeat_ms == 0 || args.election_timeout_ms < 2 * args.heartbeat_ms {
        usage(format!(
            "--election-timeout-ms ({}) must be at least twice --heartbeat-ms ({}), which must be positive",
            args.election_timeout_ms, args.heartbeat_ms
        ));
    }
    let mut names: Vec<String> = peer_addrs.keys().cloned().collect();
    names.push(args.name.clone());
    names.sort();
    if ![1, 3, 5].contains(&names.len()) {
        usage(format!("a cluster has 1, 3 or 5 nodes; this one has {} ({names:?})", names.len()));
    }

    let (mut storage, recovered) = recover(&args, bugs);
    if bugs.skip_dir_fsync {
        storage.skip_dir_fsync_on_new_segments();
    }
    for note in &recovered.notes {
        tracing::warn!("recovery: {note}");
    }
    tracing::info!(
        node = %args.name,
        sync = %args.sync,
        bugs = ?args.bugs,
        known_bugs = ?KNOWN_BUGS,
        records = recovered.records.len(),
        term = recovered.meta.term,
        catching_up = recovered.catching_up,
        repair = args.repair,
        "recovered data dir {}",
        args.data_dir.display()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| stop(format_args!("failed to start the async runtime: {e}")));
    let bind = |addr: SocketAddr, what: &str| {
        let listener = std::net::TcpListener::bind(addr).and_then(|l| l.set_nonblocking(true).map(|()| l));
        match listener {
            Ok(l) => l,
            Err(e) => stop(format_args!("failed to listen for {what} on {addr}: {e}; pick a free port")),
        }
    };
    let client_listener = bind(args.client_addr, "clients");
    let peer_listener = bind(args.peer_addr, "peers");

    let (events_tx, events_rx) = tokio::sync::mpsc::channel::<Event>(EVENT_QUEUE_MAX);
    let mut peer_queues = BTreeMap::new();
    {
        let _guard = runtime.enter();
        for (name, addr) in &peer_addrs {
            let id = names.iter().position(|n| n == name).expect("peer is in names") as u64 + 1;
            let (tx, rx) = tokio::sync::mpsc::channel(net::PEER_QUEUE_MAX);
            peer_queues.insert(id, tx);
            runtime.spawn(net::peer_out(args.name.clone(), name.clone(), *addr, rx));
        }
        let client_listener = tokio::net::TcpListener::from_std(client_listener).expect("inside the runtime");
        let peer_listener = tokio::net::TcpListener::from_std(peer_listener).expect("inside the runtime");
        runtime.spawn(net::serve_clients(client_listener, events_tx.clone()));
        runtime.spawn(net::serve_peers(peer_listener, events_tx.clone()));
    }

    let opts = Options {
        name: args.name.clone(),
        names,
        sync: args.sync,
        bugs,
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        election_timeout_min: Duration::from_millis(args.election_timeout_ms),
        pending_timeout: Duration::from_millis(args.pending_timeout_ms),
    };
    let core = match Core::new(opts, storage, recovered.meta, recovered.records, peer_queues) {
        Ok(c) => c,
        Err(e) => stop(format_args!("failed to start: {e}")),
    };
    // Spawned tasks run while `block_on` below drives the runtime.
    runtime.spawn(core.run(events_rx));

    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            stop("failed to install signal handlers");
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
        // The event loop fsyncs and exits the process; a full queue just delays it.
        if events_tx.send(Event::Shutdown).await.is_err() {
            stop("the event loop is gone; exiting without its final fsync");
        }
        std::future::pending::<()>().await
    })
}
