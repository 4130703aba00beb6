//! `atl-token trust [FILE]`, `--list`, `--remove`: the folder env files whose settings that run
//! a command or choose a destination the user accepts, each recorded with its SHA-256.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::TrustArgs;
use crate::config::trust::{self, Verdict};
use crate::config::{self, Lookup};
use crate::exit::Exit;

pub fn run(lookup: &Lookup, args: &TrustArgs) -> Result<()> {
    let dir = lookup.config_dir().ok_or_else(|| {
        Exit::usage(
            "neither HOME nor XDG_CONFIG_HOME is set, so there is no folder to keep the trust list in",
        )
    })?;
    let mut list = trust::load(&dir)?;
    if args.list {
        return show(&list);
    }
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let path = match &args.file {
        Some(file) => cwd.join(file),
        None => folder_file(&cwd)?,
    };
    let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    if args.remove {
        if !list.remove(&real) {
            return Err(Exit::usage(format!(
                "{} is not among the files you trust (see `atl-token trust --list`)",
                real.display()
            ))
            .into());
        }
        trust::save(&dir, &list)?;
        eprintln!("atl-token: {} is no longer trusted", real.display());
        return Ok(());
    }
    let bytes = crate::safe_path::read_trusted(&path, &crate::safe_path::ENV_FILE, config::MAX_ENV_FILE)?
        .ok_or_else(|| {
            Exit::usage(format!("{} does not exist: name the env file to trust", path.display()))
        })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Exit::usage(format!("{}: not UTF-8 text, so not an env file", path.display())))?;
    let parsed =
        crate::envfile::parse(text, None).map_err(|e| Exit::usage(format!("{}: {e}", path.display())))?;
    list.add(&real, &bytes);
    trust::save(&dir, &list)?;
    let mut guarded: Vec<&str> = Vec::new();
    for (key, _) in &parsed.vars {
        if config::guarded(key) && !guarded.contains(&key.as_str()) {
            guarded.push(key);
        }
    }
    let sets = match guarded.as_slice() {
        [] => String::new(),
        keys => format!(" Its {} now apply from this folder.", keys.join(", ")),
    };
    eprintln!(
        "atl-token: trusted {} as it is now.{sets} If it changes, it is no longer trusted until you run \
         `atl-token trust` again.",
        real.display()
    );
    Ok(())
}

/// The folder's env file, as the other commands find it: `./.env`, else `./jira.env`.
fn folder_file(cwd: &Path) -> Result<PathBuf> {
    [".env", config::SEED_ENV_FILE].into_iter().map(|name| cwd.join(name)).find(|p| p.exists()).ok_or_else(
        || {
            Exit::usage(format!(
            "there is no .env or {} in {}: name the env file to trust, e.g. `atl-token trust path/to/.env`",
            config::SEED_ENV_FILE,
            cwd.display()
        ))
        .into()
        },
    )
}

/// `--list`: one line a file, with whether it is still as it was trusted.
fn show(list: &trust::TrustList) -> Result<()> {
    if list.files.is_empty() {
        eprintln!("atl-token: you trust no env file yet: `atl-token trust FILE` trusts one");
        return Ok(());
    }
    let mut out = String::new();
    for entry in &list.files {
        let path = Path::new(&entry.path);
        let state = match std::fs::read(path) {
            Err(_) => "missing",
            Ok(bytes) => match list.verdict(path, &bytes) {
                Verdict::Trusted => "trusted",
                Verdict::Changed | Verdict::Unknown => "changed since: run `atl-token trust` on it again",
            },
        };
        let _ = writeln!(out, "{}\t{state}", entry.path);
    }
    crate::output::write_out(out.as_bytes())
}
