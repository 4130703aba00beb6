// A real, strict OAuth 2.0 authorization server for atl-token's end-to-end tests:
// oidc-provider with one confidential client, refresh-token rotation on every use, and
// reuse detection (a rotated refresh token used again revokes the whole grant).
//
// Environment: REDIRECT_URI (the client's one callback), ACCESS_TTL (seconds, default 3600),
// PORT_FILE (where the chosen port is written), PKCE_REQUIRED (1: every authorization
// request must carry an S256 code_challenge, as Data Center's always get). Listens on
// 127.0.0.1 only.
//
// A second client, SERVICE_ID, has only the client-credentials grant (a service account),
// and paths below /rest/ are a protected resource that accepts the access tokens issued to
// it: 200 with {client, scope}, else 401.
//
// Besides the provider's own endpoints it serves GET /_stats (counts of token requests by
// grant type and outcome, and of revoked grants) and GET /_check?token=... (whether a refresh
// token is live), for the tests to assert on.
import http from 'node:http';
import { writeFileSync } from 'node:fs';
import Provider from 'oidc-provider';

export const CLIENT_ID = 'atl-e2e-client';
export const CLIENT_SECRET = 'atl-e2e-secret-0123456789';
export const SERVICE_ID = 'atl-e2e-service';
export const SERVICE_SECRET = 'atl-e2e-service-secret-9876543210';

const redirectUri = process.env.REDIRECT_URI;
const accessTtl = Number(process.env.ACCESS_TTL || 3600);
const pkceRequired = process.env.PKCE_REQUIRED === '1';
if (!redirectUri || !process.env.PORT_FILE) {
  console.error('server.mjs: set REDIRECT_URI and PORT_FILE');
  process.exit(2);
}

const stats = {
  refresh_ok: 0, refresh_error: 0, code_ok: 0, code_error: 0, credentials_ok: 0, credentials_error: 0,
  grants_revoked: 0, errors: [],
};

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const provider = new Provider(`http://127.0.0.1:${port}`, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_post',
      scope: 'openid offline_access',
    }, {
      client_id: SERVICE_ID,
      client_secret: SERVICE_SECRET,
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
      scope: 'api:read',
    }],
    scopes: ['openid', 'offline_access', 'api:read'],
    // Atlassian rotates on every refresh; so does this server.
    rotateRefreshToken: true,
    ttl: {
      AccessToken: accessTtl,
      AuthorizationCode: 60,
      RefreshToken: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
      Session: 3600,
      Interaction: 3600,
      ClientCredentials: accessTtl,
    },
    pkce: { required: () => pkceRequired },
    features: { devInteractions: { enabled: true }, clientCredentials: { enabled: true } },
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  });

  const grantType = (ctx) => ctx.oidc?.params?.grant_type;
  provider.on('grant.success', (ctx) => {
    if (grantType(ctx) === 'refresh_token') stats.refresh_ok += 1;
    if (grantType(ctx) === 'authorization_code') stats.code_ok += 1;
    if (grantType(ctx) === 'client_credentials') stats.credentials_ok += 1;
  });
  provider.on('grant.error', (ctx, err) => {
    if (grantType(ctx) === 'refresh_token') stats.refresh_error += 1;
    if (grantType(ctx) === 'authorization_code') stats.code_error += 1;
    if (grantType(ctx) === 'client_credentials') stats.credentials_error += 1;
    stats.errors.push(`${err.error}: ${err.error_description}`);
  });
  provider.on('grant.revoked', () => { stats.grants_revoked += 1; });

  const app = provider.callback();
  server.on('request', async (req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    if (url.pathname === '/_stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(stats));
    } else if (url.pathname === '/_check') {
      const token = await provider.RefreshToken.find(url.searchParams.get('token') || '');
      const grant = token && await provider.Grant.find(token.grantId);
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ live: Boolean(token && !token.consumed && !token.isExpired && grant) }));
    } else if (url.pathname.startsWith('/rest/')) {
      const value = (req.headers.authorization || '').replace(/^Bearer /, '');
      const token = value && await provider.ClientCredentials.find(value);
      res.setHeader('content-type', 'application/json');
      if (!token || token.isExpired) {
        res.statusCode = 401;
        res.end(JSON.stringify({ message: 'Unauthorized' }));
      } else {
        res.end(JSON.stringify({ client: token.clientId, scope: token.scope, path: url.pathname }));
      }
    } else {
      app(req, res);
    }
  });
  writeFileSync(process.env.PORT_FILE, String(port));
});
