// An MCP client on one of the official TypeScript SDKs, driven by
// tests/interop/test_mcp_sdks.py over stdin/stdout: it prints
// `AUTHORIZE <url>` and reads back where the browser was sent; calls the
// `echo` tool (`RESULT …`, `TOKEN …`); waits for a line; calls it again
// (after the test revoked the token, so the SDK must refresh).
//
// Usage: node mcp_client.mjs PACKAGE SERVER_URL REDIRECT_URI [CLIENT]
// CLIENT: a pre-registered client id, a client metadata document's https
// URL, or nothing (dynamic registration).
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';

const [pkg, serverUrl, redirectUri, client_ = ''] = process.argv.slice(2);
const metadataUrl = client_.startsWith('https://') ? client_ : undefined;
const preRegistered = metadataUrl ? undefined : client_;
const v2 = pkg === '@modelcontextprotocol/client';
const api = v2
  ? await import('@modelcontextprotocol/client')
  : {
      ...(await import('@modelcontextprotocol/sdk/client/index.js')),
      ...(await import('@modelcontextprotocol/sdk/client/streamableHttp.js')),
      ...(await import('@modelcontextprotocol/sdk/client/auth.js')),
    };
const { Client, StreamableHTTPClientTransport, UnauthorizedError } = api;

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const nextLine = async () => (await lines.next()).value;

class TestProvider {
  constructor() {
    if (preRegistered) {
      this.info = { client_id: preRegistered, token_endpoint_auth_method: 'none' };
    } else {
      this.clientMetadataUrl = metadataUrl;
      this.saveClientInformation = (info) => { this.info = info; };
    }
  }
  get redirectUrl() { return redirectUri; }
  get clientMetadata() {
    return {
      client_name: `TypeScript MCP SDK (${pkg})`,
      redirect_uris: [redirectUri],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() { return (this.lastState = randomBytes(16).toString('base64url')); }
  clientInformation() { return this.info; }
  tokens() { return this.saved; }
  saveTokens(tokens) { this.saved = tokens; }
  redirectToAuthorization(url) { this.authorizationUrl = url; }
  saveCodeVerifier(verifier) { this.verifier = verifier; }
  codeVerifier() { return this.verifier; }
  saveDiscoveryState(state) { this.discovery = state; }
  discoveryState() { return this.discovery; }
}

const provider = new TestProvider();
const client = new Client({ name: 'keyward-interop', version: '1.0.0' });
const transport = () => new StreamableHTTPClientTransport(new URL(serverUrl), { authProvider: provider });

try {
  await client.connect(transport());
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
  console.log(`AUTHORIZE ${provider.authorizationUrl}`);
  const back = new URL(await nextLine());
  if (back.searchParams.get('state') !== provider.lastState) throw new Error('state does not match');
  const t = transport();
  await (v2 ? t.finishAuth(back.searchParams) : t.finishAuth(back.searchParams.get('code')));
  await client.connect(t);
}
const text = (r) => r.content.map((c) => c.text).join(' ');
console.log(`RESULT ${text(await client.callTool({ name: 'echo', arguments: { text: 'hello' } }))}`);
console.log(`TOKEN ${provider.saved.access_token}`);
await nextLine();
console.log(`RESULT ${text(await client.callTool({ name: 'echo', arguments: { text: 'again' } }))}`);
console.log(`TOKEN ${provider.saved.access_token}`);
await client.close();
process.exit(0);
