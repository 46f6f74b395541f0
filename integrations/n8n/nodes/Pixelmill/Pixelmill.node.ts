import {
	NodeApiError,
	NodeConnectionTypes,
	NodeOperationError,
	sleep,
	type FieldType,
	type IDataObject,
	type IExecuteFunctions,
	type ILoadOptionsFunctions,
	type INodeExecutionData,
	type INodePropertyOptions,
	type INodeType,
	type INodeTypeDescription,
	type JsonObject,
	type ResourceMapperFields,
} from 'n8n-workflow';

import { api, artifacts, describeError, download, FINISHED, workflowOptions } from './transport';

const INPUT_TYPES: Record<string, FieldType> = {
	string: 'string',
	integer: 'number',
	number: 'number',
	boolean: 'boolean',
	list: 'array',
	object: 'object',
};

/** Pixelmill: run a served workflow (wait for it or only start it), read, cancel or retry a run, download an
 * artifact as binary data, validate workflow YAML. Programmatic style: waiting and binary data need code. */
export class Pixelmill implements INodeType {
	description: INodeTypeDescription = {
		displayName: 'Pixelmill',
		name: 'pixelmill',
		icon: 'file:pixelmill.svg',
		group: ['transform'],
		version: 1,
		subtitle: '={{$parameter["operation"]}}',
		description: 'Run pixelmill image workflows and fetch their results',
		defaults: { name: 'Pixelmill' },
		inputs: [NodeConnectionTypes.Main],
		outputs: [NodeConnectionTypes.Main],
		usableAsTool: true,
		credentials: [{ name: 'pixelmillApi', required: true }],
		properties: [
			{
				displayName: 'Operation',
				name: 'operation',
				type: 'options',
				noDataExpression: true,
				default: 'runWorkflow',
				options: [
					{ name: 'Run Workflow', value: 'runWorkflow', action: 'Run a workflow', description: 'Start a run of a served workflow, optionally waiting for its result' },
					{ name: 'Get Run', value: 'getRun', action: 'Get a run', description: 'Status, outputs, errors and steps of a run' },
					{ name: 'Cancel Run', value: 'cancelRun', action: 'Cancel a run' },
					{ name: 'Retry Run', value: 'retryRun', action: 'Retry a run', description: 'Run a failed run again from its failed step' },
					{ name: 'Download Artifact', value: 'downloadArtifact', action: 'Download an artifact', description: 'A file a run made, as binary data' },
					{ name: 'Validate Workflow', value: 'validateWorkflow', action: 'Validate a workflow', description: 'Check workflow YAML and list every problem' },
				],
			},
			// -- run workflow
			{
				displayName: 'Workflow Name or ID',
				name: 'workflow',
				type: 'options',
				typeOptions: { loadOptionsMethod: 'getWorkflows' },
				default: '',
				required: true,
				description: 'A workflow the server serves. Choose from the list, or specify an ID using an <a href="https://docs.n8n.io/code/expressions/">expression</a>.',
				displayOptions: { show: { operation: ['runWorkflow'] } },
			},
			{
				displayName: 'Inputs',
				name: 'inputs',
				type: 'resourceMapper',
				noDataExpression: true,
				default: { mappingMode: 'defineBelow', value: null },
				required: true,
				typeOptions: {
					loadOptionsDependsOn: ['workflow'],
					resourceMapper: {
						resourceMapperMethod: 'getInputs',
						mode: 'add',
						fieldWords: { singular: 'input', plural: 'inputs' },
						addAllFields: true,
						multiKeyMatch: false,
						supportAutoMap: true,
					},
				},
				displayOptions: { show: { operation: ['runWorkflow'] } },
			},
			{
				displayName: 'Image Inputs',
				name: 'imageInputs',
				type: 'fixedCollection',
				typeOptions: { multipleValues: true },
				placeholder: 'Add Image Input',
				default: {},
				description: 'Inputs filled from the item\'s binary data (sent as a data: URI string)',
				displayOptions: { show: { operation: ['runWorkflow'] } },
				options: [
					{
						displayName: 'Image',
						name: 'image',
						values: [
							{ displayName: 'Input Name', name: 'input', type: 'string', default: 'image' },
							{ displayName: 'Input Binary Field', name: 'binaryProperty', type: 'string', default: 'data' },
						],
					},
				],
			},
			{
				displayName: 'Mode',
				name: 'mode',
				type: 'options',
				default: 'wait',
				options: [
					{ name: 'Wait for Result', value: 'wait', description: 'Poll the run until it ends (up to the timeout)' },
					{ name: 'Start Only', value: 'start', description: 'Return the run ID at once' },
				],
				displayOptions: { show: { operation: ['runWorkflow'] } },
			},
			{
				displayName: 'Options',
				name: 'options',
				type: 'collection',
				placeholder: 'Add Option',
				default: {},
				displayOptions: { show: { operation: ['runWorkflow'] } },
				options: [
					{ displayName: 'Timeout (Seconds)', name: 'timeout', type: 'number', default: 600, description: 'How long to wait for the run' },
					{ displayName: 'Poll Interval (Seconds)', name: 'pollInterval', type: 'number', default: 1 },
					{ displayName: 'Download First Image', name: 'downloadImage', type: 'boolean', default: true, description: 'Whether to attach the first image output as binary data' },
					{ displayName: 'Put Output File in Field', name: 'binaryProperty', type: 'string', default: 'data' },
					{ displayName: 'Callback URL', name: 'callbackUrl', type: 'string', default: '', description: 'Pixelmill POSTs the result here when the run ends, e.g. {{ $execution.resumeUrl }} of a Wait node' },
				],
			},
			// -- runs
			{
				displayName: 'Run ID',
				name: 'runId',
				type: 'string',
				default: '',
				required: true,
				displayOptions: { show: { operation: ['getRun', 'cancelRun', 'retryRun', 'downloadArtifact'] } },
			},
			{
				displayName: 'Artifact Name',
				name: 'artifact',
				type: 'string',
				default: '',
				description: 'File name of the artifact; empty for the run\'s first image output',
				displayOptions: { show: { operation: ['downloadArtifact'] } },
			},
			{
				displayName: 'Put Output File in Field',
				name: 'binaryProperty',
				type: 'string',
				default: 'data',
				displayOptions: { show: { operation: ['downloadArtifact'] } },
			},
			// -- validate
			{
				displayName: 'Workflow YAML',
				name: 'yaml',
				type: 'string',
				typeOptions: { rows: 10 },
				default: '',
				required: true,
				displayOptions: { show: { operation: ['validateWorkflow'] } },
			},
			{
				displayName: 'File Name',
				name: 'file',
				type: 'string',
				default: 'workflow.yaml',
				description: 'Name used in problem locations (file:line:col)',
				displayOptions: { show: { operation: ['validateWorkflow'] } },
			},
		],
	};

	methods = {
		loadOptions: {
			async getWorkflows(this: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
				return workflowOptions(this);
			},
		},
		resourceMapping: {
			async getInputs(this: ILoadOptionsFunctions): Promise<ResourceMapperFields> {
				const name = this.getNodeParameter('workflow', '') as string;
				if (!name) return { fields: [], emptyFieldsNotice: 'Pick a workflow first' };
				const wf = await api(this, 'GET', `/api/v1/workflows/${encodeURIComponent(name)}`);
				const inputs = (wf.inputs ?? {}) as Record<string, IDataObject>;
				return {
					fields: Object.entries(inputs).map(([id, spec]) => ({
						id,
						displayName: spec.description ? `${id} (${spec.description})` : id,
						required: spec.required === true,
						defaultMatch: false,
						display: true,
						type: Array.isArray(spec.enum) ? 'options' : INPUT_TYPES[String(spec.type)] ?? 'string',
						options: Array.isArray(spec.enum)
							? spec.enum.map((v) => ({ name: String(v), value: v as string }))
							: undefined,
						defaultValue: (spec.default as string | number | boolean | null) ?? undefined,
					})),
					emptyFieldsNotice: `Workflow '${name}' takes no inputs`,
				};
			},
		},
	};

	async execute(this: IExecuteFunctions): Promise<INodeExecutionData[][]> {
		const items = this.getInputData();
		const out: INodeExecutionData[] = [];
		for (let i = 0; i < items.length; i++) {
			try {
				out.push(...(await runOne(this, i, items[i])));
			} catch (error) {
				if (this.continueOnFail()) {
					out.push({ json: { error: (error as Error).message }, pairedItem: { item: i } });
					continue;
				}
				if (error instanceof NodeOperationError || error instanceof NodeApiError) throw error;
				throw new NodeApiError(this.getNode(), error as JsonObject, { itemIndex: i });
			}
		}
		return [out];
	}
}

async function runOne(ctx: IExecuteFunctions, i: number, item: INodeExecutionData): Promise<INodeExecutionData[]> {
	const operation = ctx.getNodeParameter('operation', i) as string;
	const paired = { item: i };
	if (operation === 'runWorkflow') return runWorkflow(ctx, i, item);
	if (operation === 'validateWorkflow') {
		const body = { yaml: ctx.getNodeParameter('yaml', i) as string, file: ctx.getNodeParameter('file', i) as string };
		return [{ json: await api(ctx, 'POST', '/api/v1/workflows/validate', body), pairedItem: paired }];
	}
	const runId = encodeURIComponent(ctx.getNodeParameter('runId', i) as string);
	if (operation === 'getRun') return [{ json: await api(ctx, 'GET', `/api/v1/runs/${runId}`), pairedItem: paired }];
	if (operation === 'cancelRun') return [{ json: await api(ctx, 'POST', `/api/v1/runs/${runId}/cancel`), pairedItem: paired }];
	if (operation === 'retryRun') return [{ json: await api(ctx, 'POST', `/api/v1/runs/${runId}/retry`), pairedItem: paired }];
	if (operation === 'downloadArtifact') {
		const name = ctx.getNodeParameter('artifact', i) as string;
		const field = ctx.getNodeParameter('binaryProperty', i) as string;
		const run = await api(ctx, 'GET', `/api/v1/runs/${runId}`);
		let url: string;
		if (name) {
			const ref = artifacts(run.outputs).find((a) => a.name === name);
			url = ref?.url ?? `${run.url}/artifacts/${encodeURIComponent(name)}`;
		} else {
			const ref = artifacts(run.outputs).find((a) => (a.media_type ?? '').startsWith('image/'));
			if (!ref?.url) throw new NodeOperationError(ctx.getNode(), `run ${run.id} has no image output`, { itemIndex: i });
			url = ref.url;
		}
		const file = await download(ctx, url);
		const fileName = name || decodeURIComponent(url.split('?')[0].split('/').pop() ?? 'artifact');
		return [{
			json: { run_id: run.id, name: fileName, media_type: file.type },
			binary: { [field]: await ctx.helpers.prepareBinaryData(file.data, fileName, file.type) },
			pairedItem: paired,
		}];
	}
	throw new NodeOperationError(ctx.getNode(), `unknown operation '${operation}'`, { itemIndex: i });
}

async function runWorkflow(ctx: IExecuteFunctions, i: number, item: INodeExecutionData): Promise<INodeExecutionData[]> {
	const workflow = ctx.getNodeParameter('workflow', i) as string;
	const mapped = (ctx.getNodeParameter('inputs.value', i, {}) ?? {}) as IDataObject;
	const inputs: IDataObject = {};
	for (const [k, v] of Object.entries(mapped)) if (v !== null && v !== undefined && v !== '') inputs[k] = v;
	const images = (ctx.getNodeParameter('imageInputs.image', i, []) ?? []) as IDataObject[];
	for (const img of images) {
		const field = String(img.binaryProperty || 'data');
		const binary = ctx.helpers.assertBinaryData(i, field);
		const bytes = await ctx.helpers.getBinaryDataBuffer(i, field);
		inputs[String(img.input)] = `data:${binary.mimeType};base64,${bytes.toString('base64')}`;
	}
	const mode = ctx.getNodeParameter('mode', i) as string;
	const options = ctx.getNodeParameter('options', i, {}) as IDataObject;
	const body: IDataObject = { inputs };
	if (options.callbackUrl) body.callback_url = options.callbackUrl;
	const started = await api(ctx, 'POST', `/api/v1/workflows/${encodeURIComponent(workflow)}/runs`, body);
	if (mode === 'start') return [{ json: started, pairedItem: { item: i } }];
	const timeout = Number(options.timeout ?? 600) * 1000;
	const poll = Math.max(0.1, Number(options.pollInterval ?? 1)) * 1000;
	const deadline = Date.now() + timeout;
	let run = await api(ctx, 'GET', `/api/v1/runs/${started.run_id}`);
	while (!FINISHED.includes(run.status)) {
		if (Date.now() > deadline) {
			throw new NodeOperationError(ctx.getNode(), `pixelmill run ${started.run_id} is still ${run.status} after ${timeout / 1000} s`, {
				itemIndex: i,
				description: `Poll ${started.status_url} or use a Wait node with a callback URL for long runs`,
			});
		}
		await sleep(poll);
		run = await api(ctx, 'GET', `/api/v1/runs/${started.run_id}`);
	}
	if (run.status !== 'succeeded') {
		throw new NodeOperationError(ctx.getNode(), describeError({ ...run, run_id: run.id }), {
			itemIndex: i,
			description: JSON.stringify(run.error ?? {}),
		});
	}
	const result: INodeExecutionData = { json: { run_id: run.id, workflow: run.workflow, status: run.status, outputs: run.outputs, url: run.url }, pairedItem: { item: i } };
	if (options.downloadImage !== false) {
		const ref = artifacts(run.outputs).find((a) => (a.media_type ?? '').startsWith('image/'));
		if (ref?.url) {
			const file = await download(ctx, ref.url);
			const field = String(options.binaryProperty || 'data');
			result.binary = { [field]: await ctx.helpers.prepareBinaryData(file.data, ref.name, file.type) };
		}
	}
	void item;
	return [result];
}
