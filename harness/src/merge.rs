//! `jetsam merge INDEX...`: joins the `suite.jsonl` of every shard of a suite
//! (each a `jetsam suite DIR --shard I/N --out OUT_I`) into one result: one
//! line per scenario in name order, the suite's summary line, optionally one
//! JUnit file, and the exit code the unsharded suite would have had.
//!
//! It refuses (exit 2, naming what is wrong) a set of indexes that is not
//! exactly one suite split once: shards of another suite or split, a shard
//! missing or given twice, a scenario in two shards, or a shard that did not
//! finish (a scenario it set out to run has no result). A merge never passes
//! a suite some of whose scenarios did not run.

use crate::suite::worse;
use crate::suite_index::{CaseLine, IndexError, IndexLine, ShardLine};
use jetsam_core::exit;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// Each shard's `--out` folder (holding suite.jsonl) or its suite.jsonl.
    #[arg(required = true)]
    pub indexes: Vec<PathBuf>,
    /// Also write the joined JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
}

/// Why a set of indexes does not make one whole suite.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error("failed to merge {path}: {why}")]
    Shape { path: PathBuf, why: String },
    #[error("failed to merge: {why}")]
    Set { why: String },
}

/// One suite, joined: its name and every scenario's result in file-name order.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub suite: String,
    pub shards: u32,
    pub cases: Vec<CaseLine>,
}

/// One index: its shard line and its cases, checked against each other.
fn read_shard(path: &Path) -> Result<(ShardLine, Vec<CaseLine>), MergeError> {
    let (file, lines) = crate::suite_index::read(path)?;
    let shape = |why: String| MergeError::Shape { path: file.clone(), why };
    let mut lines = lines.into_iter();
    let Some(IndexLine::Shard(shard)) = lines.next() else {
        return Err(shape("the first line is not a shard line: is this a jetsam suite index?".into()));
    };
    let mut cases: BTreeMap<String, CaseLine> = BTreeMap::new();
    for line in lines {
        let IndexLine::Case(case) = line else {
            return Err(shape("a second shard line: one index per shard".into()));
        };
        if !shard.scenarios.contains(&case.file) {
            return Err(shape(format!(
                "a result for {}, which shard {} did not set out to run",
                case.file, shard.shard
            )));
        }
        if cases.insert(case.file.clone(), case).is_some() {
            return Err(shape("two results for one scenario".into()));
        }
    }
    let missing: Vec<&str> = shard.scenarios.iter().filter(|f| !cases.contains_key(*f)).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(shape(format!(
            "shard {} did not finish: no result for {}; rerun that shard",
            shard.shard,
            missing.join(", ")
        )));
    }
    Ok((shard, cases.into_values().collect()))
}

/// Joins the shards at `paths` into one suite.
pub fn merge(paths: &[PathBuf]) -> Result<Merged, MergeError> {
    let set = |why: String| MergeError::Set { why };
    let mut shards: BTreeMap<u32, (PathBuf, ShardLine)> = BTreeMap::new();
    let mut cases: BTreeMap<String, CaseLine> = BTreeMap::new();
    let mut first: Option<(String, u32, usize)> = None;
    for path in paths {
        let (shard, shard_cases) = read_shard(path)?;
        let parsed: crate::shard::Shard =
            shard.shard.parse().map_err(|e: String| MergeError::Shape { path: path.clone(), why: e })?;
        let key = (shard.suite.clone(), parsed.count, shard.scenarios_total);
        match &first {
            None => first = Some(key.clone()),
            Some(f) if *f != key => {
                return Err(set(format!(
                    "{} is shard {} of suite {:?} with {} scenarios, but the first index is a shard of {:?} split {} ways with {} scenarios: merge the shards of one suite run",
                    path.display(),
                    shard.shard,
                    key.0,
                    key.2,
                    f.0,
                    f.1,
                    f.2
                )));
            }
            Some(_) => {}
        }
        if let Some((other, _)) = shards.get(&parsed.index) {
            return Err(set(format!("shard {} given twice: {} and {}", shard.shard, other.display(), path.display())));
        }
        for case in shard_cases {
            if cases.contains_key(&case.file) {
                return Err(set(format!("{} is in two shards: were they split the same way?", case.file)));
            }
            cases.insert(case.file.clone(), case);
        }
        shards.insert(parsed.index, (path.clone(), shard));
    }
    let (suite, count, total) = first.expect("clap requires at least one index");
    let missing: Vec<String> =
        (1..=count).filter(|i| !shards.contains_key(i)).map(|i| format!("{i}/{count}")).collect();
    if !missing.is_empty() {
        return Err(set(format!("shard(s) {} missing: pass every shard's index", missing.join(", "))));
    }
    if cases.len() != total {
        return Err(set(format!(
            "the shards hold {} scenarios but the suite has {total}: were they run on the same commit?",
            cases.len()
        )));
    }
    Ok(Merged { suite, shards: count, cases: cases.into_values().collect() })
}

pub fn execute(args: MergeArgs) -> i32 {
    let merged = match merge(&args.indexes) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_INPUT;
        }
    };
    let mut worst = exit::PASS;
    for case in &merged.cases {
        println!("{}", case.summary());
        worst = worse(worst, case.exit_code, case.ok);
    }
    println!(
        "suite {} ({} shards merged): {} scenarios, {} as expected",
        merged.suite,
        merged.shards,
        merged.cases.len(),
        merged.cases.iter().filter(|c| c.ok).count()
    );
    if let Some(path) = &args.junit {
        let cases: Vec<_> = merged.cases.iter().map(CaseLine::junit_case).collect();
        if let Err(e) = std::fs::write(path, crate::junit::render(&merged.suite, &cases)) {
            eprintln!("error: failed to write {}: {e}; check that its folder exists and is writable", path.display());
            return exit::ENVIRONMENT;
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite_index::INDEX_FORMAT_VERSION;

    fn case(file: &str, ok: bool, exit_code: i32) -> CaseLine {
        CaseLine {
            format_version: INDEX_FORMAT_VERSION,
            file: file.into(),
            name: file.trim_end_matches(".toml").into(),
            expect: "pass".into(),
            verdict: Some(if ok { "pass" } else { "fail" }.into()),
            ok,
            exit_code,
            acked: Some(100),
            lost: Some(if ok { 0 } else { 3 }),
            loss_windows: Some(if ok { 0 } else { 1 }),
            time_s: 1.5,
            run_dir: Some(format!("out/{file}/run")),
            message: (!ok).then(|| "verdict fail, expected pass: 3 lost".into()),
        }
    }

    /// Writes one shard's index in `dir/<name>/suite.jsonl`; `done` of its scenarios have results.
    fn shard(dir: &Path, name: &str, suite: &str, i_of_n: &str, total: usize, files: &[&str], done: usize) -> PathBuf {
        let out = dir.join(name);
        let line = ShardLine {
            format_version: INDEX_FORMAT_VERSION,
            suite: suite.into(),
            shard: i_of_n.into(),
            scenarios_total: total,
            scenarios: files.iter().map(|f| f.to_string()).collect(),
        };
        let mut w = crate::suite_index::IndexWriter::create(&out, &line).unwrap();
        for f in &files[..done] {
            w.append(&IndexLine::Case(case(f, !f.starts_with("bad"), if f.starts_with("bad") { 1 } else { 0 })))
                .unwrap();
        }
        out
    }

    #[test]
    fn every_shard_joins_into_the_whole_suite_in_name_order() {
        let d = tempfile::tempdir().unwrap();
        let a = shard(d.path(), "a", "ci", "1/2", 3, &["a.toml", "c.toml"], 2);
        let b = shard(d.path(), "b", "ci", "2/2", 3, &["bad-b.toml"], 1);
        let m = merge(&[b.clone(), a.clone()]).unwrap();
        assert_eq!((m.suite.as_str(), m.shards), ("ci", 2));
        let files: Vec<&str> = m.cases.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(files, ["a.toml", "bad-b.toml", "c.toml"]);
        // A file path works as well as the folder.
        assert_eq!(merge(&[a.join("suite.jsonl"), b.join("suite.jsonl")]).unwrap(), m);
    }

    #[test]
    fn an_incomplete_or_inconsistent_set_is_named_never_merged() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path();
        let one = shard(p, "one", "ci", "1/2", 3, &["a.toml", "c.toml"], 2);
        let two = shard(p, "two", "ci", "2/2", 3, &["b.toml"], 1);
        let cases: Vec<(Vec<PathBuf>, &str)> = vec![
            (vec![one.clone()], "shard(s) 2/2 missing"),
            (vec![one.clone(), one.clone()], "shard 1/2 given twice"),
            (
                vec![one.clone(), shard(p, "cut", "ci", "2/2", 3, &["b.toml"], 0)],
                "shard 2/2 did not finish: no result for b.toml",
            ),
            (vec![one.clone(), shard(p, "other", "nats", "2/2", 3, &["b.toml"], 1)], "shard 2/2 of suite \"nats\""),
            (vec![one.clone(), shard(p, "three", "ci", "2/3", 3, &["b.toml"], 1)], "split 2 ways"),
            (vec![one.clone(), shard(p, "overlap", "ci", "2/2", 3, &["c.toml"], 1)], "c.toml is in two shards"),
            (vec![one.clone(), shard(p, "short", "ci", "2/2", 4, &["b.toml"], 1)], "with 4 scenarios"),
            (vec![p.join("nowhere")], "failed to read"),
        ];
        for (paths, expected) in cases {
            let e = merge(&paths).unwrap_err().to_string();
            assert!(e.contains(expected), "expected {expected:?} in: {e}");
        }
        assert!(merge(&[one, two]).is_ok());
    }

    #[test]
    fn a_malformed_index_names_its_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let out = shard(d.path(), "x", "ci", "1/1", 1, &["a.toml"], 1);
        let file = out.join("suite.jsonl");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, text.replace("\"ok\":true", "\"ok\":\"yes\"")).unwrap();
        let e = merge(std::slice::from_ref(&out)).unwrap_err().to_string();
        assert!(e.contains("suite.jsonl:2:") && e.contains("invalid type"), "{e}");
        std::fs::write(&file, text.replace("\"format_version\":1", "\"format_version\":9")).unwrap();
        let e = merge(std::slice::from_ref(&out)).unwrap_err().to_string();
        assert!(e.contains("suite.jsonl:1: format_version 9"), "{e}");
        std::fs::write(&file, text.replace("\"ok\":true", "\"ok\":true,\"colour\":\"red\"")).unwrap();
        let e = merge(std::slice::from_ref(&out)).unwrap_err().to_string();
        assert!(e.contains("suite.jsonl:2: unknown field `colour`"), "{e}");
        std::fs::write(&file, text.lines().nth(1).unwrap()).unwrap();
        let e = merge(std::slice::from_ref(&out)).unwrap_err().to_string();
        assert!(e.contains("the first line is not a shard line"), "{e}");
    }

    #[test]
    fn index_lines_keep_their_shape() {
        let shard = ShardLine {
            format_version: INDEX_FORMAT_VERSION,
            suite: "ci".into(),
            shard: "1/2".into(),
            scenarios_total: 3,
            scenarios: vec!["a.toml".into(), "c.toml".into()],
        };
        insta::assert_snapshot!(serde_json::to_string(&IndexLine::Shard(shard)).unwrap());
        insta::assert_snapshot!(serde_json::to_string(&IndexLine::Case(case("bad.toml", false, 1))).unwrap());
        insta::assert_snapshot!(case("bad.toml", false, 1).summary());
        let mut err = case("broken.toml", false, 2);
        (err.verdict, err.acked, err.lost, err.loss_windows) = (None, None, None, None);
        err.message = Some("invalid scenario broken.toml:3: ...".into());
        insta::assert_snapshot!(err.summary());
    }
}
