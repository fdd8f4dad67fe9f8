// What both core-crypto drivers (wire_core_crypto.mjs for 6.x-9.x and
// wire_core_crypto_10.mjs for 10.x) do as the Wire app around core-crypto: the scripted
// OAuth login of alice (code + PKCE through idca's form, as idca enroll does), and a
// device registered with POST /clients, with its client id taken apart.
import crypto from 'node:crypto';

let cookie = null;
async function send(url, opts = {}) {
  opts.headers = { ...(opts.headers || {}), ...(cookie ? { cookie } : {}) };
  const r = await fetch(url, { redirect: 'manual', ...opts });
  const sc = r.headers.get('set-cookie'); if (sc) cookie = sc.split(';')[0];
  return r;
}

/// Logs alice in at `base` (once; then her session), with the OIDC `claims` request if
/// given; returns the token response.
export async function login(base, claims) {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  let url = `${base}/oauth/authorize?response_type=code&client_id=idca-cli&redirect_uri=${encodeURIComponent('http://127.0.0.1/callback')}&scope=${encodeURIComponent('openid profile acme')}&state=s&code_challenge=${challenge}&code_challenge_method=S256`;
  if (claims) url += '&claims=' + encodeURIComponent(JSON.stringify(claims));
  let r = await send(url);
  let loc;
  if (r.status === 303) loc = r.headers.get('location');
  else {
    const page = await r.text();
    const field = n => page.match(new RegExp(`name="${n}" value="([^"]*)"`))[1];
    const body = new URLSearchParams({ request: field('request'), csrf: field('csrf'), username: 'alice', password: 'wonderland' });
    r = await send(`${base}/oauth/login`, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    loc = r.headers.get('location');
  }
  const code = new URL(loc).searchParams.get('code');
  r = await send(`${base}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, code_verifier: verifier, client_id: 'idca-cli', redirect_uri: 'http://127.0.0.1/callback' }) });
  return r.json();
}

/// Registers a device for the token's user; returns it, with its client id
/// `wireapp://{b64url uid}!{hex}@{domain}` as the user's UUID, the device's hex id and
/// the domain.
export async function registerDevice(base, accessToken) {
  const device = await (await fetch(`${base}/clients`, { method: 'POST', headers: { authorization: `Bearer ${accessToken}`, 'content-type': 'application/json' }, body: '{}' })).json();
  console.log('device', device.client_id);
  const m = device.client_id.match(/^wireapp:\/\/([^!]+)!([0-9a-f]+)@(.+)$/);
  const hex = Buffer.from(m[1], 'base64url').toString('hex');
  const uuid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { device, uuid, deviceHex: m[2], domain: m[3] };
}
