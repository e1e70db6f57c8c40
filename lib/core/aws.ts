/**
 * What every AWS-backed connector does with its connection options: take a
 * ready client, or validate the settings to build one from.
 */
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { conflictingOptions, invalidOption, stringOption } from './options.js';

/** Connection options shared by AWS connectors: a client, or what to build one from. */
export interface AwsConnection<C, Credentials> {
  client?: C;
  region?: string;
  endpoint?: string;
  credentials?: Credentials;
}

/** The settings for a client we build (spread into the SDK client's config). */
export interface AwsClientSettings<Credentials> {
  region?: string;
  endpoint?: string;
  credentials?: Credentials;
  requestHandler?: NodeHttpHandler;
}

/**
 * Validates `client` (an object with `send`, described by `what` in errors,
 * and alone: region, endpoint and credentials belong to it) or the settings;
 * returns the client, or the settings to build one. A plain `http://`
 * endpoint (a local server) gets an HTTP/1.1 handler.
 */
export function awsConnection<C, Credentials>(where: string, o: AwsConnection<C, Credentials>, what: string): { client: C } | { settings: AwsClientSettings<Credentials> } {
  if (o.client !== undefined) {
    if (typeof (o.client as { send?: unknown } | null)?.send !== 'function') invalidOption(where, 'client', what, o.client);
    for (const key of ['region', 'endpoint', 'credentials'] as const) {
      if (o[key] !== undefined) conflictingOptions(where, 'client', key, 'cannot be combined: configure the client you pass instead');
    }
    return { client: o.client };
  }
  const region = stringOption(where, 'region', o.region);
  const endpoint = stringOption(where, 'endpoint', o.endpoint);
  if (endpoint !== undefined && !/^https?:\/\//.test(endpoint)) invalidOption(where, 'endpoint', 'an http:// or https:// URL', endpoint);
  const credentials: unknown = o.credentials;
  if (credentials !== undefined && (credentials === null || (typeof credentials !== 'object' && typeof credentials !== 'function'))) {
    invalidOption(where, 'credentials', 'AWS credentials ({ accessKeyId, secretAccessKey }) or a credential provider', '(hidden)');
  }
  const settings: AwsClientSettings<Credentials> = {};
  if (region !== undefined) settings.region = region;
  if (endpoint !== undefined) settings.endpoint = endpoint;
  if (o.credentials !== undefined) settings.credentials = o.credentials;
  // The SDK's default handler may speak HTTP/2, which plain-http local servers do not.
  if (endpoint?.startsWith('http://')) settings.requestHandler = new NodeHttpHandler();
  return { settings };
}
