//! `atl-token keygen`: an RSA key pair for an OAuth 1.0a application link, and the values to
//! paste into the link's form. Needs no settings.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::KeygenArgs;
use crate::config::{BASE_URL, CONSUMER_KEY, PRIVATE_KEY_FILE, PROVIDER};
use crate::exit::Exit;
use crate::oauth1::{MIN_BITS, PrivateKey};
use crate::provider::OAUTH1;

/// The private key's file name in `--out`.
pub const PRIVATE_FILE: &str = "atl-token-private.pem";
/// The public key's file name in `--out`.
pub const PUBLIC_FILE: &str = "atl-token-public.pem";
/// Larger keys take minutes to make and gain nothing an application link uses.
const MAX_BITS: usize = 8192;

pub fn run(args: &KeygenArgs) -> Result<()> {
    if !(MIN_BITS..=MAX_BITS).contains(&args.bits) || !args.bits.is_multiple_of(8) {
        return Err(Exit::usage(format!(
            "--bits {}: use a multiple of 8 from {MIN_BITS} to {MAX_BITS} (the default, {}, suits application links)",
            args.bits,
            crate::cli::DEFAULT_KEY_BITS
        ))
        .into());
    }
    let dir = &args.out;
    if !dir.is_dir() {
        return Err(Exit::usage(format!("--out {}: no such folder; create it first", dir.display())).into());
    }
    let private_path = dir.join(PRIVATE_FILE);
    let public_path = dir.join(PUBLIC_FILE);
    if !args.force {
        for path in [&private_path, &public_path] {
            if path.symlink_metadata().is_ok() {
                return Err(Exit::usage(format!(
                    "{} exists: atl-token does not overwrite a key (an application link may use it). \
                     Use it as it is, move it away, or pass --force",
                    path.display()
                ))
                .into());
            }
        }
    }

    eprintln!("making a {}-bit RSA key...", args.bits);
    let key = PrivateKey::generate(args.bits)?;
    let public = key.public_pem()?;
    // The public key first: a private key without it is useless, the other way round harmless.
    write_file(&public_path, public.as_bytes(), 0o644, args.force)?;
    write_file(&private_path, key.to_pem()?.as_bytes(), 0o600, args.force)?;
    eprintln!("wrote {} (mode 0600) and {}", private_path.display(), public_path.display());

    let absolute = std::path::absolute(&private_path).unwrap_or(private_path);
    let consumer_key = format!("atl-token-{}", host_name());
    let out = format!(
        "In the product: Administration > Applications > Application links. Create a link to any \
         URL (e.g. https://atl-token.invalid), accept that it does not answer, and in its Incoming \
         Authentication enter:\n\n\
         Consumer Key:   {consumer_key}\n\
         Consumer Name:  atl-token\n\
         Public Key:\n{public}\n\
         Then, in atl-token's .env:\n\n\
         {}={OAUTH1}\n\
         {}=https://jira.example.com\n\
         {}={consumer_key}\n\
         {}={}\n",
        PROVIDER.name,
        BASE_URL.name,
        CONSUMER_KEY.name,
        PRIVATE_KEY_FILE.name,
        absolute.display()
    );
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).context("cannot write to stdout")
}

/// Writes `bytes` to `path` with `mode`, all or nothing: through a temp file in the same folder,
/// moved into place, and over an existing file only when `replace`.
fn write_file(path: &Path, bytes: &[u8], mode: u32, replace: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".atl-token-key.")
        .permissions(std::fs::Permissions::from_mode(mode))
        .tempfile_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    let placed = if replace { temp.persist(path).map(drop) } else { temp.persist_noclobber(path).map(drop) };
    placed.map_err(|e| e.error).with_context(|| format!("cannot write {}", path.display()))
}

/// This machine's name, for a consumer key that says where it is used.
fn host_name() -> String {
    let name = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    if name.is_empty() { "host".to_owned() } else { name }
}
