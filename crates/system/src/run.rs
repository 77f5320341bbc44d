//! The one way this crate runs a program: with its arguments and standard
//! input, a time limit, and a debug log line saying what ran and how long it
//! took. Failures carry the program's own words (its stderr).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;
use tracing::debug;

/// A program that could not be run, or said no.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {limit:?}")]
    Timeout { program: String, limit: Duration },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
}

/// What a successful run printed.
#[derive(Debug, Clone)]
pub struct Ran {
    pub stdout: String,
    pub elapsed: Duration,
}

/// Run `program args...`, feeding `stdin`, killing it after `limit`.
pub async fn run(
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
    limit: Duration,
) -> Result<Ran, RunError> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RunError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A program that exits early closes its end: its exit status tells why.
        let _ = pipe.write_all(input.as_bytes()).await;
    }
    let output = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => {
            return Err(RunError::Spawn {
                program: program.to_owned(),
                source,
            });
        }
        Err(_) => {
            return Err(RunError::Timeout {
                program: program.to_owned(),
                limit,
            });
        }
    };
    let elapsed = started.elapsed();
    debug!(program, ?args, ?elapsed, status = %output.status, "ran");
    if !output.status.success() {
        return Err(RunError::Failed {
            program: program.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(Ran {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        elapsed,
    })
}
