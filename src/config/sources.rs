//! Where the settings come from, in layers, highest first: flags, the process environment,
//! the file named by `--env-file` (or `$ATL_ENV_FILE`), the folder's file (`./.env`, else
//! `./jira.env`), and the user's own file (`~/.config/atl-token/[PROFILE/].env`). A lower
//! layer fills only the keys a higher one leaves unset. A folder's file that names none of
//! atl-token's keys is not read at all, and one that sets a [`guarded`] key is used only
//! once the user trusts it ([`super::trust`]).

use std::path::{Path, PathBuf};

use super::trust::{self, Verdict};
use super::*;
use crate::envfile;
use crate::exit::Exit;

/// An env file that was found and read, and its layer.
#[derive(Debug)]
pub struct EnvFile {
    pub path: PathBuf,
    pub vars: Vec<(String, String)>,
    pub layer: Layer,
}

/// Which layer an env file is, and so what it may decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// `--env-file` or `$ATL_ENV_FILE`: named by the user.
    Named,
    /// `./.env` or `./jira.env` in the folder atl-token runs in, trusted (`atl-token trust`)
    /// or not. An untrusted one sets no [`GUARDED`] key and does not place the token file.
    Folder { trusted: bool },
    /// The user's own: atl-token's folder's `.env`, or a profile's.
    User,
}

impl EnvFile {
    /// A file of the user's choosing: any layer but an untrusted folder's file.
    pub fn chosen(&self) -> bool {
        self.layer != Layer::Folder { trusted: false }
    }
}

/// Everything [`resolve`] reads, gathered by [`load`] (or by a test).
pub struct Sources<'a> {
    /// `--token-file`, relative to `cwd`.
    pub token_file_flag: Option<&'a Path>,
    /// The process environment.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The env files read, highest layer first.
    pub files: &'a [EnvFile],
    /// The env files looked for, when none was found (for messages).
    pub searched: &'a [PathBuf],
    pub cwd: &'a Path,
}

/// A value and where it was found, e.g. "REFRESH_PORT in /home/me/.env".
pub(super) struct Setting {
    pub(super) value: String,
    pub(super) origin: String,
    /// The folder of the file it was found in (`None`: the environment), which a relative
    /// path in it is relative to.
    pub(super) folder: Option<PathBuf>,
}

impl Setting {
    /// The folder a relative path in this value is relative to: its file's, else the home
    /// file's ([`home_folder`]).
    pub(super) fn base<'a>(&'a self, sources: &'a Sources<'_>) -> &'a Path {
        self.folder.as_deref().unwrap_or_else(|| home_folder(sources.files, sources.cwd))
    }
}

impl Sources<'_> {
    /// The value of `key` by precedence: environment before the files, highest layer first,
    /// and within each the key's own name before its alias. Empty values count as unset.
    pub(super) fn get(&self, key: Key) -> Option<Setting> {
        find(self.env, self.files, key)
    }

    pub(super) fn require(&self, key: Key) -> Result<Setting, Exit> {
        self.get(key).ok_or_else(|| {
            let alias = key.alias.map(|a| format!(" (or {a})")).unwrap_or_default();
            let home = self.files.iter().find(|f| f.chosen()).or(self.files.first());
            let place = match (home, self.searched) {
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

/// The value of `key` by precedence: environment before the files, highest layer first, and
/// within each the key's own name before its alias. Empty values count as unset.
fn find(env: &dyn Fn(&str) -> Option<String>, files: &[EnvFile], key: Key) -> Option<Setting> {
    let names = || std::iter::once(key.name).chain(key.alias);
    let from_env = names().find_map(|name| {
        env(name).filter(|v| !v.is_empty()).map(|value| Setting {
            value,
            origin: format!("{name} in the environment"),
            folder: None,
        })
    });
    from_env.or_else(|| {
        files.iter().find_map(|file| {
            names().find_map(|name| {
                // The last assignment in a file wins, as when the shell sources it.
                file.vars.iter().rev().find(|(k, v)| k == name && !v.is_empty()).map(|(_, value)| Setting {
                    value: value.clone(),
                    origin: format!("{name} in {}", file.path.display()),
                    folder: file.path.parent().map(Path::to_path_buf),
                })
            })
        })
    })
}

/// The folder the token file and relative paths set in the environment are found in: the
/// highest file of the user's choosing ([`EnvFile::chosen`]), else `cwd`.
pub fn home_folder<'a>(files: &'a [EnvFile], cwd: &'a Path) -> &'a Path {
    files.iter().find(|f| f.chosen()).and_then(|f| f.path.parent()).unwrap_or(cwd)
}

/// [`find`]'s value alone, for the hot path, which needs no origin.
pub fn lookup_value(env: &dyn Fn(&str) -> Option<String>, files: &[EnvFile], key: Key) -> Option<String> {
    find(env, files, key).map(|s| s.value)
}

/// The token file: `ATL_TOKEN_FILE` (relative to the folder of the file that set it), else
/// `token.json` in the [`home_folder`].
pub fn token_file_in(env: &dyn Fn(&str) -> Option<String>, files: &[EnvFile], cwd: &Path) -> PathBuf {
    let home = home_folder(files, cwd);
    match find(env, files, TOKEN_FILE) {
        Some(setting) => setting.folder.as_deref().unwrap_or(home).join(setting.value),
        None => home.join(DEFAULT_TOKEN_FILE),
    }
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

    /// The env files to look for, highest layer first, each with the error to give when it
    /// is missing (only a file that was named must exist). With a file named or a profile,
    /// the folder's file is not looked for: a project's file must not change the settings or
    /// the account the user chose.
    pub fn candidates(&self, cwd: &Path) -> Result<Vec<Candidate>, Exit> {
        let named = self.named(cwd)?;
        let missing = |path: &Path, how: Named<'_>| match how {
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
        let mut candidates = Vec::new();
        let mut profile = None;
        match named {
            Some((path, how @ Named::Profile { .. })) => profile = Some((missing(&path, how), path)),
            Some((path, how)) => {
                candidates.push(Candidate { missing: Some(missing(&path, how)), path, layer: Layer::Named });
            }
            None => {}
        }
        // A file named, or a profile, is the user's choice: the folder's file is the default
        // when there is none, and never mixes into one the user chose.
        if profile.is_none() && candidates.is_empty() {
            // The seed script's own file, `jira.env`, when there is no `.env` of atl-token's.
            for name in [".env", SEED_ENV_FILE] {
                let layer = Layer::Folder { trusted: false };
                candidates.push(Candidate { path: cwd.join(name), layer, missing: None });
            }
        }
        match profile {
            Some((missing, path)) => {
                candidates.push(Candidate { path, layer: Layer::User, missing: Some(missing) })
            }
            None => candidates.extend(self.config_dir().map(|dir| Candidate {
                path: dir.join(".env"),
                layer: Layer::User,
                missing: None,
            })),
        }
        Ok(candidates)
    }
}

/// An env file to look for: where, its layer, and the error to give when it is missing.
#[derive(Debug)]
pub struct Candidate {
    pub path: PathBuf,
    pub layer: Layer,
    pub missing: Option<String>,
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

/// The env files read, highest layer first, the files looked for, and the warnings about
/// them.
pub struct EnvSettings {
    pub files: Vec<EnvFile>,
    pub searched: Vec<PathBuf>,
    pub warnings: Vec<String>,
}

/// Finds and reads the env files by [`Lookup::candidates`]' layers and the rules for files
/// of settings ([`crate::safe_path::read_trusted`]); warnings are returned, not printed. A
/// file reached twice (the folder's file is the user's, or the one named) is read once, in
/// its higher layer of the user's choosing. The folder's file is the first of `./.env` and
/// `./jira.env` that names a setting of atl-token's; one that names none is not read at all.
pub fn read_env_file(lookup: &Lookup, cwd: &Path) -> anyhow::Result<EnvSettings> {
    use std::os::unix::fs::MetadataExt;
    let candidates = lookup.candidates(cwd)?;
    let home = std::env::var("HOME").ok().filter(|h| !h.is_empty());
    let identity = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let is_folder = |c: &Candidate| matches!(c.layer, Layer::Folder { .. });
    let chosen: Vec<_> =
        candidates.iter().filter(|c| !is_folder(c)).filter_map(|c| identity(&c.path)).collect();
    let mut seen = Vec::new();
    let mut folder_done = false;
    let mut files = Vec::new();
    let mut warnings = Vec::new();
    for candidate in &candidates {
        let path = &candidate.path;
        let id = identity(path);
        if is_folder(candidate) {
            if folder_done || id.is_none() {
                continue;
            }
            if id.is_some_and(|id| chosen.contains(&id)) {
                folder_done = true;
                continue;
            }
            if !names_settings(path) {
                continue;
            }
        } else if id.is_some_and(|id| seen.contains(&id)) {
            continue;
        }
        let Some(bytes) = crate::safe_path::read_trusted(path, &crate::safe_path::ENV_FILE, MAX_ENV_FILE)?
        else {
            if let Some(message) = &candidate.missing {
                return Err(Exit::usage(message.clone()).into());
            }
            continue;
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| Exit::usage(format!("{}: not UTF-8 text", path.display())))?;
        let parsed = envfile::parse(&text, home.as_deref())
            .map_err(|e| Exit::usage(format!("{}: {e}", path.display())))?;
        let layer = match candidate.layer {
            Layer::Folder { .. } => {
                folder_done = true;
                Layer::Folder { trusted: folder_trusted(lookup, path, text.as_bytes(), &parsed.vars)? }
            }
            layer => layer,
        };
        warnings.extend(warnings_about(path, &parsed));
        seen.extend(id);
        files.push(EnvFile { path: path.clone(), vars: parsed.vars, layer });
    }
    let searched = candidates.into_iter().map(|c| c.path).collect();
    Ok(EnvSettings { files, searched, warnings })
}

/// Whether the file at `path` names one of atl-token's settings ([`names_setting`]) in a
/// `KEY=value` line: a look that follows no rule and uses nothing it reads, since a file
/// that names none is not atl-token's and must not be read at all.
fn names_settings(path: &Path) -> bool {
    let Some(bytes) = crate::safe_path::peek(path, MAX_ENV_FILE) else { return false };
    let text = String::from_utf8_lossy(&bytes);
    // Editors on Windows may start the file with a byte-order mark.
    text.trim_start_matches('\u{feff}').lines().any(|line| {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        line.split_once('=').is_some_and(|(name, _)| names_setting(name.trim_end()))
    })
}

/// Whether the folder's file at `path`, holding `bytes`, is trusted; an error when it is not
/// and sets a [`guarded`] key, naming the file, the keys and the command that trusts it.
fn folder_trusted(
    lookup: &Lookup,
    path: &Path,
    bytes: &[u8],
    vars: &[(String, String)],
) -> anyhow::Result<bool> {
    let mut keys: Vec<&str> = Vec::new();
    for (name, value) in vars {
        if !value.is_empty() && guarded(name) && !keys.contains(&name.as_str()) {
            keys.push(name);
        }
    }
    let verdict = match lookup.config_dir() {
        Some(dir) => {
            let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            trust::load(&dir)?.verdict(&real, bytes)
        }
        None => Verdict::Unknown,
    };
    if verdict == Verdict::Trusted {
        return Ok(true);
    }
    if keys.is_empty() {
        return Ok(false);
    }
    let why = match verdict {
        Verdict::Changed => "it has changed since you trusted it",
        _ => "you have not trusted it",
    };
    let trust = format!("atl-token trust {}", crate::shell::quote(&path.to_string_lossy()));
    Err(Exit::usage(format!(
        "{} sets {}, which run a command or choose where tokens go, and {why}: nothing was sent and \
         nothing ran. Read the file; if you trust it, run `{trust}`, or keep these settings in your own \
         file (`atl-token init`) instead",
        path.display(),
        keys.join(", ")
    ))
    .into())
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
