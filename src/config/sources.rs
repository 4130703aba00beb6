//! Where the settings come from: which env file is read (flags, then the environment, then
//! `./.env`, then atl-token's own folder), the rules it must pass, and the precedence of a
//! value (flags > process environment > env file > defaults).

use std::path::{Path, PathBuf};

use super::*;
use crate::envfile;
use crate::exit::Exit;

/// An env file that was found and read.
#[derive(Debug)]
pub struct EnvFile {
    pub path: PathBuf,
    pub vars: Vec<(String, String)>,
}

/// Everything [`resolve`] reads, gathered by [`load`] (or by a test).
pub struct Sources<'a> {
    /// `--token-file`, relative to `cwd`.
    pub token_file_flag: Option<&'a Path>,
    /// The process environment.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The env file, if one was found.
    pub file: Option<&'a EnvFile>,
    /// The env files looked for, when none was found (for messages).
    pub searched: &'a [PathBuf],
    pub cwd: &'a Path,
}

/// A value and where it was found, e.g. "REFRESH_PORT in /home/me/.env".
pub(super) struct Setting {
    pub(super) value: String,
    pub(super) origin: String,
}

impl Sources<'_> {
    /// The value of `key` by precedence: environment before env file, and within each the
    /// key's own name before its alias. Empty values count as unset.
    pub(super) fn get(&self, key: Key) -> Option<Setting> {
        find(self.env, self.file, key)
    }

    pub(super) fn require(&self, key: Key) -> Result<Setting, Exit> {
        self.get(key).ok_or_else(|| {
            let alias = key.alias.map(|a| format!(" (or {a})")).unwrap_or_default();
            let place = match (self.file, self.searched) {
                (Some(file), _) => format!("add it to {}", file.path.display()),
                (None, []) => "set it in the environment or an env file".to_owned(),
                (None, searched) => format!(
                    "no env file was found (looked for {}): run `atl-token init` to write one, or use --env-file",
                    display_paths(searched)
                ),
            };
            Exit::usage(format!("{}{alias} is not set: {place}", key.name))
        })
    }
}

/// The value of `key` by precedence: environment before env file, and within each the key's
/// own name before its alias. Empty values count as unset.
fn find(env: &dyn Fn(&str) -> Option<String>, file: Option<&EnvFile>, key: Key) -> Option<Setting> {
    let names = || std::iter::once(key.name).chain(key.alias);
    let from_env = names().find_map(|name| {
        env(name)
            .filter(|v| !v.is_empty())
            .map(|value| Setting { value, origin: format!("{name} in the environment") })
    });
    from_env.or_else(|| {
        let file = file?;
        names().find_map(|name| {
            // The last assignment in a file wins, as when the shell sources it.
            file.vars.iter().rev().find(|(k, v)| k == name && !v.is_empty()).map(|(_, value)| Setting {
                value: value.clone(),
                origin: format!("{name} in {}", file.path.display()),
            })
        })
    })
}

/// [`find`]'s value alone, for the hot path, which needs no origin.
pub fn lookup_value(
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<&EnvFile>,
    key: Key,
) -> Option<String> {
    find(env, file, key).map(|s| s.value)
}

/// The token file: `value` (`ATL_TOKEN_FILE`), else `token.json`, relative to the env file's
/// folder (else `cwd`).
pub fn token_file_in(file: Option<&EnvFile>, cwd: &Path, value: Option<String>) -> PathBuf {
    let base = file.and_then(|f| f.path.parent()).unwrap_or(cwd);
    base.join(value.unwrap_or_else(|| DEFAULT_TOKEN_FILE.to_owned()))
}

pub(super) fn display_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
}

/// What decides which env file is read: the flags, then the environment.
#[derive(Debug, Default, Clone)]
pub struct Lookup {
    pub env_file_flag: Option<PathBuf>,
    pub profile_flag: Option<String>,
    pub env_file_var: Option<String>,
    pub profile_var: Option<String>,
    pub xdg_config_home: Option<String>,
    pub home: Option<String>,
}

impl Lookup {
    /// The flags, and `ATL_ENV_FILE`, `ATL_PROFILE`, `XDG_CONFIG_HOME` and `HOME` from the
    /// process environment (empty counts as unset).
    pub fn new(env_file_flag: Option<&Path>, profile_flag: Option<&str>) -> Self {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            env_file_flag: env_file_flag.map(Path::to_path_buf),
            profile_flag: profile_flag.map(str::to_owned),
            env_file_var: env(ENV_FILE_VAR),
            profile_var: env(PROFILE_VAR),
            xdg_config_home: env("XDG_CONFIG_HOME"),
            home: env("HOME"),
        }
    }

    /// atl-token's own folder: `$XDG_CONFIG_HOME/atl-token`, else `~/.config/atl-token`.
    pub fn config_dir(&self) -> Option<PathBuf> {
        let base = match (&self.xdg_config_home, &self.home) {
            (Some(xdg), _) => PathBuf::from(xdg),
            (None, Some(home)) => Path::new(home).join(".config"),
            (None, None) => return None,
        };
        Some(base.join("atl-token"))
    }

    /// The profile asked for: `--profile`, else `ATL_PROFILE` unless `ATL_ENV_FILE` names a
    /// file, with where it came from.
    pub fn profile(&self) -> Option<(&str, &'static str)> {
        match (&self.profile_flag, &self.env_file_var, &self.profile_var) {
            (Some(name), ..) => Some((name, "--profile")),
            (None, None, Some(name)) => Some((name, PROFILE_VAR)),
            _ => None,
        }
    }

    /// A profile's env file, `{config dir}/NAME/.env`, once NAME is checked to be a plain
    /// folder name.
    pub fn profile_env_file(&self, name: &str, origin: &str) -> Result<PathBuf, Exit> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !plain {
            return Err(Exit::usage(format!(
                "{origin} '{name}' is not a profile name: use letters, digits, '.', '_' and '-', e.g. prod"
            )));
        }
        let dir = self.config_dir().ok_or_else(|| {
            Exit::usage(format!("{origin} needs HOME or XDG_CONFIG_HOME to find the profile's folder"))
        })?;
        Ok(dir.join(name).join(".env"))
    }

    /// The env file asked for by name, if one was, and how: `--env-file`, else a profile,
    /// else `$ATL_ENV_FILE` (relative paths against `cwd`).
    pub fn named(&self, cwd: &Path) -> Result<Option<(PathBuf, Named<'_>)>, Exit> {
        if let Some(flag) = &self.env_file_flag {
            return Ok(Some((cwd.join(flag), Named::Flag)));
        }
        if let Some((name, origin)) = self.profile() {
            return Ok(Some((self.profile_env_file(name, origin)?, Named::Profile { name, origin })));
        }
        Ok(self.env_file_var.as_ref().map(|path| (cwd.join(path), Named::Var)))
    }

    /// The env files to try, in order, each with the error to give when it is missing (only
    /// one that was named must exist).
    pub fn candidates(&self, cwd: &Path) -> Result<Vec<(PathBuf, Option<String>)>, Exit> {
        if let Some((path, how)) = self.named(cwd)? {
            let missing = match how {
                Named::Profile { name, origin } => format!(
                    "profile {name} (from {origin}) has no settings, as {} does not exist: run \
                     `atl-token init --profile {name}` to write them",
                    path.display()
                ),
                Named::Flag | Named::Var => format!(
                    "env file {} (from {}) does not exist: run `atl-token init --env-file {}` to write it",
                    path.display(),
                    if matches!(how, Named::Flag) { "--env-file" } else { ENV_FILE_VAR },
                    crate::shell::quote(&path.to_string_lossy())
                ),
            };
            return Ok(vec![(path, Some(missing))]);
        }
        // The seed script's own file, `jira.env`, when there is no `.env`.
        let mut candidates = vec![(cwd.join(".env"), None), (cwd.join(SEED_ENV_FILE), None)];
        if let Some(dir) = self.config_dir() {
            candidates.push((dir.join(".env"), None));
        }
        Ok(candidates)
    }
}

/// The env file the seed's bash script sources, found in the current folder after `.env`.
pub const SEED_ENV_FILE: &str = "jira.env";

/// How an env file was asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named<'a> {
    /// `--env-file`.
    Flag,
    /// `--profile NAME` or `$ATL_PROFILE`.
    Profile { name: &'a str, origin: &'static str },
    /// `$ATL_ENV_FILE`.
    Var,
}

/// The env file found (if any), the files looked for, and the warnings about it.
pub struct EnvSettings {
    pub file: Option<EnvFile>,
    pub searched: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// Finds and reads the env file by [`Lookup`]'s order and the rules for files of settings
/// ([`crate::safe_path::read_trusted`]); warnings are returned, not printed.
pub fn read_env_file(lookup: &Lookup, cwd: &Path) -> anyhow::Result<EnvSettings> {
    let candidates = lookup.candidates(cwd)?;
    let home = std::env::var("HOME").ok().filter(|h| !h.is_empty());
    let mut file = None;
    let mut warnings = Vec::new();
    for (path, missing) in &candidates {
        let Some(bytes) = crate::safe_path::read_trusted(path, &crate::safe_path::ENV_FILE, MAX_ENV_FILE)?
        else {
            if let Some(message) = missing {
                return Err(Exit::usage(message.clone()).into());
            }
            continue;
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| Exit::usage(format!("{}: not UTF-8 text", path.display())))?;
        let parsed = envfile::parse(&text, home.as_deref())
            .map_err(|e| Exit::usage(format!("{}: {e}", path.display())))?;
        warnings = warnings_about(path, &parsed);
        file = Some(EnvFile { path: path.clone(), vars: parsed.vars });
        break;
    }
    let searched = candidates.into_iter().map(|(p, _)| p).collect();
    Ok(EnvSettings { file, searched, warnings })
}

/// What in an env file is likely a mistake: a misspelt key, a `$NAME` that is not filled
/// in, and a file that holds the client secret but other users can read.
fn warnings_about(path: &Path, parsed: &envfile::Parsed) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, closest) in unknown_keys(&parsed.vars) {
        let hint = closest.map(|k| format!(": did you mean {k}?")).unwrap_or_default();
        warnings.push(format!(
            "atl-token: warning: {name} in {} is not a setting atl-token knows{hint}",
            path.display()
        ));
    }
    for name in &parsed.kept_dollars {
        warnings.push(format!(
            "atl-token: warning: the value of {name} in {} holds a `$` that is kept as written: atl-token \
             fills in only $HOME, ${{HOME}} and a leading ~, never other variables; write the value itself",
            path.display()
        ));
    }
    if let Ok(meta) = std::fs::metadata(path) {
        warnings.extend(crate::safe_path::shared_warning(path, &meta, "the env file"));
    }
    warnings
}
