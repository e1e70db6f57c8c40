/**
 * kafka://host:9092[,host2:9092]/topic and kafkas:// (the same over TLS): brokers and topic from the
 * URI, every other key read by the declarations of kafkaSource and kafkaSink (lib/kafka/options.ts):
 * `tls=true` and `tls.ca=`, `tls.cert=`, `tls.key=` (file paths) on either scheme, a `tls:` mapping in a
 * pipeline file. SASL is `sasl.mechanism=`, `sasl.username=`, `sasl.password=` (a `sasl:` mapping in a
 * pipeline file, whose password can be `${ENV}`), or the URI's credentials
 * (`kafka://user:password@host:9092/topic`) with the mechanism named by `sasl=` (or `saslMechanism=`):
 * Kafka has no default one, and credentials given and then ignored would connect without them. The
 * connector (and the Kafka client) is loaded by create(), only for a pipeline that uses it.
 */
import { uriCredentials } from '../../core/errors.js';
import { closest, defineOptions, opt } from '../../core/options.js';
import { SASL_KEYS, SASL_MECHANISMS, checkSasl, kafkaSinkOptions, kafkaSourceOptions, type KafkaSaslOptions, type KafkaSinkOptions, type KafkaSourceOptions } from '../../kafka/options.js';
import { registerScheme, type EndpointInput } from '../endpoints.js';
import { UsageError, subject } from '../errors.js';
import { readEndpointOptions } from '../options.js';

/** What only the command line takes: the SASL mechanism of the URI's user and password. */
export const kafkaUriOptions = defineOptions('kafka:', {
  saslMechanism: opt.enum('SASL mechanism of the user and password in the URI (`kafka://user:password@host:9092/topic`), as `sasl.mechanism=` says it too; required with them, as Kafka has no default.', SASL_MECHANISMS),
});

function kafkaTarget({ url, display }: EndpointInput): { brokers: string[]; topic: string } {
  const topic = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (!url.host || !topic) throw new UsageError(`${subject(display)} give brokers and topic as ${url.protocol}//host:9092/topic`);
  return { brokers: url.host.split(','), topic };
}

const HIDDEN = new Set(['password']);

/**
 * Refuses a key `sasl` does not take, naming the nearest; the value of a misspelt key in the URI is
 * hidden too (`sasl.pasword=` holds a password all the same).
 */
function unknownSaslKey(display: string, subkey: string, key: string): never {
  const hint = closest(subkey, SASL_KEYS);
  const shown = display.replace(new RegExp(`([?&;]${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}=)[^&#]*`, 'g'), '$1***');
  const prefix = key.startsWith('sasl.') ? 'sasl.' : '';
  throw new UsageError(`${subject(shown)} unknown option ${JSON.stringify(key)}${hint ? ` (did you mean "${prefix}${hint}"?)` : ''}; sasl takes ${SASL_KEYS.map((k) => `${prefix}${k}`).join(', ')}`);
}

/** The `sasl` and `sasl.<key>` entries of a query or pipeline file, taken out of it (the rest is read by the declarations). */
function takeSasl(display: string, params: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(params)) {
    if (key !== 'sasl' && !key.startsWith('sasl.')) continue;
    const value = params[key];
    delete params[key];
    if (key === 'sasl') {
      // `?sasl=SCRAM-SHA-512` names the mechanism; a pipeline file's `sasl:` may be the whole mapping.
      if (typeof value === 'string') out.mechanism = value;
      else if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
        for (const [subkey, item] of Object.entries(value)) {
          if (!(SASL_KEYS as readonly string[]).includes(subkey)) unknownSaslKey(display, subkey, subkey);
          out[subkey] = item;
        }
      } else throw new UsageError(`${subject(display)} sasl must be a mechanism (${SASL_MECHANISMS.join(', ')}) or a mapping { mechanism, username, password }`);
      continue;
    }
    const subkey = key.slice('sasl.'.length);
    if (!(SASL_KEYS as readonly string[]).includes(subkey)) unknownSaslKey(display, subkey, key);
    out[subkey] = value;
  }
  return out;
}

/**
 * The library's `sasl` from `sasl.*` keys (URI and pipeline file), the URI's credentials and
 * `saslMechanism`; refuses credentials without a mechanism, a mechanism without credentials (but
 * AWS_MSK_IAM's), and the same thing said twice two ways. The password is never shown.
 */
function saslOf(input: EndpointInput, query: Record<string, unknown>, file: Record<string, unknown>, where: string): KafkaSaslOptions | undefined {
  const { display } = input;
  const given: Record<string, unknown> = { ...takeSasl(display, query) };
  for (const [key, value] of Object.entries(takeSasl(display, file))) {
    if (given[key] !== undefined && given[key] !== value) throw new UsageError(`${subject(display)} sasl.${key} is given both in the URI and in the pipeline file${HIDDEN.has(key) ? '' : ` (${JSON.stringify(given[key])} and ${JSON.stringify(value)})`}: give it once`);
    given[key] = value;
  }
  const saslMechanism = query.saslMechanism ?? file.saslMechanism;
  if (saslMechanism !== undefined) {
    if (given.mechanism !== undefined && given.mechanism !== saslMechanism) throw new UsageError(`${subject(display)} saslMechanism= and sasl.mechanism= (or sasl=) name different mechanisms: give the mechanism once`);
    given.mechanism = saslMechanism;
  }
  const credentials = uriCredentials(input.uri);
  if (credentials !== undefined) {
    if (given.username !== undefined || given.password !== undefined) throw new UsageError(`${subject(display)} the user and password are given both in the URI and as sasl.username/sasl.password: give them once`);
    if (given.mechanism === undefined) {
      throw new UsageError(
        `${subject(display)} the user and password would be ignored: Kafka sends them only with SASL, whose mechanism the URI must name: add saslMechanism=PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (what the brokers take; sasl.mechanism= says the same), or remove user:password@ to connect without SASL`,
      );
    }
    if (credentials.username === '' || !credentials.password) throw new UsageError(`${subject(display)} SASL needs both a user and a password: ${input.url.protocol}//user:password@host:9092/topic`);
    given.username = credentials.username;
    given.password = credentials.password;
  }
  if (Object.keys(given).length === 0) return undefined;
  // `sasl=` is a secret's name (it may hold user:password): a value that is no mechanism is not shown.
  if (given.mechanism !== undefined && !(SASL_MECHANISMS as readonly unknown[]).includes(given.mechanism)) {
    throw new UsageError(`${subject(display)} sasl (the SASL mechanism) must be one of ${SASL_MECHANISMS.join(', ')}, got (hidden); a user and password go in sasl.username= and sasl.password=, or user:password@ in the URI`);
  }
  if (given.mechanism === undefined) throw new UsageError(`${subject(display)} SASL needs its mechanism: add sasl.mechanism=PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or AWS_MSK_IAM`);
  if (given.mechanism !== 'AWS_MSK_IAM' && (given.username === undefined || given.password === undefined)) {
    throw new UsageError(`${subject(display)} SASL with this mechanism needs a user and a password: sasl.username= and sasl.password= (in a pipeline file, password: \${KAFKA_PASSWORD}), or both before the host in the URI, percent-encoded`);
  }
  // Checked as the library checks it (the password never shown); a ManifoldError INVALID_OPTION exits 2.
  return checkSasl(given, `${where} ${display}`);
}

/** `tls` for the scheme: kafkas:// is TLS (the system CAs unless tls.ca says), and tls=false there is a contradiction. */
function tlsOf(input: EndpointInput, tls: unknown): unknown {
  if (input.url.protocol !== 'kafkas:') return tls;
  // Read as given: the declaration reads tls=false as no TLS at all (undefined).
  for (const raw of [input.query.tls, input.file.tls]) {
    if (raw === false || (typeof raw === 'string' && ['false', 'no', '0', 'off'].includes(raw.toLowerCase()))) {
      throw new UsageError(`${subject(input.display)} kafkas:// is Kafka over TLS, and tls=false says plain TCP: use kafka:// for that, or remove tls=false`);
    }
  }
  return tls ?? true;
}

/** The query and file options with the SASL keys taken out, the rest read by `declarations`. */
function read(input: EndpointInput, declarations: Parameters<typeof readEndpointOptions>[1], where: string): { options: Record<string, unknown>; sasl: KafkaSaslOptions | undefined } {
  const query: Record<string, string> = { ...input.query };
  const file: Record<string, unknown> = { ...input.file };
  const sasl = saslOf(input, query, file, where);
  const options = readEndpointOptions({ display: input.display, query, file }, declarations);
  delete options.saslMechanism;
  const tls = tlsOf(input, options.tls);
  if (tls === undefined) delete options.tls;
  else options.tls = tls;
  return { options, sasl };
}

registerScheme(['kafka', 'kafkas'], {
  help: 'kafka://host:9092/topic?group=archiver&from=earliest   Apache Kafka (consumer group for sources); kafkas:// over TLS (tls.ca=, tls.cert=, tls.key= file paths); SASL: sasl.mechanism=SCRAM-SHA-512&sasl.username=...&sasl.password=..., or kafka://user:password@host:9092/topic?sasl=SCRAM-SHA-256',
  options: { source: [kafkaSourceOptions, kafkaUriOptions], sink: [kafkaSinkOptions, kafkaUriOptions] },
  source: (input) => {
    const { brokers, topic } = kafkaTarget(input);
    const { options, sasl } = read(input, [kafkaSourceOptions, kafkaUriOptions], 'kafkaSource');
    const { groupId, ...rest } = options;
    if (typeof groupId !== 'string') throw new UsageError(`${subject(input.display)} a Kafka source reads as a consumer group: add group=<name> (processes with the same group share the partitions)`);
    // The factory validates the whole set again: cross-option checks (heartbeatInterval < sessionTimeout) are its own.
    return async () => {
      const { kafkaSource } = await import('../../kafka/source.js');
      return kafkaSource({ ...rest, brokers, topics: topic.split(','), groupId, ...(sasl ? { sasl } : {}) } as KafkaSourceOptions);
    };
  },
  sink: (input) => {
    const { brokers, topic } = kafkaTarget(input);
    const { options, sasl } = read(input, [kafkaSinkOptions, kafkaUriOptions], 'kafkaSink');
    return async () => {
      const { kafkaSink } = await import('../../kafka/sink.js');
      return kafkaSink({ ...options, brokers, topic, ...(sasl ? { sasl } : {}) } as KafkaSinkOptions);
    };
  },
});
