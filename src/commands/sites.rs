//! `atl-token sites`: the Atlassian Cloud sites the token reaches, and the cloud id that
//! `print` caches in the token file.

use anyhow::{Context, Result};

use crate::api_base::{look_up, require_cloud};
use crate::cli::SitesArgs;
use crate::config::Config;
use crate::sites::{self, Choice};
use crate::store;

pub fn run(config: &Config, args: &SitesArgs) -> Result<()> {
    require_cloud(config, "sites")?;
    let store = store::open(config)?;
    let list = look_up(config, store.as_ref())?;
    // Listing refreshes the cache, when the settings name one site.
    if let Choice::One(site) = sites::choose(&list, config.site.as_ref()) {
        store.update(&mut |token| token.with_cloud(&site.url, &site.id))?;
    }
    let out = if args.json {
        crate::text::json_for_terminal(
            serde_json::to_string_pretty(&list).context("cannot write the sites as JSON")?,
        ) + "\n"
    } else if list.is_empty() {
        "(no sites: the token reaches no site; check the app's permissions and consent again)\n".to_owned()
    } else {
        sites::table(&list)
    };
    crate::output::write_out(out.as_bytes())
}
