//! One module per subcommand, and the refresh that `refresh` and `print` share.

pub mod api;
pub mod docs;
pub mod init;
pub mod keygen;
pub mod login;
pub mod logout;
pub mod print;
pub mod profiles;
pub mod push;
pub mod refresh;
mod session;
pub mod sites;
pub mod status;

use anyhow::{Context, Result};

/// A current-thread runtime, built only by the paths that make a request or listen.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
