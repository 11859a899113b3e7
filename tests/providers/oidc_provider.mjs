// An external authorization server for keyward's connection tests: the
// OpenID-certified `oidc-provider` on loopback, with rotating refresh tokens
// and short-lived access tokens.
//
//   node oidc_provider.mjs PORT KEYWARD_CALLBACK_URL [KEYWARD_SSO_CALLBACK_URL]
//
// Prints "ready" once it listens. Clients:
//   keyward-code / code-secret: authorization_code + refresh_token, client_secret_basic, PKCE
//   keyward-cc / cc-secret:     client_credentials, client_secret_post
//   keyward-sso / sso-secret:   keyward's single sign-on (ID tokens with
//                               email and groups; logins starting "ops"
//                               are in the group keyward-admins)
import Provider from 'oidc-provider';

const [port, callback, ssoCallback] = process.argv.slice(2);
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
    {
      client_id: 'keyward-sso',
      client_secret: 'sso-secret-for-tests-0123456789',
      redirect_uris: ssoCallback ? [ssoCallback] : [],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ].filter((c) => c.redirect_uris.length || c.grant_types.includes('client_credentials')),
  scopes: ['openid', 'offline_access', 'api', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  // The ID token carries the claims of the scopes granted (keyward reads
  // them there, not at the userinfo endpoint).
  conformIdTokenClaims: false,
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
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@example.test`,
      email_verified: true,
      groups: id.startsWith('ops') ? ['keyward-admins', 'staff'] : ['staff'],
    }),
  }),
  loadExistingGrant: async (ctx) => {
    // Approve what keyward asks for once the user signed in (consent is
    // not what these tests are about).
    const grant = new provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope('openid offline_access api email groups');
    await grant.save();
    return grant;
  },
});

provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
