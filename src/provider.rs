//! What differs between the authorization servers atl-token talks to, in one place.
//!
//! [`config`](crate::config) resolves the settings into a [`Provider`]; the commands, the
//! request bodies and the retry loop ask it, rather than asking which server this is.

use url::Url;

/// An endpoint URL, and the setting that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: Url,
    /// E.g. "ATL_TOKEN_URL in /home/me/jira/.env", "ATL_BASE_URL in …", "the default".
    pub origin: String,
    /// Set by its own key (`ATL_AUTHORIZE_URL`, `ATL_TOKEN_URL`) rather than by the provider.
    pub custom: bool,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.url.fmt(f)
    }
}

/// How the token endpoint wants its request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// `application/json`, as Atlassian documents for Cloud.
    Json,
    /// `application/x-www-form-urlencoded`, as RFC 6749 says.
    Form,
}

/// The kinds of Atlassian authorization server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Atlassian Cloud, OAuth 2.0 (3LO) at auth.atlassian.com.
    Cloud,
    /// Jira, Confluence, Bitbucket or Bamboo Data Center: OAuth 2.0 through an incoming
    /// application link, at `{base}/rest/oauth2/latest/`.
    DataCenter,
}

/// How the client gets its tokens (`ATL_GRANT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// A person consents in a browser once; a refresh token, rotated on every use, renews
    /// the access token (3LO on Cloud, an incoming application link on Data Center).
    AuthorizationCode,
    /// A service account: the client id and secret fetch each access token themselves.
    /// There is no refresh token, so nothing can be lost, and a token set can always be
    /// fetched again.
    ClientCredentials,
}

impl Grant {
    /// The value of `ATL_GRANT` that selects it, and the `grant` a token set records.
    pub fn name(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::ClientCredentials => "client_credentials",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::AuthorizationCode, Self::ClientCredentials].into_iter().find(|g| g.name() == name)
    }

    /// What to call it in messages.
    pub fn title(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization code (a person's consent, a rotating refresh token)",
            Self::ClientCredentials => "client credentials (a service account; no refresh token)",
        }
    }

    /// Whether a token set can be fetched again from nothing, with no person: then a missing
    /// or unreadable token set is fetched rather than asked for with a login, and a rejected
    /// request ends no family.
    pub fn renewable(self) -> bool {
        self == Self::ClientCredentials
    }
}

/// What a token server does with a refresh token it has rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old refresh token keeps working for a while (10 minutes on Cloud), so sending a
    /// refresh again after its answer was lost is safe.
    Grace,
    /// The old pair is deleted the moment the new one is issued. A refresh that may have
    /// reached the server is never sent again: the token it spends may already be dead.
    Strict,
}

/// How far a failed request got, which decides whether sending it again is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The request never reached the server: the connection or the TLS handshake failed.
    NotSent,
    /// The server turned the request away before handling it (HTTP 429 or 503).
    TurnedAway,
    /// The server may have handled it: a timeout after sending, a connection cut during the
    /// answer, or another 5xx.
    Unknown,
}

impl Rotation {
    /// Whether a request that failed this way may be sent again.
    pub fn may_resend(self, delivery: Delivery) -> bool {
        match self {
            Self::Grace => true,
            Self::Strict => delivery != Delivery::Unknown,
        }
    }
}

/// Everything about the provider that the rest of atl-token needs, resolved from settings.
#[derive(Debug)]
pub struct Provider {
    pub kind: Kind,
    pub grant: Grant,
    pub authorize_url: Endpoint,
    pub token_url: Endpoint,
    /// Where `logout` revokes a refresh token; `None` where the provider has no such endpoint.
    pub revoke_url: Option<Endpoint>,
    pub body: BodyFormat,
    /// Send a PKCE (RFC 7636, S256) challenge and verifier.
    pub pkce: bool,
    /// Where API calls go, when it is known without asking a server (the Data Center base
    /// URL), without a trailing slash: ready for `{api_base}/rest/...`.
    pub api_base: Option<String>,
}

impl Provider {
    /// What a token request spends, for deciding whether a failed one may be sent again:
    /// client credentials rotate nothing, so any may (as with a grace period); a refresh
    /// token is rotated as the provider does.
    pub fn rotation(&self) -> Rotation {
        match self.grant {
            Grant::ClientCredentials => Rotation::Grace,
            Grant::AuthorizationCode => self.kind.rotation(),
        }
    }
}

/// Atlassian Cloud's API audience, required on its authorize URL.
const CLOUD_AUDIENCE: &str = "api.atlassian.com";
/// Where a Cloud user removes an app's access: Cloud has no revoke endpoint for 3LO apps.
pub const CLOUD_APPS_PAGE: &str = "https://id.atlassian.com/manage-profile/apps";
/// The Data Center provider's endpoints, below the product's base URL.
pub const DATACENTER_PATH: &str = "rest/oauth2/latest";
/// The value of `ATL_PROVIDER` that selects OAuth 1.0a through an application link.
pub const OAUTH1: &str = "oauth1";
/// What to call OAuth 1.0a application links in messages.
pub const OAUTH1_TITLE: &str = "Server/Data Center, OAuth 1.0a";
/// The OAuth 1.0a endpoints (`request-token`, `authorize`, `access-token`), below the base URL.
pub const OAUTH1_PATH: &str = "plugins/servlet/oauth";

impl Kind {
    /// The value of `ATL_PROVIDER` that selects it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cloud => "cloud",
            Self::DataCenter => "datacenter",
        }
    }

    /// What to call it in messages.
    pub fn title(self) -> &'static str {
        match self {
            Self::Cloud => "Atlassian Cloud",
            Self::DataCenter => "Data Center",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Cloud, Self::DataCenter].into_iter().find(|k| k.name().eq_ignore_ascii_case(name))
    }

    /// Parameters the authorize URL carries besides the standard ones.
    pub fn authorize_extras(self) -> &'static [(&'static str, &'static str)] {
        match self {
            // `prompt=consent` makes Cloud issue a refresh token every time.
            Self::Cloud => &[("audience", CLOUD_AUDIENCE), ("prompt", "consent")],
            Self::DataCenter => &[],
        }
    }

    /// Whether a refresh token needs the `offline_access` scope (Data Center always issues one).
    pub fn needs_offline_access(self) -> bool {
        self == Self::Cloud
    }

    /// Whether a refresh request repeats the redirect URI, as Data Center's provider expects.
    pub fn refresh_sends_redirect_uri(self) -> bool {
        self == Self::DataCenter
    }

    pub fn rotation(self) -> Rotation {
        match self {
            Self::Cloud => Rotation::Grace,
            Self::DataCenter => Rotation::Strict,
        }
    }

    /// The token request body the provider reads.
    pub fn body(self) -> BodyFormat {
        match self {
            Self::Cloud => BodyFormat::Json,
            // Data Center reads form bodies only.
            Self::DataCenter => BodyFormat::Form,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_rotation_resends_only_what_never_reached_the_server() {
        use Delivery::*;
        for delivery in [NotSent, TurnedAway, Unknown] {
            assert!(Rotation::Grace.may_resend(delivery));
        }
        assert!(Rotation::Strict.may_resend(NotSent));
        assert!(Rotation::Strict.may_resend(TurnedAway));
        assert!(!Rotation::Strict.may_resend(Unknown));
    }

    #[test]
    fn names_round_trip() {
        for kind in [Kind::Cloud, Kind::DataCenter] {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(Kind::from_name("DataCenter"), Some(Kind::DataCenter));
        assert_eq!(Kind::from_name("server"), None);
    }
}
