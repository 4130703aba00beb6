//! Writing to stdout: data goes there in one write, so that a reader never sees half a token,
//! and a closed pipe is the reader's choice, not an error (see [`crate::exit`]).

use std::io::Write;

use anyhow::{Context, Result};

/// One write, so a reader never sees half a token.
pub fn write_out(bytes: &[u8]) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    let written = stdout.write_all(bytes);
    written.and_then(|()| stdout.flush()).context("cannot write to stdout")
}
