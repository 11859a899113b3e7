// An external authorization server for keyward's connection tests: the
// OpenID-certified `oidc-provider` on loopback, with rotating refresh tokens
// and short-lived access tokens.
//
//   node oidc_provider.mjs PORT KEYWARD_CALLBACK_URL
//
// Prints "ready" once it listens. Clients:
//   keyward-code / code-secret: authorization_code + refresh_token, client_secret_basic, PKCE
//   keyward-cc / cc-secret:     client_credentials, client_secret_post
import Provider from 'oidc-provider';

const [port, callback] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'keyward-code',
      client_secret: 'code-secret-for-tests-0123456789',
      redirect_uris: [callback],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'keyward-cc',
      client_secret: 'cc-secret-for-tests-0123456789',
      redirect_uris: [],
      grant_types: ['client_credentials'],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_post',
      scope: 'api',
    },
  ],
  scopes: ['openid', 'offline_access', 'api'],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
  },
  pkce: { required: () => true },
  rotateRefreshToken: true,
  // Short access tokens, so the tests see expiry and refresh.
  ttl: { AccessToken: 2, ClientCredentials: 600, RefreshToken: 3600, Grant: 3600, Session: 3600, Interaction: 600 },
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
  loadExistingGrant: async (ctx) => {
    // Approve what keyward asks for once the user signed in (consent is
    // not what these tests are about).
    const grant = new provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid offline_access api');
    await grant.save();
    return grant;
  },
});

provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
