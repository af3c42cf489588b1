//! jetsam-workloads drives the acked-publish workload: concurrent clients
//! publish unique ids `<client>-<counter>` at a rate (or as fast as acks
//! come) and record every operation (invoke, then ok, fail or info) to
//! `history.jsonl` as it happens, with ack latencies in an HDR histogram.
