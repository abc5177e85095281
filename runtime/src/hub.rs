//! What `--model` names, turned into a local path: a path on disk as it is;
//! `hf:OWNER/REPO[:FILE]` fetched from the Hugging Face hub into its standard cache
//! (`HF_HOME`, default `~/.cache/huggingface`; `HF_ENDPOINT`; `HF_TOKEN` or the token
//! file), with a progress bar and resumable downloads.
//!
//! What the cache already holds is used as it is, without asking the hub, so a model
//! fetched once also runs offline (to pick up a newer revision, delete its
//! `models--OWNER--REPO` folder from the cache). With `HF_HUB_OFFLINE` set, as in
//! huggingface_hub, the hub is never asked.
//!
//! Every name that becomes a path in the cache (owner, repository, file, and the shards
//! a shard index lists) is checked first: hf-hub joins them to the cache folder as they
//! come, so `..` or an absolute name would write outside it.

use std::path::{Component, Path, PathBuf};

use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::api::Siblings;
use hf_hub::{Cache, Repo};

use crate::error::{Error, Result};
use crate::safetensors::weight_files;

const HUB_PREFIX: &str = "hf:";
const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
/// Optional: it carries the chat template and the end-of-turn token.
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// What a `--model` value names.
#[derive(Debug, PartialEq, Eq)]
pub enum ModelSpec {
    /// A model directory (or file) on disk.
    Path(PathBuf),
    /// `OWNER/REPO` on the hub and, for single-file models (.gguf), the file in it.
    Hub { repo: String, file: Option<String> },
}

impl ModelSpec {
    /// The one place a `--model` value is checked: a hub spec comes back only with
    /// names that stay inside the cache.
    pub fn parse(spec: &str) -> Result<ModelSpec> {
        let Some(rest) = spec.strip_prefix(HUB_PREFIX) else {
            return Ok(ModelSpec::Path(spec.into()));
        };
        let (repo, file) = match rest.split_once(':') {
            Some((repo, file)) => (repo, Some(file)),
            None => (rest, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) || file == Some("") {
            return Err(Error::Input(format!(
                "--model {spec}: expected hf:OWNER/REPO or hf:OWNER/REPO:FILE"
            )));
        }
        let refused = |what: &str, name: &str, why: &str| {
            Error::Input(format!("--model {spec}: the {what} {name:?} {why}"))
        };
        for (what, name) in ["owner", "repository"].into_iter().zip(&parts) {
            if let Some(why) = bad_repo_part(name) {
                return Err(refused(what, name, why));
            }
        }
        if let Some(why) = file.and_then(bad_file_name) {
            return Err(refused("file name", file.unwrap_or_default(), why));
        }
        Ok(ModelSpec::Hub {
            repo: repo.to_string(),
            file: file.map(str::to_string),
        })
    }
}

/// Why `name` cannot be an owner or repository name on the hub, if it cannot: the
/// hub's own rule (letters, digits, `-`, `_`, `.`; no `--` or `..`; a letter, digit or
/// `_` at each end; at most 96 characters), which also keeps it one folder of the cache.
fn bad_repo_part(name: &str) -> Option<&'static str> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if !name.chars().all(|c| word(c) || c == '-' || c == '.') {
        Some("has a character other than letters, digits, '-', '_' and '.'")
    } else if name.contains("..") || name.contains("--") {
        Some("has '..' or '--' in it")
    } else if !name.starts_with(word) || !name.ends_with(word) {
        Some("must start and end with a letter, digit or '_'")
    } else if name.len() > 96 {
        Some("is longer than 96 characters")
    } else {
        None
    }
}

/// Why `name` is not a plain relative path inside a repository, if it is not: what
/// hf-hub joins to the snapshot folder must not leave it.
fn bad_file_name(name: &str) -> Option<&'static str> {
    let parts = || name.split('/');
    if name.contains('\\') {
        Some("has a backslash")
    } else if name.chars().any(char::is_control) {
        Some("has a control character (NUL, newline, ...)")
    } else if name.starts_with('/') || Path::new(name).is_absolute() {
        Some("is absolute")
    } else if parts().any(|p| p == "..") {
        Some("has a `..` component")
    } else if parts().any(|p| p == ".") {
        Some("has a `.` component")
    } else if parts().any(str::is_empty) {
        Some("has an empty component")
    } else if !Path::new(name)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        Some("is not a plain relative path")
    } else {
        None
    }
}

/// Whether `HF_HUB_OFFLINE` is set to a value huggingface_hub reads as true.
fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        ["1", "true", "yes", "on"]
            .iter()
            .any(|yes| v.trim().eq_ignore_ascii_case(yes))
    })
}

/// The local path of a model name, fetching what a hub spec names unless the cache
/// holds it already.
pub fn resolve(spec: &str) -> Result<PathBuf> {
    match ModelSpec::parse(spec)? {
        ModelSpec::Path(path) => Ok(path),
        ModelSpec::Hub { repo, file } => {
            let hub = Hub::from_env(spec, &repo)?;
            match file {
                Some(file) => hub.file(&file),
                None => hub.checkpoint(),
            }
        }
    }
}

/// One hub repository and its folder in the cache.
struct Hub {
    /// The `--model` value, to name in errors.
    spec: String,
    endpoint: String,
    api: ApiRepo,
    /// `HF_HOME/hub/models--OWNER--REPO`.
    cache_dir: PathBuf,
    cache: hf_hub::CacheRepo,
    /// `HF_HUB_OFFLINE`: only the cache is read.
    offline: bool,
}

impl Hub {
    fn from_env(spec: &str, repo_id: &str) -> Result<Hub> {
        let cache = Cache::from_env();
        // hf-hub 0.4 reads only the token file; HF_TOKEN wins, as in huggingface_hub.
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| cache.token());
        let endpoint = std::env::var("HF_ENDPOINT")
            .map(|e| e.trim_end_matches('/').to_string())
            .unwrap_or_else(|_| DEFAULT_ENDPOINT.to_string());
        let repo = Repo::model(repo_id.to_string());
        let api = ApiBuilder::from_cache(cache.clone())
            .with_endpoint(endpoint.clone())
            .with_token(token)
            .build()
            .map_err(|e| Error::Hub {
                spec: spec.to_string(),
                message: format!("cannot set up the HTTP client: {e}"),
            })?;
        Ok(Hub {
            spec: spec.to_string(),
            endpoint,
            api: api.repo(repo.clone()),
            cache_dir: cache.path().join(repo.folder_name()),
            cache: cache.repo(repo),
            offline: offline(),
        })
    }

    /// One file of the repository (a .gguf), from the cache or else downloaded.
    fn file(&self, name: &str) -> Result<PathBuf> {
        if self.offline {
            return self.cache.get(name).ok_or_else(|| self.not_cached(name));
        }
        self.api.get(name).map_err(|e| self.error(Some(name), e))
    }

    /// The snapshot folder of a safetensors checkpoint: the cached one when it is
    /// complete, else the repository's current revision, fetched file by file.
    fn checkpoint(&self) -> Result<PathBuf> {
        if let Some(dir) = self.cached_checkpoint()? {
            return Ok(dir);
        }
        if self.offline {
            return Err(self.not_cached("a whole checkpoint"));
        }
        let info = self.api.info().map_err(|e| self.error(None, e))?;
        if info.sha.is_empty() || !info.sha.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::Hub {
                spec: self.spec.clone(),
                message: format!("the hub named the revision {:?}, not a commit", info.sha),
            });
        }
        let snapshot = self.cache_dir.join("snapshots").join(&info.sha);
        for name in self.checkpoint_files(&info.siblings)? {
            self.fetch_into(&snapshot, name)?;
        }
        for name in self.shard_names(&snapshot)? {
            self.fetch_into(&snapshot, &name)?;
        }
        // Last: `cached_checkpoint` takes a snapshot with a config.json as complete.
        self.fetch_into(&snapshot, CONFIG)?;
        Ok(snapshot)
    }

    /// The cached snapshot of the last revision fetched, if it holds a whole checkpoint.
    fn cached_checkpoint(&self) -> Result<Option<PathBuf>> {
        let config = self.cache.get(CONFIG);
        let Some(dir) = config.and_then(|c| c.parent().map(Path::to_path_buf)) else {
            return Ok(None);
        };
        if !dir.join(TOKENIZER).exists() || weight_files(&dir).is_err() {
            return Ok(None);
        }
        let shards = self.shard_names(&dir)?;
        Ok(shards.iter().all(|s| dir.join(s).exists()).then_some(dir))
    }

    /// The weight files of the checkpoint in `snapshot`, as names inside it; an index
    /// naming a shard anywhere else is refused.
    fn shard_names(&self, snapshot: &Path) -> Result<Vec<String>> {
        let name = |path: &PathBuf| {
            // An absolute name replaced the snapshot when joined, and stays absolute.
            let name = path
                .strip_prefix(snapshot)
                .unwrap_or(path)
                .to_string_lossy();
            match bad_file_name(&name) {
                None => Ok(name.into_owned()),
                Some(why) => Err(Error::Hub {
                    spec: self.spec.clone(),
                    message: format!(
                        "{WEIGHTS_INDEX} names the shard {name:?}, which {why}: \
                         a shard must be a file inside the repository"
                    ),
                }),
            }
        };
        weight_files(snapshot)?.iter().map(name).collect()
    }

    /// Which of the listed files make up the checkpoint besides config.json; the
    /// shards follow from the index.
    fn checkpoint_files<'a>(&self, listed: &'a [Siblings]) -> Result<Vec<&'a str>> {
        let find = |name: &str| {
            listed
                .iter()
                .map(|s| s.rfilename.as_str())
                .find(|&f| f == name)
        };
        let weights = find(WEIGHTS).or_else(|| find(WEIGHTS_INDEX));
        let (Some(_), Some(tokenizer), Some(weights)) = (find(CONFIG), find(TOKENIZER), weights)
        else {
            return Err(self.not_a_checkpoint(listed));
        };
        Ok(find(TOKENIZER_CONFIG)
            .into_iter()
            .chain([tokenizer, weights])
            .collect())
    }

    fn not_a_checkpoint(&self, listed: &[Siblings]) -> Error {
        let ggufs: Vec<&str> = listed
            .iter()
            .map(|s| s.rfilename.as_str())
            .filter(|f| f.ends_with(".gguf"))
            .collect();
        let message = if ggufs.is_empty() {
            format!(
                "the repository has no {CONFIG}, {TOKENIZER} and {WEIGHTS} (or {WEIGHTS_INDEX})"
            )
        } else {
            format!(
                "the repository holds GGUF files, name one: {}:FILE with FILE one of {}",
                self.spec,
                ggufs.join(", ")
            )
        };
        Error::Hub {
            spec: self.spec.clone(),
            message,
        }
    }

    /// Downloads `name` unless `snapshot` has it; it must land there (the revision the
    /// listing named), else the repository changed while we were fetching it.
    fn fetch_into(&self, snapshot: &Path, name: &str) -> Result<()> {
        if snapshot.join(name).exists() {
            return Ok(());
        }
        let path = self
            .api
            .download(name)
            .map_err(|e| self.error(Some(name), e))?;
        if path.starts_with(snapshot) {
            Ok(())
        } else {
            Err(Error::Hub {
                spec: self.spec.clone(),
                message: format!("the repository changed while fetching {name}; run again"),
            })
        }
    }

    fn not_cached(&self, what: &str) -> Error {
        Error::Hub {
            spec: self.spec.clone(),
            message: format!(
                "HF_HUB_OFFLINE is set and the cache ({}) does not hold {what}",
                self.cache_dir.display()
            ),
        }
    }

    /// An hf-hub failure, told apart by what the user can do about it.
    fn error(&self, file: Option<&str>, error: ApiError) -> Error {
        let what = file.unwrap_or("this model");
        let status = match &error {
            ApiError::RequestError(e) => match e.as_ref() {
                ureq::Error::Status(code, response) => {
                    Some((*code, response.header("x-error-code").unwrap_or_default()))
                }
                ureq::Error::Transport(_) => None,
            },
            _ => None,
        };
        let message = match status {
            Some((_, "RepoNotFound")) | Some((401, _)) => format!(
                "repository not found at {} (a private or gated one needs HF_TOKEN)",
                self.endpoint
            ),
            Some((_, "GatedRepo")) | Some((403, _)) => format!(
                "access to {what} denied: accept the model's terms on the hub and set HF_TOKEN"
            ),
            Some((_, "EntryNotFound")) | Some((404, _)) => {
                format!("{what} not found in the repository")
            }
            Some((code, _)) => format!("fetching {what}: the hub answered HTTP {code}"),
            None => format!(
                "cannot reach {} ({error}), and the cache ({}) does not hold {what}",
                self.endpoint,
                self.cache_dir.display()
            ),
        };
        Error::Hub {
            spec: self.spec.clone(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_hub_specs() {
        assert_eq!(
            ModelSpec::parse("models/x").unwrap(),
            ModelSpec::Path("models/x".into())
        );
        assert_eq!(
            ModelSpec::parse("hf:LiquidAI/LFM2-350M").unwrap(),
            ModelSpec::Hub {
                repo: "LiquidAI/LFM2-350M".into(),
                file: None
            }
        );
        assert_eq!(
            ModelSpec::parse("hf:LiquidAI/LFM2-1.2B-GGUF:LFM2-1.2B-Q4_K_M.gguf").unwrap(),
            ModelSpec::Hub {
                repo: "LiquidAI/LFM2-1.2B-GGUF".into(),
                file: Some("LFM2-1.2B-Q4_K_M.gguf".into())
            }
        );
    }

    #[test]
    fn rejects_malformed_hub_specs() {
        for bad in ["hf:", "hf:LFM2", "hf:a/b/c", "hf:/b", "hf:a/", "hf:a/b:"] {
            let err = ModelSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains("hf:OWNER/REPO"), "{bad}: {err}");
        }
    }

    #[test]
    fn refuses_names_that_leave_the_cache() {
        let cases = [
            ("hf:o/r:../../x.gguf", "`..` component"),
            ("hf:o/r:a/../../x.gguf", "`..` component"),
            ("hf:o/r:a/..", "`..` component"),
            ("hf:o/r:/etc/passwd", "absolute"),
            ("hf:o/r:a\\..\\x.gguf", "backslash"),
            ("hf:o/r:x\0.gguf", "control character"),
            ("hf:o/r:./x.gguf", "`.` component"),
            ("hf:o/r:a//x.gguf", "empty component"),
            ("hf:o/r:a/", "empty component"),
            ("hf:../r", "'..'"),
            ("hf:o/..", "'..'"),
            ("hf:o/.", "start and end"),
            ("hf:o/r.", "start and end"),
            ("hf:-o/r", "start and end"),
            ("hf:o--x/r", "'--'"),
            ("hf:o/r\\x", "character other than"),
            ("hf:o/r x", "character other than"),
        ];
        for (bad, why) in cases {
            let err = ModelSpec::parse(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains(why), "{bad}: {err}");
        }
        let long = format!("hf:o/{}", "r".repeat(97));
        assert!(ModelSpec::parse(&long).is_err());
        for good in [
            "hf:o/r:sub/dir/x.gguf",
            "hf:Liquid_AI/LFM2.5-1.2B:x..y.gguf",
        ] {
            assert!(ModelSpec::parse(good).is_ok(), "{good}");
        }
    }
}
