// A certified OpenID provider (panva/oidc-provider) for the single sign-on tests.
//
// Usage: node tests/oidc/provider.mjs <port> <config.json>
// config.json: {"clients": [oidc-provider client metadata...],
//               "accounts": {"<login>": {"email": "...", "email_verified": true, "name": "..."}}}
// It serves http://127.0.0.1:<port> (discovery, authorize, token, JWKS) with the library's
// own login and consent pages, and prints "ready <issuer>" once it listens. Any password
// is accepted on the login page (the library's development interactions); a login that
// is not in "accounts" signs in as an account without claims beyond "sub".
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, configPath] = process.argv.slice(2);
const config = JSON.parse(readFileSync(configPath, "utf8"));
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: config.clients,
  findAccount: async (_ctx, accountId) => ({
    accountId,
    claims: async () => ({ sub: accountId, ...(config.accounts[accountId] ?? {}) }),
  }),
  claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"] },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ["learnstream-tests-only-cookie-key"] },
  ttl: { Session: 600, Interaction: 600, Grant: 600, AuthorizationCode: 60, IdToken: 300, AccessToken: 300 },
});
// Loopback http issuer: the library allows it outside production.
provider.listen(Number(port), "127.0.0.1", () => {
  process.stdout.write(`ready ${issuer}\n`);
});
