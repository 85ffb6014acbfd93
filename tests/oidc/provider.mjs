// A real OpenID provider (panva's oidc-provider) for the OIDC / SMART bearer-token tests.
//
//   node provider.mjs [--port N] [--config FILE] [--no-stdin-watch]
//
// --port 0 (the default) lets the OS choose; the chosen port is in the READY line. The issuer is
// http://127.0.0.1:PORT. When listening it prints one line on stdout:
//
//   READY {"port": 40123, "issuer": "http://127.0.0.1:40123", "kids": {...}}
//
// and nothing else on stdout after it (oidc-provider's own warnings go to stderr).
//
// The config file (JSON, every field optional):
//
//   {
//     "audience": "http://127.0.0.1:8080/fhir",   // aud when the token request has no `resource`
//     "clients": [{
//       "client_id": "app", "client_secret": "secret",
//       "scope": "system/Patient.read patient/Observation.rs?category=laboratory",  // allowed scopes
//       "claims": {"fhirUser": "Practitioner/1", "patient": "123", "purpose_of_use": "TREAT"},
//       "alg": "RS256",            // JWS alg of its access tokens: RS256 (default) PS256 ES256 ES384 EdDSA ...
//       "kid": "...",              // sign with this key of the provider's JWKS (e.g. one given in "jwks")
//       "audience": "fhir-server", // fixed aud for this client, whatever `resource` says
//       "ttl": 300,                // access-token lifetime in seconds (default 600)
//       "format": "jwt",           // or "opaque" (then only introspection tells what it is)
//       "token_endpoint_auth_method": "client_secret_basic"   // or client_secret_post
//     }],
//     "jwks": {"keys": [<private JWKs>]}   // extra signing keys, published at jwks_uri after the
//                                          // generated ones, so the tests can mint tokens that
//                                          // verify against the provider's JWKS
//   }
//
// Signing keys generated at each start: RSA 2048 (RS256 and PS256), EC P-256 (ES256), EC P-384
// (ES384), Ed25519 (EdDSA); every key has use "sig" and a kid, none has an "alg".
//
// Audience: aud = the client's "audience" if set, else the `resource` parameter of the token
// request (RFC 8707, an absolute URI), else the config's "audience"; with none of them the token
// request fails with invalid_target.
//
// Scopes: a client may ask only for scopes listed in its "scope" (else invalid_scope); SMART
// scopes with / . * ? = are plain scope tokens (RFC 6749 3.3) and oidc-provider takes them as they
// are once every client's scopes are in its `scopes` configuration.
//
// It exits when its stdin closes (the parent holds a pipe) unless --no-stdin-watch, and when its
// parent process changes (the parent died and it was re-parented), checked every 500 ms.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    host: { type: 'string', default: '127.0.0.1' },
    config: { type: 'string' },
    'no-stdin-watch': { type: 'boolean', default: false },
  },
});

const config = args.config ? JSON.parse(fs.readFileSync(args.config, 'utf8')) : {};
const clientsConfig = config.clients ?? [];
const DEFAULT_RESOURCE = 'urn:fhir-server-tests:default-resource';

// ---- dying with the parent -------------------------------------------------------------------

const parentPid = process.ppid;
setInterval(() => {
  if (process.ppid !== parentPid) process.exit(0);
}, 500).unref();
if (!args['no-stdin-watch']) {
  process.stdin.on('data', () => {});
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => process.exit(0));

// ---- keys --------------------------------------------------------------------------------------

function generatedKey(type, options) {
  const { privateKey } = crypto.generateKeyPairSync(type, options);
  const jwk = privateKey.export({ format: 'jwk' });
  const pub = { ...jwk };
  for (const member of ['d', 'p', 'q', 'dp', 'dq', 'qi']) delete pub[member];
  // RFC 7638 thumbprint as kid: the required members in lexicographic order.
  const required = {
    RSA: ['e', 'kty', 'n'], EC: ['crv', 'kty', 'x', 'y'], OKP: ['crv', 'kty', 'x'],
  }[jwk.kty];
  const canonical = JSON.stringify(Object.fromEntries(required.map((k) => [k, pub[k]])));
  const kid = crypto.createHash('sha256').update(canonical).digest('base64url');
  return { ...jwk, kid, use: 'sig' };
}

const generated = [
  generatedKey('rsa', { modulusLength: 2048 }),
  generatedKey('ec', { namedCurve: 'P-256' }),
  generatedKey('ec', { namedCurve: 'P-384' }),
  generatedKey('ed25519'),
];
const loaded = (config.jwks?.keys ?? []).map((k) => ({ use: 'sig', ...k }));
const kids = {
  RSA: generated[0].kid, 'P-256': generated[1].kid, 'P-384': generated[2].kid, Ed25519: generated[3].kid,
};

// ---- clients and scopes ------------------------------------------------------------------------

const byId = new Map(clientsConfig.map((c) => [c.client_id, c]));
const allScopes = new Set(['openid', 'offline_access']);
for (const c of clientsConfig) {
  for (const s of (c.scope ?? '').split(' ')) if (s) allScopes.add(s);
}

const clients = clientsConfig.map((c) => ({
  client_id: c.client_id,
  client_secret: c.client_secret,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  token_endpoint_auth_method: c.token_endpoint_auth_method ?? 'client_secret_basic',
  ...(c.scope ? { scope: c.scope } : {}),
}));

// ---- the provider ------------------------------------------------------------------------------

const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(Number(args.port), args.host, resolve);
});
const { port } = server.address();
const issuer = `http://${args.host}:${port}`;

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [...generated, ...loaded] },
  scopes: [...allScopes],
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No `resource` in the request: a placeholder, resolved to the configured audience below.
      defaultResource: async (ctx, client, oneOf) => oneOf ?? DEFAULT_RESOURCE,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resourceIndicator, client) => {
        const c = byId.get(client.clientId) ?? {};
        const allowed = (c.scope ?? '').split(' ').filter(Boolean);
        const requested = (ctx.oidc.params.scope ?? '').split(' ').filter(Boolean);
        for (const s of requested) {
          if (!allowed.includes(s)) throw new errors.InvalidScope('requested scope is not allowed', s);
        }
        const audience = c.audience
          ?? (resourceIndicator === DEFAULT_RESOURCE ? config.audience : resourceIndicator);
        if (!audience) {
          throw new errors.InvalidTarget('no audience: pass `resource`, or configure one');
        }
        const info = {
          scope: allowed.join(' ') || 'openid',
          audience,
          accessTokenTTL: c.ttl ?? 600,
          accessTokenFormat: c.format ?? 'jwt',
        };
        if (info.accessTokenFormat === 'jwt') {
          info.jwt = { sign: { alg: c.alg ?? 'RS256', ...(c.kid ? { kid: c.kid } : {}) } };
        }
        return info;
      },
    },
  },
  extraTokenClaims: async (ctx, token) => {
    const c = byId.get(token.clientId);
    return c?.claims && Object.keys(c.claims).length ? { ...c.claims } : undefined;
  },
  ttl: {
    ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL ?? 600,
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

server.on('request', provider.callback());
process.stdout.write(`READY ${JSON.stringify({ port, issuer, kids })}\n`);
