//! The nftables adapter: check, load, read back and remove switchboard's
//! own table, through the `nft` program (one atomic transaction per load).
//!
//! Every function takes the table name; nothing here ever names, lists or
//! flushes another table.

use std::time::Duration;

use crate::run::{RunError, run};

const NFT: &str = "nft";
const LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("the ruleset does not pass `nft -c`: {0}")]
    Check(RunError),
    #[error("loading the ruleset failed (nothing was changed, the transaction is atomic): {0}")]
    Load(RunError),
    #[error("reading the loaded ruleset failed: {0}")]
    Read(RunError),
    #[error("removing table inet {table} failed: {source}")]
    Remove { table: String, source: RunError },
    #[error("the loaded table does not match the plan: {0}")]
    Mismatch(String),
}

/// `nft -c -f -`: would this script load? Changes nothing.
pub async fn check(script: &str) -> Result<(), NftError> {
    run(NFT, &["-c", "-f", "-"], Some(script), LIMIT)
        .await
        .map(|_| ())
        .map_err(NftError::Check)
}

/// `nft -f -`: load the script as one transaction.
pub async fn load(script: &str) -> Result<(), NftError> {
    run(NFT, &["-f", "-"], Some(script), LIMIT)
        .await
        .map(|_| ())
        .map_err(NftError::Load)
}

/// `nft list table inet TABLE`, or `None` when the table does not exist.
pub async fn list_table(table: &str) -> Result<Option<String>, NftError> {
    match run(NFT, &["list", "table", "inet", table], None, LIMIT).await {
        Ok(ran) => Ok(Some(ran.stdout)),
        Err(RunError::Failed { stderr, .. }) if stderr.contains("No such file or directory") => {
            Ok(None)
        }
        Err(e) => Err(NftError::Read(e)),
    }
}

/// Delete table inet TABLE if it exists (declare it first so that the
/// delete cannot fail on a missing table; one transaction).
pub async fn remove_table(table: &str) -> Result<(), NftError> {
    let script = format!("table inet {table}\ndelete table inet {table}\n");
    run(NFT, &["-f", "-"], Some(&script), LIMIT)
        .await
        .map(|_| ())
        .map_err(|source| NftError::Remove {
            table: table.to_owned(),
            source,
        })
}

/// How many elements the kernel holds in set `set` of table inet `table`.
pub async fn set_len(table: &str, set: &str) -> Result<usize, NftError> {
    let ran = run(NFT, &["-j", "list", "set", "inet", table, set], None, LIMIT)
        .await
        .map_err(NftError::Read)?;
    let doc: serde_json::Value = serde_json::from_str(&ran.stdout)
        .map_err(|e| NftError::Mismatch(format!("unreadable `nft -j` output: {e}")))?;
    let len = doc["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|o| o.get("set"))
        .map(|s| s["elem"].as_array().map_or(0, Vec::len))
        .ok_or_else(|| NftError::Mismatch(format!("set {set} is not in table inet {table}")))?;
    Ok(len)
}
