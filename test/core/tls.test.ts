import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { connect, createSecureContext, createServer, type TLSSocket } from 'node:tls';
import { generateKeyPairSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { ErrorCodes, ManifoldError, isRetryable } from '../../lib/core/errors.js';
import { checkTls, tlsConnectOptions, tlsFailure } from '../../lib/core/tls.js';
import { readOptions } from '../../lib/cli/options.js';
import { defineOptions } from '../../lib/core/options.js';
import { tlsOption } from '../../lib/core/tls.js';
import { makePki, plaintextServer, type Pki } from '../fixtures/tls.js';

/** Connects with `options` to a TLS server using `cert`/`key` (requiring a client certificate signed by the CA when `mutual`); resolves the error tlsFailure makes of the outcome, or 'ok'. */
async function handshake(pki: Pki, server: { cert: string; key: string; mutual?: boolean }, options: Parameters<typeof tlsConnectOptions>[1]): Promise<ManifoldError | 'ok'> {
  const tls = createServer({
    cert: readFileSync(server.cert),
    key: readFileSync(server.key),
    ca: readFileSync(pki.ca),
    requestCert: server.mutual ?? false,
    rejectUnauthorized: server.mutual ?? false,
  }, (socket) => socket.end('hello'));
  tls.on('tlsClientError', () => {});
  tls.listen(0, '127.0.0.1');
  await once(tls, 'listening');
  const port = (tls.address() as AddressInfo).port;
  try {
    return await new Promise((resolve) => {
      let secured = false;
      const socket: TLSSocket = connect({ host: '127.0.0.1', port, servername: 'localhost', ...tlsConnectOptions('test', options) }, () => {
        secured = true;
      });
      socket.on('data', () => {
        socket.destroy();
        resolve('ok');
      });
      socket.on('error', (error) => {
        const failure = tlsFailure('test', `127.0.0.1:${port}`, error, !secured);
        resolve(failure ?? new ManifoldError(`not TLS: ${String(error)}`, { code: ErrorCodes.CONNECTION }));
      });
    });
  } finally {
    tls.close();
  }
}

describe('TLS options and failures', () => {
  let pki: Pki;
  before(() => {
    pki = makePki();
  });
  after(() => pki.remove());

  it('reads certificates from paths at every call, so a replaced file is used next time', () => {
    const first = pki.issue('first');
    const options = checkTls('test', { ca: pki.ca, cert: first.cert, key: first.key })!;
    assert.equal(String(tlsConnectOptions('test', options).cert), readFileSync(first.cert, 'utf8'));
    const next = pki.issue('rotated');
    writeFileSync(first.cert, readFileSync(next.cert));
    writeFileSync(first.key, readFileSync(next.key));
    assert.equal(String(tlsConnectOptions('test', options).cert), readFileSync(next.cert, 'utf8'));
    assert.equal(String(tlsConnectOptions('test', options).key), readFileSync(next.key, 'utf8'));
  });

  it('takes PEM text and bytes as they are', () => {
    const pem = readFileSync(pki.ca, 'utf8');
    const options = checkTls('test', { ca: [pem, Buffer.from(pem)] })!;
    assert.deepEqual(tlsConnectOptions('test', options).ca, [pem, Buffer.from(pem)]);
  });

  it('refuses unknown keys, a certificate without its key, and a file that is not there, naming the option', () => {
    assert.throws(() => checkTls('rabbitmqSource', { cafile: pki.ca }), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /cafile/.test(e.message) && /ca/.test(e.message));
    assert.throws(() => checkTls('rabbitmqSource', { cert: pki.clientCert }), (e: ManifoldError) => /tls\.cert/.test(e.message) && /key/.test(e.message));
    assert.throws(() => checkTls('rabbitmqSource', { ca: '/nonexistent/ca.pem' }), (e: ManifoldError) => e.code === ErrorCodes.INVALID_OPTION && /tls\.ca/.test(e.message) && /nonexistent/.test(e.message));
    assert.throws(() => checkTls('x', { key: 42, cert: pki.clientCert }), (e: ManifoldError) => /tls\.key/.test(e.message) && !/42/.test(e.message));
    assert.throws(() => checkTls('x', { minVersion: 'TLSv1' }), /TLSv1\.2 or TLSv1\.3/);
    assert.equal(checkTls('x', true) !== undefined, true);
    assert.equal(checkTls('x', false), undefined);
  });

  it('the command folds tls.<key>= into the tls mapping and refuses a contradiction or an unknown subkey', () => {
    const declaration = defineOptions('x', { tls: tlsOption() });
    const read = readOptions('x://h', { 'tls.ca': pki.ca, 'tls.rejectUnauthorized': 'false' }, [declaration]);
    assert.deepEqual(read.tls, { ca: [pki.ca], rejectUnauthorized: false });
    assert.deepEqual(readOptions('x://h', { tls: 'true' }, [declaration]).tls, {});
    assert.throws(() => readOptions('x://h', { tls: 'false', 'tls.ca': pki.ca }, [declaration]), /contradicts/);
    assert.throws(() => readOptions('x://h', { 'tls.cafile': pki.ca }, [declaration]), /tls\.cafile/);
  });

  it('a good server and a client certificate: the handshake succeeds', async () => {
    assert.equal(await handshake(pki, { cert: pki.serverCert, key: pki.serverKey, mutual: true }, { ca: [pki.ca], cert: pki.clientCert, key: pki.clientKey }), 'ok');
  });

  for (const [name, server, reason] of [
    ['another CA', (p: Pki) => ({ cert: p.otherServerCert, key: p.otherServerKey }), /unknown CA/],
    ['an expired certificate', (p: Pki) => ({ cert: p.expiredServerCert, key: p.expiredServerKey }), /expired/],
    ['another name', (p: Pki) => ({ cert: p.wrongNameServerCert, key: p.wrongNameServerKey }), /name mismatch/],
  ] as const) {
    it(`a server with ${name} is MANIFOLD_ERR_TLS naming the reason, not retryable`, async () => {
      const result = await handshake(pki, server(pki), { ca: [pki.ca] });
      assert.ok(result instanceof ManifoldError);
      assert.equal(result.code, ErrorCodes.TLS, result.message);
      assert.match(result.message, reason);
      assert.match(result.message, /127\.0\.0\.1:\d+/);
      assert.equal(isRetryable(result), false);
    });
  }

  it('a server that requires a client certificate and gets none: MANIFOLD_ERR_TLS', async () => {
    const result = await handshake(pki, { cert: pki.serverCert, key: pki.serverKey, mutual: true }, { ca: [pki.ca] });
    assert.ok(result instanceof ManifoldError);
    assert.equal(result.code, ErrorCodes.TLS, result.message);
  });

  it('a wrong passphrase is named as the reason, also when the wrong decryption reads as a key no decoder accepts', () => {
    // With a wrong passphrase OpenSSL usually reports bad decrypt; about one time in 200 the garbage ends
    // in valid padding and the failure is the decoder's `unsupported`. Encrypt afresh until both are seen.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const seen = new Map<string, ManifoldError>();
    for (let i = 0; i < 20_000 && seen.size < 2; i++) {
      const key = privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-128-cbc', passphrase: 'right-hunter2' });
      try {
        createSecureContext({ key, passphrase: 'wrong-hunter2' });
      } catch (error) {
        const library = String((error as { library?: unknown }).library);
        if (!seen.has(library)) seen.set(library, tlsFailure('test', 'h:1', error)!);
      }
    }
    assert.deepEqual([...seen.keys()].sort(), ['DECODER routines', 'Provider routines']);
    for (const failure of seen.values()) {
      assert.equal(failure.code, ErrorCodes.TLS);
      assert.match(failure.message, /wrong tls\.passphrase/);
      assert.ok(!failure.message.includes('hunter2'));
    }
  });

  it('a plaintext port where TLS was asked for: MANIFOLD_ERR_TLS, not a silent fallback', async () => {
    const plain = await plaintextServer();
    try {
      const result = await new Promise<ManifoldError | undefined>((resolve) => {
        const socket = connect({ host: '127.0.0.1', port: plain.port, ...tlsConnectOptions('test', { ca: [pki.ca] }) });
        socket.on('error', (error) => resolve(tlsFailure('test', 'h', error, true)));
      });
      assert.equal(result?.code, ErrorCodes.TLS);
      assert.match(result!.message, /plaintext|TLS/);
    } finally {
      await plain.close();
    }
  });
});
