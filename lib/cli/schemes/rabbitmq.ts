/**
 * amqp:// and amqps://: RabbitMQ, consumed as a source (`?queue=orders`) or published to as a
 * sink (`?exchange=logs&routingKey=errors`). The query keys are those of the rabbitmqSource and
 * rabbitmqSink declarations (lib/rabbitmq/options.ts), plus amqplib's own URL parameters
 * (`heartbeat`, `frameMax`, ...), which stay in the URL for amqplib; any other key is refused.
 * `amqps://` is TLS; `tls.ca=`, `tls.cert=`, `tls.key=` (file paths) or a `tls:` mapping in the
 * pipeline file give its CA and client certificate, `authMechanism=EXTERNAL` logs in as that certificate.
 * The connector (and amqplib) is loaded by create(), only for a pipeline that uses it.
 */
import { cliKey, type OptionDeclaration, type OptionSpecs } from '../../core/options.js';
import { amqplibUrlParameters, checkConnection, rabbitmqSinkOptions, rabbitmqSourceOptions, type RabbitmqSinkOptions, type RabbitmqSourceOptions } from '../../rabbitmq/options.js';
import { registerScheme, type EndpointInput } from '../endpoints.js';
import { UsageError, subject } from '../errors.js';
import { readEndpointOptions } from '../options.js';

/**
 * The factory's options from the URI's query and the pipeline file, with `url` the URI
 * keeping only amqplib's parameters. Validated through the declaration here, so that a bad
 * value exits 2 before anything connects.
 */
function optionsOf<D extends OptionSpecs>(input: EndpointInput, declaration: OptionDeclaration<D>): Record<string, unknown> {
  const { url, display } = input;
  const values = readEndpointOptions(input, [declaration, amqplibUrlParameters]);
  for (const name of declaration.names) {
    const spec = declaration.specs[name]!;
    const key = cliKey(name, spec);
    if (spec.required && key !== undefined && values[name] === undefined) {
      throw new UsageError(`${subject(display)} ${key} is required (${spec.doc.charAt(0).toLowerCase()}${spec.doc.slice(1).replace(/\.$/, '')})`);
    }
  }
  const target = new URL(url.href);
  target.search = '';
  const options: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(values)) {
    if (amqplibUrlParameters.names.includes(name as never)) target.searchParams.set(name, String(value));
    else options[name] = value;
  }
  options.url = target.toString();
  // tls (a `tls:` mapping, or `tls.ca=`/`tls.cert=`/`tls.key=` keys folded into one) is our option, never amqplib's:
  // it was read above, and only amqplib's own parameters went back into the URL.
  const resolved = declaration.resolve(options) as unknown as Parameters<typeof checkConnection>[1];
  checkConnection(declaration.where, resolved);
  return options;
}

registerScheme(['amqp', 'amqps'], {
  help: `amqp://user:pass@host/vhost?queue=q | ?exchange=logs&routingKey=errors   RabbitMQ consume (queue) or publish (exchange); amqps:// with tls.ca=, tls.cert=, tls.key= (files) for TLS; ${amqplibUrlParameters.names.join(', ')} go to amqplib`,
  options: { source: [rabbitmqSourceOptions, amqplibUrlParameters], sink: [rabbitmqSinkOptions, amqplibUrlParameters] },
  source: (input) => {
    const options = optionsOf(input, rabbitmqSourceOptions) as unknown as RabbitmqSourceOptions;
    return async () => {
      const { rabbitmqSource } = await import('../../rabbitmq/source.js');
      return rabbitmqSource(options);
    };
  },
  sink: (input) => {
    const options = optionsOf(input, rabbitmqSinkOptions) as RabbitmqSinkOptions;
    return async () => {
      const { rabbitmqSink } = await import('../../rabbitmq/sink.js');
      return rabbitmqSink(options);
    };
  },
});
