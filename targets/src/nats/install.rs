//! Finding the pinned `nats-server` binary and its version.

use super::*;

/// The repository root: env `JETSAM_ROOT`, else the first directory holding
/// [`INSTALL_SCRIPT`] walking up from the current directory, then from the
/// current executable.
pub fn find_repo_root() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("JETSAM_ROOT").filter(|r| !r.is_empty()) {
        return Some(PathBuf::from(root));
    }
    let starts = [std::env::current_dir().ok(), std::env::current_exe().ok()];
    starts
        .into_iter()
        .flatten()
        .find_map(|start| start.ancestors().find(|dir| dir.join(INSTALL_SCRIPT).is_file()).map(Path::to_path_buf))
}

/// The command that installs `version`, for error messages.
pub fn install_command(version: &str) -> String {
    match find_repo_root() {
        Some(root) => format!("{} {version}", root.join(INSTALL_SCRIPT).display()),
        None => format!("{INSTALL_SCRIPT} {version} (from the jetsam repository root)"),
    }
}

/// Finds the `nats-server` binary of `version`: `explicit` if given, else
/// `<repo>/.nats/<version>/bin/nats-server`, else `nats-server` on PATH if
/// `--version` reports that version. A missing binary is
/// [`TargetError::Missing`] whose fix is the install command.
pub fn find_nats_server(version: &str, explicit: Option<&Path>) -> Result<PathBuf, TargetError> {
    let missing = |detail: String| TargetError::Missing {
        what: format!("nats-server {version} binary"),
        detail,
        fix: format!("install it with `{}`, or pass the binary's path explicitly", install_command(version)),
    };
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_path_buf())
        } else {
            Err(missing(format!("{} is not a file", path.display())))
        };
    }
    let mut looked = Vec::new();
    if let Some(root) = find_repo_root() {
        let candidate = root.join(".nats").join(version).join("bin").join("nats-server");
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
    } else {
        looked.push(format!(
            "no repository root (set JETSAM_ROOT or run inside the repository holding {INSTALL_SCRIPT})"
        ));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("nats-server");
            if candidate.is_file() {
                match server_version(&candidate) {
                    Ok(found) if found == version => return Ok(candidate),
                    Ok(found) => looked.push(format!("{} (version {found})", candidate.display())),
                    Err(e) => looked.push(format!("{} ({e})", candidate.display())),
                }
            }
        }
    }
    looked.push("nats-server on PATH".to_string());
    Err(missing(format!("looked at {}", looked.join(", "))))
}

/// The version `nats-server --version` reports (`nats-server: v2.12.1` -> `2.12.1`), bounded.
pub fn server_version(binary: &Path) -> Result<String, String> {
    let mut child = std::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run --version: {e}"))?;
    let deadline = Instant::now() + VERSION_PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("--version gave no answer within {VERSION_PROBE_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("cannot wait for --version: {e}")),
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        stdout.read_to_string(&mut out).map_err(|e| format!("cannot read --version output: {e}"))?;
    }
    out.split_whitespace()
        .find_map(|word| word.strip_prefix('v').filter(|v| is_version(v)).map(str::to_string))
        .ok_or_else(|| format!("unexpected --version output {:?}", out.trim()))
}

pub(super) fn is_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}
