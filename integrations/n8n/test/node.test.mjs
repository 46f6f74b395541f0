// Unit tests of the built package (node --test): helpers, the trigger's signature check, and the
// descriptions n8n loads (credential and node names the package.json "n8n" field points at).
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';

const require = createRequire(import.meta.url);
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url)));
const transport = require('../dist/nodes/Pixelmill/transport.js');
const { PixelmillTrigger, signatureMatches } = require('../dist/nodes/PixelmillTrigger/PixelmillTrigger.node.js');

test('artifacts are found anywhere in outputs, in order', () => {
	const outputs = {
		caption: 'x',
		image: { kind: 'artifact', run_id: 'r1', name: 'a.png', media_type: 'image/png' },
		more: [{ kind: 'artifact', run_id: 'r1', name: 'b.json', media_type: 'application/json' }],
	};
	assert.deepEqual(transport.artifacts(outputs).map((a) => a.name), ['a.png', 'b.json']);
	assert.deepEqual(transport.artifacts({ kind: 'artifact', name: 'no run id' }), []);
});

test('errors read as step, node, type and message', () => {
	const msg = transport.describeError({
		run_id: 'r9', status: 'failed',
		error: { step_id: 'draw', node: 'generate_image', type: 'RuntimeError', message: 'out of memory' },
	});
	assert.equal(msg, "pixelmill run r9 failed: step 'draw' (generate_image) - RuntimeError: out of memory");
});

test('trigger checks the HMAC signature of the raw body', () => {
	const raw = Buffer.from('{"event":"run.succeeded"}');
	const good = 'sha256=' + createHmac('sha256', 'k3y').update(raw).digest('hex');
	assert.equal(signatureMatches('k3y', raw, good), true);
	assert.equal(signatureMatches('other', raw, good), false);
	assert.equal(signatureMatches('k3y', Buffer.from('{}'), good), false);
	assert.equal(signatureMatches('k3y', raw, ''), false);
});

test('package.json points n8n at files that load and describe the nodes', () => {
	assert.ok(pkg.keywords.includes('n8n-community-node-package'));
	assert.ok(pkg.name.startsWith('n8n-nodes-'));
	const names = pkg.n8n.nodes.map((p) => {
		const Cls = require('../' + p)[p.split('/').pop().replace('.node.js', '')];
		return new Cls().description.name;
	});
	assert.deepEqual(names.sort(), ['pixelmill', 'pixelmillTrigger']);
	const cred = require('../' + pkg.n8n.credentials[0]);
	assert.equal(new cred.PixelmillApi().name, 'pixelmillApi');
	const trigger = new PixelmillTrigger();
	assert.deepEqual(Object.keys(trigger.webhookMethods.default).sort(), ['checkExists', 'create', 'delete']);
});
