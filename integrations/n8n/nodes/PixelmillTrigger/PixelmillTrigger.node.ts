import { createHmac, timingSafeEqual } from 'crypto';

import {
	NodeConnectionTypes,
	type IDataObject,
	type IHookFunctions,
	type ILoadOptionsFunctions,
	type INodePropertyOptions,
	type INodeType,
	type INodeTypeDescription,
	type IWebhookFunctions,
	type IWebhookResponseData,
} from 'n8n-workflow';

import { api, workflowOptions } from '../Pixelmill/transport';

/** Starts the n8n workflow when a pixelmill run succeeds or fails. On activation it subscribes its webhook
 * URL through /api/v1/subscriptions (keeping the returned HMAC key), on deactivation it unsubscribes; each
 * delivery's X-Pixelmill-Signature is checked before the workflow starts. */
export class PixelmillTrigger implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Pixelmill Trigger',
		name: 'pixelmillTrigger',
		icon: 'file:pixelmill.svg',
		group: ['trigger'],
		version: 1,
		subtitle: '={{$parameter["events"].join(", ")}}',
		description: 'Starts the workflow when a pixelmill run finishes',
		defaults: { name: 'Pixelmill Trigger' },
		inputs: [],
		outputs: [NodeConnectionTypes.Main],
		credentials: [{ name: 'pixelmillApi', required: true }],
		webhooks: [{ name: 'default', httpMethod: 'POST', responseMode: 'onReceived', path: 'webhook' }],
		properties: [
			{
				displayName: 'Events',
				name: 'events',
				type: 'multiOptions',
				required: true,
				default: ['run.succeeded', 'run.failed'],
				options: [
					{ name: 'Run Succeeded', value: 'run.succeeded' },
					{ name: 'Run Failed', value: 'run.failed', description: 'Failed, blocked, cancelled or interrupted' },
				],
			},
			{
				displayName: 'Workflow Name or ID',
				name: 'workflow',
				type: 'options',
				typeOptions: { loadOptionsMethod: 'getWorkflows' },
				default: '',
				description: 'Only runs of this workflow; empty for all. Choose from the list, or specify an ID using an <a href="https://docs.n8n.io/code/expressions/">expression</a>.',
			},
		],
	};

	methods = {
		loadOptions: {
			async getWorkflows(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
				return [{ name: '(All Workflows)', value: '' }, ...(await workflowOptions(this))];
			},
		},
	};

	webhookMethods = {
		default: {
			async checkExists(this: IHookFunctions): Promise<boolean> {
				const data = this.getWorkflowStaticData('node');
				if (!data.subscriptionId) return false;
				const listing = await api(this, 'GET', '/api/v1/subscriptions');
				const found = (listing.items as IDataObject[]).some((s) => s.id === data.subscriptionId);
				if (!found) {
					delete data.subscriptionId;
					delete data.secret;
				}
				return found;
			},
			async create(this: IHookFunctions): Promise<boolean> {
				const body: IDataObject = {
					url: this.getNodeWebhookUrl('default') as string,
					events: this.getNodeParameter('events') as string[],
				};
				const workflow = this.getNodeParameter('workflow', '') as string;
				if (workflow) body.workflow = workflow;
				const sub = await api(this, 'POST', '/api/v1/subscriptions', body);
				const data = this.getWorkflowStaticData('node');
				data.subscriptionId = sub.id;
				data.secret = sub.secret;
				return true;
			},
			async delete(this: IHookFunctions): Promise<boolean> {
				const data = this.getWorkflowStaticData('node');
				if (data.subscriptionId) {
					try {
						await api(this, 'DELETE', `/api/v1/subscriptions/${data.subscriptionId}`);
					} catch (error) {
						// already gone on the server: nothing left to undo
						if (!String((error as Error).message).includes('404')) return false;
					}
					delete data.subscriptionId;
					delete data.secret;
				}
				return true;
			},
		},
	};

	async webhook(this: IWebhookFunctions): Promise<IWebhookResponseData> {
		const req = this.getRequestObject();
		const secret = this.getWorkflowStaticData('node').secret as string | undefined;
		if (secret) {
			const raw: Buffer = (req as unknown as { rawBody?: Buffer }).rawBody ?? Buffer.from(JSON.stringify(req.body));
			if (!signatureMatches(secret, raw, String(req.headers['x-pixelmill-signature'] ?? ''))) {
				const res = this.getResponseObject();
				res.status(401).json({ error: 'bad signature' });
				return { noWebhookResponse: true };
			}
		}
		const body = this.getBodyData() as IDataObject;
		return { workflowData: [this.helpers.returnJsonArray([body])] };
	}
}

export function signatureMatches(secret: string, raw: Buffer, given: string): boolean {
	const expected = Buffer.from('sha256=' + createHmac('sha256', secret).update(raw).digest('hex'));
	const got = Buffer.from(given.trim().toLowerCase());
	return got.length === expected.length && timingSafeEqual(got, expected);
}
