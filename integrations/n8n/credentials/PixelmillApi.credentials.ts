import type {
	IAuthenticateGeneric,
	ICredentialTestRequest,
	ICredentialType,
	INodeProperties,
} from 'n8n-workflow';

/** "Pixelmill API": the server's base URL and its API token (PIXELMILL_API_TOKEN), sent as a bearer token. */
export class PixelmillApi implements ICredentialType {
	name = 'pixelmillApi';

	displayName = 'Pixelmill API';

	documentationUrl = 'https://github.com/pixelmill/pixelmill/blob/main/docs/n8n.md';

	properties: INodeProperties[] = [
		{
			displayName: 'Base URL',
			name: 'baseUrl',
			type: 'string',
			default: 'http://127.0.0.1:8080',
			placeholder: 'http://127.0.0.1:8080',
			description: 'Where pixelmill serves, without a trailing slash',
			required: true,
		},
		{
			displayName: 'API Token',
			name: 'token',
			type: 'string',
			typeOptions: { password: true },
			default: '',
			description: 'The server\'s PIXELMILL_API_TOKEN; leave empty when the server runs without one',
		},
	];

	authenticate: IAuthenticateGeneric = {
		type: 'generic',
		properties: {
			headers: {
				Authorization: '={{$credentials.token ? "Bearer " + $credentials.token : undefined}}',
			},
		},
	};

	test: ICredentialTestRequest = {
		request: {
			baseURL: '={{$credentials.baseUrl.replace(/\\/$/, "")}}',
			url: '/api/v1/workflows',
		},
	};
}
