import type {
	IDataObject,
	IExecuteFunctions,
	IHookFunctions,
	IHttpRequestMethods,
	IHttpRequestOptions,
	ILoadOptionsFunctions,
	INodePropertyOptions,
} from 'n8n-workflow';

type Ctx = IExecuteFunctions | ILoadOptionsFunctions | IHookFunctions;

/** The server's base URL from the "Pixelmill API" credentials, without a trailing slash. */
export async function baseUrl(ctx: Ctx): Promise<string> {
	const creds = await ctx.getCredentials('pixelmillApi');
	return String(creds.baseUrl ?? '').replace(/\/+$/, '');
}

/** One JSON call to pixelmill's REST API with the credentials' bearer token. */
export async function api(
	ctx: Ctx,
	method: IHttpRequestMethods,
	path: string,
	body?: IDataObject,
	qs?: IDataObject,
): Promise<any> {
	const options: IHttpRequestOptions = {
		method,
		url: (await baseUrl(ctx)) + path,
		json: true,
		headers: { Accept: 'application/json' },
	};
	if (body !== undefined) options.body = body;
	if (qs !== undefined) options.qs = qs;
	return ctx.helpers.httpRequestWithAuthentication.call(ctx, 'pixelmillApi', options);
}

/** Bytes from a URL (an artifact's signed URL needs no token; the token is sent anyway for unsigned ones). */
export async function download(ctx: IExecuteFunctions, url: string): Promise<{ data: Buffer; type: string }> {
	const response = await ctx.helpers.httpRequestWithAuthentication.call(ctx, 'pixelmillApi', {
		method: 'GET',
		url,
		encoding: 'arraybuffer',
		returnFullResponse: true,
		json: false,
	});
	const headers = (response.headers ?? {}) as IDataObject;
	return {
		data: Buffer.from(response.body as ArrayBuffer),
		type: String(headers['content-type'] ?? 'application/octet-stream').split(';')[0],
	};
}

/** The served workflows, for the workflow pickers. */
export async function workflowOptions(ctx: ILoadOptionsFunctions): Promise<INodePropertyOptions[]> {
	const listing = await api(ctx, 'GET', '/api/v1/workflows');
	return (listing.items as IDataObject[]).map((wf) => ({
		name: String(wf.name),
		value: String(wf.name),
		description: String(wf.description ?? ''),
	}));
}

export interface ArtifactRef {
	kind: 'artifact';
	run_id: string;
	name: string;
	media_type?: string;
	url?: string;
}

/** Every artifact reference in a run's outputs, in order. */
export function artifacts(value: unknown, out: ArtifactRef[] = []): ArtifactRef[] {
	if (Array.isArray(value)) {
		for (const v of value) artifacts(v, out);
	} else if (value !== null && typeof value === 'object') {
		const obj = value as IDataObject;
		if (obj.kind === 'artifact' && typeof obj.run_id === 'string' && typeof obj.name === 'string') {
			out.push(obj as unknown as ArtifactRef);
		} else {
			for (const v of Object.values(obj)) artifacts(v, out);
		}
	}
	return out;
}

export const FINISHED = ['succeeded', 'failed', 'blocked', 'cancelled', 'interrupted'];

/** "step 'x' (node) failed: RuntimeError: message" from pixelmill's error shape. */
export function describeError(run: IDataObject): string {
	const err = (run.error ?? {}) as IDataObject;
	const where = err.step_id ? `step '${err.step_id}'${err.node ? ` (${err.node})` : ''}` : 'the run';
	const what = [err.type, err.message].filter(Boolean).join(': ');
	return `pixelmill run ${run.run_id ?? run.id} ${run.status}: ${where}${what ? ` - ${what}` : ''}`;
}
