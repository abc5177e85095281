//! Token ids on the command line: comma-separated.

use lfm_edge::{Error, Result};

/// `--tokens 1,2,3`.
pub fn parse(text: &str) -> Result<Vec<u32>> {
    let ids = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| Error::Input(format!("--tokens: {s:?} is not a token id")))
        })
        .collect::<Result<Vec<u32>>>()?;
    if ids.is_empty() {
        return Err(Error::Input("--tokens is empty".into()));
    }
    Ok(ids)
}

pub fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}
