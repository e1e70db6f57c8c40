/**
 * Redaction by parsing (DESIGN.md §5): URI userinfo whatever its password holds, secret query and option
 * names from a fixed list (not "any name ending in key"), nested URLs; option validation that never echoes
 * a secret; durations capped at 2^31 - 1 ms. Each case plants a secret and looks for it in what comes out.
 */
import assert from 'node:assert/strict';
import { PassThrough, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { ErrorCodes, ManifoldError, isSecretName, redactText, redactUrl, uriCredentials, uriSecrets } from '../../lib/core/errors.js';
import { flow } from '../../lib/core/flow.js';
import { MAX_DURATION_MS, defineOptions, durationOption, opt, show } from '../../lib/core/options.js';
import { resolveRetry } from '../../lib/core/retry.js';
import { kafkaSink } from '../../lib/kafka/sink.js';
import { kafkaSource } from '../../lib/kafka/source.js';
import { rabbitmqSink } from '../../lib/rabbitmq/sink.js';
import { rabbitmqSource } from '../../lib/rabbitmq/source.js';
import { batch } from '../../lib/transforms/batch.js';
import { websocketSource } from '../../lib/websocket/source.js';

/** The message of what `fn` throws, which must be an INVALID_OPTION ManifoldError. */
function invalid(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ManifoldError, String(error));
    assert.equal(error.code, ErrorCodes.INVALID_OPTION);
    return error.message;
  }
  assert.fail('expected an INVALID_OPTION error');
}

describe('redactUrl: the userinfo, whatever the password holds', () => {
  // Each password holds a character that ends a userinfo early for a pattern (or for the WHATWG parser).
  const passwords = ['Pa/ss-Sl4sh', 'Pa@ss-At', 'Pa:ss-Colon', 'Pa#ss-Hash', 'Pa?ss-Query', 'a/b@c:d#e?f-All', '12/ss-Digits', 'Pa%2Fss-Encoded'];
  for (const scheme of ['amqp', 'amqps', 'kafka', 'ws', 'wss', 's3', 'postgres']) {
    it(`${scheme}://user:<password>@host/... hides every password and keeps the rest`, () => {
      for (const password of passwords) {
        for (const rest of ['', '/', '/vhost?queue=orders', ':5672/?queue=q&prefetch=5', '/path#frag']) {
          const uri = `${scheme}://alice:${password}@broker.example${rest}`;
          const shown = redactUrl(uri, { asWritten: true });
          assert.equal(shown, `${scheme}://alice:***@broker.example${rest}`, uri);
          // As the URL parser serializes it (when it reads the URI as we do), the same is hidden.
          const normalized = redactUrl(uri);
          assert.match(normalized, new RegExp(`^${scheme}://alice:\\*\\*\\*@broker\\.example`), uri);
          for (const part of password.split(/[/@:#?%]/).filter((p) => p.length > 2)) assert.ok(!shown.includes(part) && !normalized.includes(part), `${uri} -> ${shown}, ${normalized}`);
          assert.ok(uriSecrets(uri).includes(password), uri);
        }
      }
    });
  }

  it('reads the user and password as the redaction does, percent-decoded', () => {
    assert.deepEqual(uriCredentials('kafka://alice:p%2Fw/x@h:9092/t'), { username: 'alice', password: 'p/w/x' });
    assert.deepEqual(uriCredentials('amqp://guest@h/'), { username: 'guest', password: undefined });
    assert.equal(uriCredentials('amqp://h/?queue=a@b'), undefined);
    assert.equal(uriCredentials('stdin:'), undefined);
  });

  it('keeps what is not a secret; a URI the URL parser reads as it does comes back as it serializes it', () => {
    for (const uri of ['ws://host:8080/', 'stdin:', 'kinesis:orders?region=eu-west-1', 'amqp://[::1]:5672/', 'amqp://h/?queue=a@b', 'not a url user:pw@']) {
      assert.equal(redactUrl(uri), uri);
    }
    assert.equal(redactUrl('ws://host:8080'), 'ws://host:8080/');
    assert.equal(redactUrl('file:dead.jsonl'), 'file:///dead.jsonl');
    assert.equal(redactUrl('file:dead.jsonl', { asWritten: true }), 'file:dead.jsonl');
    // Text around a URI is left as written.
    assert.equal(redactText('see ws://host:8080 now'), 'see ws://host:8080 now');
    // A path may hold an @ on a special scheme: Binance streams are wss://host:9443/ws/<symbol>@trade.
    assert.equal(redactUrl('wss://stream.binance.com:9443/ws/btcusdt@trade'), 'wss://stream.binance.com:9443/ws/btcusdt@trade');
    assert.equal(redactUrl('//user:pw@host/x'), '//user:***@host/x');
    // A Kafka URI lists brokers.
    assert.equal(redactUrl('kafka://alice:s3/cr@h1:9092,h2:9092/t?group=g'), 'kafka://alice:***@h1:9092,h2:9092/t?group=g');
  });
});

describe('redactUrl: secret query parameters by name, nested URLs', () => {
  it('hides a fixed list of secret names, and names built of secret words; not any name ending in "key"', () => {
    const secret = ['password', 'pass', 'pwd', 'passwd', 'secret', 'token', 'auth', 'sig', 'signature', 'jwt', 'apikey', 'api_key', 'api-key', 'apiKey', 'X-API-Key', 'key',
      'access_token', 'sessionToken', 'secretAccessKey', 'sasl', 'credentials', 'X-Amz-Signature', 'X-Amz-Credential', 'X-Amz-Security-Token', 'client_secret', 'authToken', 'basicAuth', 'db.password'];
    const visible = ['routingKey', 'partitionKey', 'accessKeyId', 'queue', 'symbol', 'saslMechanism', 'authSource', 'maxTokens', 'region', 'prefetch'];
    for (const name of secret) assert.equal(isSecretName(name), true, name);
    for (const name of visible) assert.equal(isSecretName(name), false, name);
    const query = [...secret, ...visible].map((name, i) => `${encodeURIComponent(name)}=v${i}planted`).join('&');
    const shown = redactUrl(`wss://feed.example/x?${query}`);
    secret.forEach((name, i) => assert.ok(shown.includes(`${encodeURIComponent(name)}=***`) && !shown.includes(`v${i}planted`), name));
    visible.forEach((name, i) => assert.ok(shown.includes(`${name}=v${i + secret.length}planted`), name));
  });

  it('a secret in the fragment is hidden too', () => {
    assert.equal(redactUrl('https://app.example/cb#access_token=abc123&state=x'), 'https://app.example/cb#access_token=***&state=x');
  });

  it('redacts a URL nested in a query value, as written or percent-encoded', () => {
    assert.equal(redactUrl('s3://bucket/p?endpoint=http://minio:Nest3d/pw@127.0.0.1:9000&commitSize=1MiB'), 's3://bucket/p?endpoint=http://minio:***@127.0.0.1:9000&commitSize=1MiB');
    const encoded = redactUrl(`kinesis:orders?endpoint=${encodeURIComponent('http://u:Enc0ded@localhost:4567/?token=Tok3n')}`);
    assert.ok(!encoded.includes('Enc0ded') && !encoded.includes('Tok3n'), encoded);
    assert.deepEqual(uriSecrets('s3://b/p?endpoint=http://u:Nest3d@h:1/?sig=S1g').sort(), ['Nest3d', 'S1g']);
    // Both the outer password and the nested one.
    const both = redactUrl('amqp://app:Out3r/pw@rabbit/?queue=q&x=http://u:Inn3r@h/');
    assert.ok(!both.includes('Out3r') && !both.includes('Inn3r'), both);
  });

  it('redactText finds URIs in a message, and leaves the sentence around them', () => {
    assert.equal(
      redactText('connecting to amqp://u:Pa/ss@h/vh failed: see "ws://a:b1@c/?token=t0k". Then kafka://h:9092/t?group=g&sasl=alice:pw7: unknown'),
      'connecting to amqp://u:***@h/vh failed: see "ws://a:***@c/?token=***". Then kafka://h:9092/t?group=g&sasl=***: unknown',
    );
  });
});

describe('option validation never echoes a secret', () => {
  const kafka = { brokers: '127.0.0.1:9092', topics: 'orders', groupId: 'g' };

  it('a secret option of the wrong type or shape is named, its value hidden', () => {
    for (const sasl of ['alice:SaslPw1', { mechanism: 'PLAIN', username: 'alice', password: 5 }, { mechanism: 'SaslPw2', username: 'a', password: 'b' }, { mechanism: 'PLAIN', username: ['SaslPw3'], password: 'x' }]) {
      const message = invalid(() => kafkaSource({ ...kafka, sasl } as never));
      assert.match(message, /options\.sasl/);
      assert.doesNotMatch(message, /SaslPw/);
    }
    const headers = invalid(() => websocketSource({ url: 'ws://127.0.0.1:1/', headers: 'Bearer HeaderTok3n' } as never));
    assert.doesNotMatch(headers, /HeaderTok3n/);
  });

  it('credentials in a Kafka broker address are refused without being shown', () => {
    for (const brokers of ['alice:BrokerPw1@127.0.0.1:9092', ['127.0.0.1:9092', 'alice:Broker/Pw2@127.0.0.1:9093']]) {
      const message = invalid(() => kafkaSink({ brokers, topic: 't' } as never));
      assert.match(message, /options\.brokers .*without credentials \(give them as options\.sasl\), got "\*\*\*@127\.0\.0\.1:909\d"/);
      assert.doesNotMatch(message, /BrokerPw|alice/);
    }
  });

  it('a URL option whose password holds / @ # ? is shown redacted', () => {
    for (const url of ['amqp://app:Url/Pw1@rabbit', 'amqp://app:Url#Pw2@rabbit/', 'amqp://app:Url?Pw3@rabbit/', 'ftp://app:Url/Pw4@rabbit/']) {
      const message = invalid(() => (url.startsWith('ftp') ? rabbitmqSink({ url, exchange: 'x' }) : rabbitmqSource({ url, queue: 'q' })));
      assert.doesNotMatch(message, /Pw\d/, message);
    }
    const ws = invalid(() => websocketSource({ url: 'ftp://app:Ws/Pw5@feed/' }));
    assert.doesNotMatch(ws, /Pw5/, ws);
  });

  it('a secret inside a value of the wrong type is not echoed: objects and arrays are shown by their shape', () => {
    const message = invalid(() => kafkaSource({ ...kafka, highWaterMark: { password: 'Nested5ecret' } } as never));
    assert.match(message, /options\.highWaterMark must be .*, got an object with keys password$/);
    assert.equal(show(['Arr4ySecret']), 'an array of 1 item');
    assert.equal(show([]), '[]');
    assert.equal(show({}), '{}');
    assert.equal(show('amqp://u:Str1ngSecret@h/'), '"amqp://u:***@h/"');
    assert.equal(show(new URL('http://u:UrlObj3ct@x/')), 'an instance of URL');
  });

  it('an unknown option is named, never its value', () => {
    const message = invalid(() => kafkaSource({ ...kafka, sasl2: 'alice:Unkn0wnPw' } as never));
    assert.match(message, /unknown option "sasl2" \(did you mean "sasl"\?\)/);
    assert.doesNotMatch(message, /Unkn0wnPw/);
  });

  it('a declared secret of any kind is hidden, whichever check refused it', () => {
    const declaration = defineOptions('thing', {
      pin: opt.integer('A PIN.', { secret: true, min: 1000, max: 9999 }),
      phrase: opt.enum('A phrase.', ['a', 'b'], { secret: true }),
      token: opt.string('A token.', { secret: true }),
      custom: opt.custom<string>('A custom secret.', { type: 'string', secret: true, check: (value, fail) => (typeof value === 'string' && value.length > 8 ? value : fail('a long string')) }),
    });
    assert.match(invalid(() => declaration.resolve({ pin: 12 })), /options\.pin must be .*, got "\(hidden\)"$/);
    assert.match(invalid(() => declaration.resolve({ phrase: 'Phr4se' })), /got "\(hidden\)"$/);
    assert.match(invalid(() => declaration.resolve({ token: 7 })), /got "\(hidden\)"$/);
    assert.match(invalid(() => declaration.resolve({ custom: 'short' })), /got "\(hidden\)"$/);
  });
});

describe('durations are capped at 2^31 - 1 ms', () => {
  const huge = [2 ** 31, 25 * 86_400_000, Infinity];

  it('durationOption and every declared duration refuse more, with the reason', () => {
    assert.equal(MAX_DURATION_MS, 2 ** 31 - 1);
    assert.equal(durationOption('x', 'waitMs', MAX_DURATION_MS, 1), MAX_DURATION_MS);
    for (const value of huge) {
      assert.match(invalid(() => durationOption('x', 'waitMs', value, 1)), /options\.waitMs must be a duration of at most 2147483647 ms \(about 24\.8 days: Node runs a longer timer after 1 ms\)/);
      const declared = defineOptions('thing', { everyMs: opt.duration('Every.') });
      assert.match(invalid(() => declared.resolve({ everyMs: value })), /thing: options\.everyMs must be a duration of at most 2147483647 ms/);
      assert.equal(declared.resolve({ everyMs: MAX_DURATION_MS }).everyMs, MAX_DURATION_MS);
    }
  });

  it('the factories refuse 25 days: commitIntervalMs, reconnectEveryMs, closeTimeoutMs, retry delays, batch maxWaitMs', () => {
    const day25 = 25 * 86_400_000;
    const checks: Array<[string, () => unknown]> = [
      ['commitIntervalMs', () => kafkaSource({ brokers: '127.0.0.1:9092', topics: 't', groupId: 'g', commitIntervalMs: day25 })],
      ['reconnectEveryMs', () => websocketSource({ url: 'ws://127.0.0.1:1/', reconnectEveryMs: day25 })],
      ['closeTimeoutMs', () => flow({ source: new PassThrough({ objectMode: true }), sink: new Writable({ objectMode: true, write: (_c, _e, cb) => cb() }), closeTimeoutMs: day25 })],
      ['retry.maxTimeoutMs', () => resolveRetry('x', { maxTimeoutMs: day25 })],
      ['retryBackoff.minTimeoutMs', () => flow({ source: new PassThrough({ objectMode: true }), sink: new Writable({ objectMode: true, write: (_c, _e, cb) => cb() }), retryBackoff: { minTimeoutMs: day25 } })],
      ['maxWaitMs', () => batch({ maxWaitMs: day25 })],
    ];
    for (const [name, make] of checks) assert.match(invalid(make), new RegExp(`options\\.${name.replace('.', '\\.')} must be a duration of at most 2147483647 ms`), name);
  });

  it('retries may still be Infinity: a count, not a timer', () => {
    assert.equal(resolveRetry('x', { retries: Infinity }).retries, Infinity);
  });
});

describe('library url options that read two ways', () => {
  it('rabbitmq and websocket refuse a password the URL parser would cut, without printing it', async () => {
    const { rabbitmqSource } = await import('../../lib/rabbitmq/source.js');
    const { websocketSource } = await import('../../lib/websocket/source.js');
    for (const make of [() => rabbitmqSource({ url: 'amqp://user:12/pl4nted@127.0.0.1/', queue: 'q' }), () => websocketSource({ url: 'ws://user:12/pl4nted@127.0.0.1/feed' })]) {
      assert.throws(make, (error: Error & { code?: string }) => {
        assert.equal(error.code, 'MANIFOLD_ERR_INVALID_OPTION');
        assert.match(error.message, /reads two ways/);
        assert.doesNotMatch(error.message, /pl4nted/);
        return true;
      });
    }
  });

  it('a PEM private key in any text (a tls.key given inline and echoed by a library) is scrubbed whole', () => {
    const body = 'MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg';
    const text = `cannot use key -----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY----- from amqps://u:pw@h/`;
    const shown = redactText(text);
    assert.equal(shown.includes(body), false);
    assert.equal(shown.includes('pw@'), false);
    assert.match(shown, /BEGIN PRIVATE KEY----- \*\*\* -----END PRIVATE KEY/);
    // Cut short (a log line capped mid-key): everything after the BEGIN line goes.
    assert.equal(redactText(`-----BEGIN EC PRIVATE KEY-----\n${body}`).includes(body), false);
  });
});
