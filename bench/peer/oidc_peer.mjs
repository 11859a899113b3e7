// node-oidc-provider as a benchmark peer: in memory, client credentials
// with ES256 JWT access tokens (client bench-jwt, for a resource), and
// opaque access tokens for introspection (client bench-opaque).
//
//   node oidc_peer.mjs PORT
//
// Prints "ready" once it listens.
import Provider from 'oidc-provider';
import { generateKeyPairSync } from 'node:crypto';

const [port] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const RESOURCE = 'https://api.bench.example/';
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'bench-es256', alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    { client_id: 'bench-jwt', client_secret: 'bench-secret-0123456789', grant_types: ['client_credentials'],
      response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_post', scope: 'api', id_token_signed_response_alg: 'ES256' },
    { client_id: 'bench-opaque', client_secret: 'bench-secret-0123456789', grant_types: ['client_credentials'],
      response_types: [], redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', scope: 'api', id_token_signed_response_alg: 'ES256' },
  ],
  jwks: { keys: [jwk] },
  scopes: ['api'],
  features: {
    clientCredentials: { enabled: true },
    // Any authenticated client may introspect (the benchmark's own).
    introspection: { enabled: true, allowedPolicy: async () => true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      // bench-jwt's tokens are for the resource, as ES256 JWTs; bench-opaque's stay opaque.
      defaultResource: (ctx, client) => (client.clientId === 'bench-jwt' ? RESOURCE : undefined),
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'api', accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }),
    },
  },
  ttl: { ClientCredentials: 3600 },
});
provider.listen(Number(port), '127.0.0.1', () => console.log('ready'));
