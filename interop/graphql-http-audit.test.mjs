// pushgate's POST/GET /graphql against the graphql-http audit suite for the
// GraphQL over HTTP specification (serverAudits): every audit, MUST, SHOULD
// and MAY, has to pass. (gqlgen's own transports fail six SHOULD/MAY ones:
// 422 for parse, validation and variable failures with application/json,
// "data": null on failures before execution, 422 for a request without a
// query; server/graphql_http.go's serveOperation answers them as the
// specification asks.)

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serverAudits } from 'graphql-http';
import { startServer } from './harness.mjs';

let srv;
before(async () => { srv = await startServer({ name: 'graphql-http-audit' }); });
after(async () => { await srv?.stop(); });

async function describeResponse(res) {
  if (!res) return '(no response)';
  let body = '';
  try {
    body = await res.clone().text();
  } catch { /* consumed */ }
  return `HTTP ${res.status} ${res.headers.get('content-type') ?? ''}: ${body.slice(0, 500)}`;
}

test('GraphQL over HTTP audits (graphql-http serverAudits)', async (t) => {
  const audits = serverAudits({ url: () => srv.graphqlUrl });
  assert.ok(audits.length > 20, `expected the full audit list, got ${audits.length}`);
  const notPassing = [];
  let must = 0;
  for (const audit of audits) {
    const requirement = audit.name.split(' ')[0];
    await t.test(`${audit.id} ${audit.name}`, async (st) => {
      const result = await audit.fn();
      if (result.status === 'ok') return;
      const detail = `${result.status}: ${result.reason} -- ${await describeResponse(result.response)}`;
      notPassing.push(`${audit.id} ${audit.name} -- ${detail}`);
      assert.fail(`${audit.id} ${audit.name} (${requirement})\n${detail}`);
    });
    if (requirement === 'MUST') must++;
  }
  assert.ok(must > 10, `expected MUST audits, got ${must}`);
  t.diagnostic(`${audits.length} audits, ${must} MUST; not passing: ${notPassing.length}`);
  assert.deepEqual(notPassing, []);
});
