// tsc copies no assets: put each node's SVG icon next to its compiled .node.js
import { cpSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

for (const dir of readdirSync('nodes')) {
	for (const file of readdirSync(join('nodes', dir))) {
		if (file.endsWith('.svg')) cpSync(join('nodes', dir, file), join('dist', 'nodes', dir, file));
	}
}
