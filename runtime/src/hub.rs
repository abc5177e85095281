//! What `--model` names, turned into a local path: a path on disk as it is;
//! `hf:OWNER/REPO[:FILE]` fetched from the Hugging Face hub into its standard cache
//! (`HF_HOME`, default `~/.cache/huggingface`; `HF_ENDPOINT`; `HF_TOKEN` or the token
//! file), with a progress bar and resumable downloads.
//!
//! What the cache already holds is used as it is, without asking the hub, so a model
//! fetched once also runs offline (to pick up a newer revision, delete its
//! `models--OWNER--REPO` folder from the cache).

use std::path::{Path, PathBuf};

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
        Ok(ModelSpec::Hub {
            repo: repo.to_string(),
            file: file.map(str::to_string),
        })
    }
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
        })
    }

    /// One file of the repository (a .gguf), from the cache or else downloaded.
    fn file(&self, name: &str) -> Result<PathBuf> {
        self.api.get(name).map_err(|e| self.error(Some(name), e))
    }

    /// The snapshot folder of a safetensors checkpoint: the cached one when it is
    /// complete, else the repository's current revision, fetched file by file.
    fn checkpoint(&self) -> Result<PathBuf> {
        if let Some(dir) = self.cached_checkpoint() {
            return Ok(dir);
        }
        let info = self.api.info().map_err(|e| self.error(None, e))?;
        let snapshot = self.cache_dir.join("snapshots").join(&info.sha);
        for name in self.checkpoint_files(&info.siblings)? {
            self.fetch_into(&snapshot, name)?;
        }
        for shard in weight_files(&snapshot)? {
            let name = shard.strip_prefix(&snapshot).unwrap_or(&shard);
            self.fetch_into(&snapshot, &name.to_string_lossy())?;
        }
        // Last: `cached_checkpoint` takes a snapshot with a config.json as complete.
        self.fetch_into(&snapshot, CONFIG)?;
        Ok(snapshot)
    }

    /// The cached snapshot of the last revision fetched, if it holds a whole checkpoint.
    fn cached_checkpoint(&self) -> Option<PathBuf> {
        let dir = self.cache.get(CONFIG)?.parent()?.to_path_buf();
        let weights = weight_files(&dir).ok()?;
        let complete = dir.join(TOKENIZER).exists() && weights.iter().all(|w| w.exists());
        complete.then_some(dir)
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
}
